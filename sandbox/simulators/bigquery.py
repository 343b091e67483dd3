"""A local BigQuery REST endpoint: enough of API v2 for the real ``google-cloud-bigquery`` client.

Point a client at it with ``client_options={"api_endpoint": base_url}`` and anonymous credentials.
It keeps datasets, tables and jobs in memory and answers like BigQuery does as far as the client
needs: 409 for an existing dataset or table, 404 for a missing one, jobs that are DONE at once, load
jobs by multipart or resumable upload, and query results. It does not execute SQL: a query is checked
the way BigQuery would refuse it first (legacy SQL, unparsable standard SQL -> 400 ``invalidQuery``),
and its rows come from ``answer(sql)``, a function the test supplies. Every request is recorded in
``simulator.api.requests``; :attr:`BigQuerySimulator.jobs` keeps each job's configuration as sent::

    simulator = BigQuerySimulator(answer=lambda sql: QueryResult([("n", "INT64")], [(1,)]))
    with simulator.serve() as base_url:
        client = bigquery.Client(project="p", credentials=AnonymousCredentials(),
                                 client_options={"api_endpoint": base_url})
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.http import Request, Response, SimulatedApi

API = "/bigquery/v2/projects/<project>"
UPLOAD = "/upload/bigquery/v2/projects/<project>/jobs"


@dataclass
class QueryResult:
    """What a query answers: columns as (name, BigQuery type), rows, and DML's affected-row count."""

    fields: Sequence[tuple[str, str]] = ()
    rows: Sequence[Sequence[Any]] = ()
    dml_affected_rows: int | None = None


Answer = Callable[[str], QueryResult | None]


@dataclass
class Job:
    """A job as the client sent it (``resource``, completed with status and statistics)."""

    resource: dict[str, Any]
    result: QueryResult | None = None
    data: bytes = b""  # a load job's uploaded file

    @property
    def kind(self) -> str:
        return next(iter(self.resource["configuration"].keys() & {"query", "load", "copy", "extract"}))

    @property
    def configuration(self) -> dict[str, Any]:
        return self.resource["configuration"][self.kind]


@dataclass
class _Upload:
    resource: dict[str, Any]
    data: bytearray = field(default_factory=bytearray)


def _error(status: int, reason: str, message: str) -> Response:
    names = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}
    error = {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}
    error["errors"] = [{"message": message, "domain": "global", "reason": reason}]
    return Response.json({"error": error}, status)


