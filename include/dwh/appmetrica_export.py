"""The ``appmetrica_export`` pipeline's work: one resource's day from the Logs API into S3 and the DWH.

The Logs API prepares an export for minutes (202) before it serves it (200); the request *is* the
export (see :mod:`include.dwh.appmetrica`). So the pipeline sends one request per (resource, day),
waits without a worker (:mod:`include.dwh.appmetrica_trigger`, polling with ``HEAD``-like streamed
GETs that never read the body), then downloads the ready file once, streamed to disk, and stores it
raw at :func:`object_key`. Loading reads the stored object back.

S3 key layout: ``appmetrica/{resource}/{day}/{resource}_{day}.json`` (``day`` as ``YYYY-MM-DD``),
replaced by a re-run.

What maps into the DWH tables (the rest of a resource is kept in S3 only):

* ``events`` -> ``events_part`` (event_name -> event_type, event_datetime -> event_time,
  appmetrica_device_id -> device_id, profile_id -> user_id, session_id, os_name -> platform and
  os_name, os_version, device_type, app_version_name -> version_name); a non-empty ``event_json``
  -> ``tmp_event_properties``; country_iso_code / city -> ``user_locations``.
* ``installations`` -> ``mobile_devices`` (install_datetime -> event_time, device_manufacturer ->
  device_brand and device_manufacturer, device_model, device_type, operator_name -> carrier,
  device_locale -> language, google_aid -> adid, ios_ifa -> idfa, app_version_name -> version_name).

AppMetrica has no event uuid: ``uuid`` is a UUID5 of the row's content, so the same export gives the
same rows (and checksums) on every re-run. Each (resource, day) is replaced as a whole through the
load log, every table in one transaction (:func:`include.dwh.exports.replace_periods`).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from include.dwh import schema
from include.dwh.appmetrica import AppMetricaError, AppMetricaSettings, raise_for_refusal
from include.dwh.appmetrica_exports import ExportDefinition, parse_definition
from include.dwh.exports import LoadKey, replace_periods

EXPORT = "appmetrica"
WORKDIR_PREFIX = "appmetrica-dag-"
CHUNK_BYTES = 1 << 20
_NAMESPACE = uuid.UUID("6c1f3c2e-5d0e-4c53-9f1e-6f0e1c7a2b10")


def object_key(resource: str, day: str) -> str:
    return f"{EXPORT}/{resource}/{day}/{resource}_{day}.json"


def definition_for(job: Mapping[str, Any]) -> ExportDefinition:
    """The day's export of ``job["resource"]`` with ``job["fields"]`` (validated as a saved one)."""
    return parse_definition(
        f"{job['resource']}_{job['day'].replace('-', '')}",
        {"resource": job["resource"], "fields": list(job["fields"]), "date_since": job["day"],
         "date_until": job["day"]},
    )  # fmt: skip


def request_params(job: Mapping[str, Any], settings: AppMetricaSettings) -> tuple[str, dict[str, str]]:
    definition = definition_for(job)
    return definition.path, definition.params(settings.application_id)


def client(settings: AppMetricaSettings) -> httpx.Client:
    return httpx.Client(
        base_url=settings.base_url,
        timeout=httpx.Timeout(settings.request_timeout_s),
        headers={"Authorization": f"OAuth {settings.token}", "Accept": "application/json"},
    )


def download(job: Mapping[str, Any], settings: AppMetricaSettings, target: Path) -> int | None:
    """Ask for the export once: ``None`` if it is not ready (202, 429, 5xx), else stream it to
    ``target`` and return its size. Refusals (400, 401, 403, ...) raise."""
    path, params = request_params(job, settings)
    with client(settings) as http, http.stream("GET", path, params=params) as response:
        if response.status_code in (202, 429) or response.status_code >= 500:
            return None
        if response.status_code != 200:
            response.read()
            raise_for_refusal(response, f"{job['resource']} {job['day']}")
            raise AppMetricaError(f"AppMetrica {job['resource']} {job['day']}: HTTP {response.status_code}")
        size = 0
        with open(target, "wb") as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                out.write(chunk)
                size += len(chunk)
    return size


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a stored JSON export (``{"data": [...]}``)."""
    with open(path, "rb") as source:
        try:
            data = json.load(source)["data"]
        except (ValueError, KeyError, TypeError):
            raise AppMetricaError(f"{path.name}: not a JSON object with a data list") from None
    if not isinstance(data, list):
        raise AppMetricaError(f"{path.name}: data is not a list")
    return data


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _row_uuid(resource: str, row: Mapping[str, Any]) -> str:
    return str(uuid.uuid5(_NAMESPACE, resource + json.dumps(row, sort_keys=True, ensure_ascii=False)))


def _time(value: Any) -> str | None:
    return _text(value)


def map_rows(resource: str, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The DWH rows of an export, by table name (see the module docstring)."""
    tables: dict[str, list[dict[str, Any]]] = {}
    if resource == "events":
        events, properties, locations = [], [], []
        for row in rows:
            row_uuid = _row_uuid(resource, row)
            session = _text(row.get("session_id"))
            events.append(
                {
                    "uuid": row_uuid,
                    "event_type": row.get("event_name") or "",
                    "event_time": _time(row.get("event_datetime")),
                    "device_id": _text(row.get("appmetrica_device_id")),
                    "user_id": _text(row.get("profile_id")),
                    "session_id": int(session) if session else None,
                    "platform": _text(row.get("os_name")),
                    "os_name": _text(row.get("os_name")),
                    "os_version": _text(row.get("os_version")),
                    "device_type": _text(row.get("device_type")),
                    "version_name": _text(row.get("app_version_name")),
                }
            )
            if row.get("event_json"):
                properties.append(
                    {
                        "uuid": row_uuid,
                        "event_type": row.get("event_name"),
                        "event_time": _time(row.get("event_datetime")),
                        "event_properties": json.loads(row["event_json"]),
                    }
                )
            if row.get("country_iso_code") or row.get("city"):
                locations.append(
                    {
                        "uuid": row_uuid,
                        "device_id": _text(row.get("appmetrica_device_id")),
                        "user_id": _text(row.get("profile_id")),
                        "event_time": _time(row.get("event_datetime")),
                        "country": _text(row.get("country_iso_code")),
                        "city": _text(row.get("city")),
                    }
                )
        tables = {"events_part": events, "tmp_event_properties": properties, "user_locations": locations}
    elif resource == "installations":
        tables = {
            "mobile_devices": [
                {
                    "uuid": _row_uuid(resource, row),
                    "device_id": _text(row.get("appmetrica_device_id")) or "",
                    "user_id": _text(row.get("profile_id")),
                    "event_time": _time(row.get("install_datetime")),
                    "platform": _text(row.get("os_name")),
                    "os_name": _text(row.get("os_name")),
                    "os_version": _text(row.get("os_version")),
                    "device_brand": _text(row.get("device_manufacturer")),
                    "device_manufacturer": _text(row.get("device_manufacturer")),
                    "device_model": _text(row.get("device_model")),
                    "device_type": _text(row.get("device_type")),
                    "carrier": _text(row.get("operator_name")),
                    "language": _text(row.get("device_locale")),
                    "adid": _text(row.get("google_aid")),
                    "idfa": _text(row.get("ios_ifa")),
                    "version_name": _text(row.get("app_version_name")),
                }
                for row in rows
            ]
        }
    return tables


def load_export(engine: sa.Engine, path: Path, resource: str, day: str) -> tuple[int, dict[str, int]]:
    """Replace the (resource, day)'s rows in each table it maps to; (export rows, rows per table)."""
    exported = read_rows(path)
    mapped = map_rows(resource, exported)
    tables = [table for table in schema.TABLES.values() if table.name in mapped]
    split = ({name: row} for name, rows in mapped.items() for row in rows)
    loads = replace_periods(engine, LoadKey(EXPORT, resource, day), tables, split)
    return len(exported), {load.table: load.rows for load in loads}


def plan(params: Mapping[str, Any], moment: dt.datetime) -> list[dict[str, Any]]:
    """One job per configured resource, for ``params["day"]`` or the day before ``moment``."""
    day = params.get("day") or (moment.date() - dt.timedelta(days=1)).isoformat()
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        raise ValueError(f"day must be YYYY-MM-DD, got {day!r}") from None
    resources = params.get("resources") or {}
    if not isinstance(resources, Mapping) or not resources:
        raise ValueError("resources must map each resource to its list of fields")
    jobs = [
        {"resource": resource, "fields": list(fields), "day": day} for resource, fields in resources.items()
    ]
    for job in jobs:
        definition_for(job)  # validate now, before anything is queued
    return jobs