def _cell(value: Any) -> str | None:
    """A value as the REST API encodes it: text, with timestamps as integer microseconds."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return str(int(value.timestamp() * 1_000_000))
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _multipart(content_type: str, body: bytes) -> list[bytes]:
    """The payloads of a multipart/related body (metadata first, then the file)."""
    boundary = content_type.split("boundary=", 1)[1].strip().strip('"').encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        _headers, _, payload = chunk.partition(b"\r\n\r\n")
        parts.append(payload.removesuffix(b"\r\n"))
    return parts


def _output_rows(configuration: dict[str, Any], data: bytes) -> int:
    if configuration.get("sourceFormat") == "PARQUET":
        import pyarrow.parquet as pq

        return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows
    return len([line for line in data.splitlines() if line.strip()])


class BigQuerySimulator:
    """In-memory datasets, tables and jobs behind :class:`SimulatedApi` routes."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.api = SimulatedApi("bigquery")
        self.answer: Answer = answer or (lambda _sql: None)
        self.datasets: dict[tuple[str, str], dict[str, Any]] = {}
        self.tables: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.jobs: dict[str, Job] = {}
        self._uploads: dict[str, _Upload] = {}
        self._lock = threading.Lock()
        self._add_routes()

    def serve(self, port: int = 0) -> contextlib.AbstractContextManager[str]:
        """Serve on 127.0.0.1 until the block ends; yield the base URL (the client's api_endpoint)."""
        return self.api.serve(port)

    def jobs_of(self, kind: str) -> list[Job]:
        """Jobs of one kind (``query``, ``load``) in the order they were created."""
        return [job for job in self.jobs.values() if job.kind == kind]

    @property
    def queries(self) -> list[str]:
        return [job.configuration["query"] for job in self.jobs_of("query")]

    # -- routes -----------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        api = self.api
        api.route("POST", f"{API}/datasets")(self._create_dataset)
        api.route("GET", f"{API}/datasets/<dataset>")(self._get_dataset)
        api.route("POST", f"{API}/datasets/<dataset>/tables")(self._create_table)
        api.route("GET", f"{API}/datasets/<dataset>/tables")(self._list_tables)
        api.route("GET", f"{API}/datasets/<dataset>/tables/<table>")(self._get_table)
        api.route("POST", f"{API}/jobs")(self._insert_job)
        api.route("GET", f"{API}/jobs/<job_id>")(self._get_job)
        api.route("GET", f"{API}/queries/<job_id>")(self._query_results)
        api.route("POST", UPLOAD)(self._start_upload)
        api.route("PUT", UPLOAD)(self._continue_upload)

    def _create_dataset(self, request: Request) -> Response:
        resource = request.json()
        ref = resource["datasetReference"]
        key = (ref["projectId"], ref["datasetId"])
        with self._lock:
            if key in self.datasets:
                return _error(409, "duplicate", f"Already Exists: Dataset {key[0]}:{key[1]}")
            resource = {**resource, "id": f"{key[0]}:{key[1]}", "location": resource.get("location", "US")}
            self.datasets[key] = resource
        return Response.json(resource)

    def _get_dataset(self, request: Request) -> Response:
        key = (request.params["project"], request.params["dataset"])
        if key not in self.datasets:
            return _error(404, "notFound", f"Not found: Dataset {key[0]}:{key[1]}")
        return Response.json(self.datasets[key])

    def _create_table(self, request: Request) -> Response:
        resource = request.json()
        ref = resource["tableReference"]
        key = (ref["projectId"], ref["datasetId"], ref["tableId"])
        with self._lock:
            if key[:2] not in self.datasets:
                return _error(404, "notFound", f"Not found: Dataset {key[0]}:{key[1]}")
            if key in self.tables:
                return _error(409, "duplicate", f"Already Exists: Table {key[0]}:{key[1]}.{key[2]}")
            resource = {**resource, "id": f"{key[0]}:{key[1]}.{key[2]}", "type": "TABLE"}
            self.tables[key] = resource
        return Response.json(resource)

    def _list_tables(self, request: Request) -> Response:
        project, dataset = request.params["project"], request.params["dataset"]
        if (project, dataset) not in self.datasets:
            return _error(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        tables = [
            {key: t[key] for key in ("kind", "id", "tableReference", "type") if key in t}
            for (p, d, _), t in sorted(self.tables.items())
            if (p, d) == (project, dataset)
        ]
        return Response.json({"kind": "bigquery#tableList", "tables": tables, "totalItems": len(tables)})

    def _get_table(self, request: Request) -> Response:
        key = (request.params["project"], request.params["dataset"], request.params["table"])
        if key not in self.tables:
            return _error(404, "notFound", f"Not found: Table {key[0]}:{key[1]}.{key[2]}")
        return Response.json(self.tables[key])

    def _insert_job(self, request: Request) -> Response:
        resource = request.json()
        query = resource["configuration"].get("query")
        if query is None:
            return _error(400, "invalid", "this simulator runs query jobs here; loads go to the upload URL")
        if query.get("useLegacySql", True):
            return _error(400, "invalidQuery", "legacy SQL is not supported here; set useLegacySql=false")
        import sqlglot

        try:
            statements = [s for s in sqlglot.parse(query["query"], read="bigquery") if s is not None]
        except sqlglot.errors.ParseError as exc:
            return _error(400, "invalidQuery", f"Syntax error: {exc}")
        result = self.answer(query["query"])
        statement_type = "SCRIPT" if len(statements) > 1 else statements[0].key.upper()
        statistics: dict[str, Any] = {"statementType": statement_type}
        if result is not None and result.dml_affected_rows is not None:
            statistics["numDmlAffectedRows"] = str(result.dml_affected_rows)
        return Response.json(self._finish(resource, {"query": statistics}, result=result).resource)

    def _finish(self, resource: dict[str, Any], statistics: dict[str, Any], **extra: Any) -> Job:
        """Record a job as DONE (nothing here is slow) and return it."""
        ref = resource.setdefault("jobReference", {})
        ref.setdefault("jobId", uuid.uuid4().hex)
        ref.setdefault("location", "US")
        now = str(int(time.time() * 1000))
        resource.update(
            id=f"{ref['projectId']}:{ref['location']}.{ref['jobId']}",
            status={"state": "DONE"},
            statistics={"creationTime": now, "startTime": now, "endTime": now, **statistics},
        )
        job = Job(resource, **extra)
        with self._lock:
            self.jobs[ref["jobId"]] = job
        return job

    def _get_job(self, request: Request) -> Response:
        job = self.jobs.get(request.params["job_id"])
        if job is None:
            return _error(404, "notFound", f"Not found: Job {request.params['job_id']}")
        return Response.json(job.resource)

    def _query_results(self, request: Request) -> Response:
        job = self.jobs.get(request.params["job_id"])
        if job is None:
            return _error(404, "notFound", f"Not found: Job {request.params['job_id']}")
        body: dict[str, Any] = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": job.resource["jobReference"],
            "jobComplete": True,
        }
        result = job.result
        if result is not None and result.dml_affected_rows is not None:
            body["numDmlAffectedRows"] = str(result.dml_affected_rows)
        if result is not None and result.fields:
            body["schema"] = {
                "fields": [{"name": n, "type": t, "mode": "NULLABLE"} for n, t in result.fields]
            }
            body["totalRows"] = str(len(result.rows))
            if request.query.get("maxResults") != "0":
                body["rows"] = [{"f": [{"v": _cell(v)} for v in row]} for row in result.rows]
        return Response.json(body)

    # -- uploads ----------------------------------------------------------------------------------

    def _start_upload(self, request: Request) -> Response:
        kind = request.query.get("uploadType")
        if kind == "multipart":
            metadata, data = _multipart(request.header("content-type") or "", request.body)
            return Response.json(self._finish_load(json.loads(metadata), data).resource)
        if kind == "resumable":
            upload_id = uuid.uuid4().hex
            with self._lock:
                self._uploads[upload_id] = _Upload(request.json())
            location = (
                f"http://{request.header('host')}{request.path}?uploadType=resumable&upload_id={upload_id}"
            )
            return Response(200, b"", {"Location": location})
        return _error(400, "invalid", f"unsupported uploadType {kind!r}")

    def _continue_upload(self, request: Request) -> Response:
        upload = self._uploads.get(request.query.get("upload_id", ""))
        if upload is None:
            return _error(404, "notFound", "unknown upload_id")
        upload.data.extend(request.body)
        total = (request.header("content-range") or "").rpartition("/")[2]
        if total != "*" and int(total) == len(upload.data):
            del self._uploads[request.query["upload_id"]]
            return Response.json(self._finish_load(upload.resource, bytes(upload.data)).resource)
        return Response(308, b"", {"Range": f"bytes=0-{len(upload.data) - 1}"})

    def _finish_load(self, resource: dict[str, Any], data: bytes) -> Job:
        load = resource["configuration"]["load"]
        rows = str(_output_rows(load, data))
        return self._finish(resource, {"load": {"outputRows": rows, "inputFiles": "1"}}, data=data)
