"""The Callio warehouse in BigQuery, through load jobs and standard-SQL query jobs.

Rows arrive by load jobs (Parquet with the explicit schema of :mod:`include.callio.schema`), never by
streaming inserts: rows still in the streaming buffer cannot be merged or deleted. A batch of
statements runs as one multi-statement query with ``BEGIN TRANSACTION ... COMMIT TRANSACTION``, which
BigQuery rolls back as a whole when any statement fails.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from include.callio import schema
from include.callio.schema import Table
from include.callio.warehouse.arrow_rows import arrow_schema
from include.callio.warehouse.base import Warehouse
from include.callio.warehouse.sql import Dialect

DEFAULT_DATASET = "dev_callio"
DEFAULT_LOCATION = "asia-southeast1"


class BigQueryWarehouse(Warehouse):
    """The warehouse tables in ``project.dataset``; every job runs in ``location``."""

    def __init__(
        self,
        client: bigquery.Client,
        project: str,
        dataset: str = DEFAULT_DATASET,
        location: str = DEFAULT_LOCATION,
    ) -> None:
        self.client = client
        self.project = project
        self.dataset = dataset
        self.location = location
        self.dialect = Dialect.bigquery(project, dataset)

    def table_id(self, table: Table) -> str:
        return f"{self.project}.{self.dataset}.{table.name}"

    def ensure_schema(self) -> None:
        """One listing when everything exists (every run starts here); creations only for what is missing."""
        dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
        dataset.location = self.location
        try:
            existing = {table.table_id for table in self.client.list_tables(dataset)}
        except NotFound:
            self.client.create_dataset(dataset, exists_ok=True)
            existing = set()
        for table in schema.TABLES:
            if table.name not in existing:
                self.client.create_table(self.table_resource(table), exists_ok=True)

    def table_resource(self, table: Table) -> bigquery.Table:
        """The table as BigQuery should hold it: day partitions, clustering and description."""
        resource = bigquery.Table(self.table_id(table), schema=schema_fields(table))
        if table.partition_by:
            resource.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=table.partition_by
            )
        resource.clustering_fields = list(table.cluster_by) or None
        resource.description = table.description
        return resource

    def _append(self, table: Table, batches: Iterator[pa.RecordBatch]) -> None:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_batches(batches, schema=arrow_schema(table)), buffer)
        size = buffer.tell()
        buffer.seek(0)
        config = bigquery.LoadJobConfig(
            schema=schema_fields(table),
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        )
        job = self.client.load_table_from_file(
            buffer, self.table_id(table), job_config=config, size=size, location=self.location
        )
        job.result()

    def _query(self, text: str) -> bigquery.QueryJob:
        config = bigquery.QueryJobConfig(use_legacy_sql=False)
        return self.client.query(text, job_config=config, location=self.location)

    def _select(self, query: str) -> list[tuple[Any, ...]]:
        return [tuple(row.values()) for row in self._query(query).result()]

    def _execute(self, statement: str) -> int:
        job = self._query(statement)
        job.result()
        return job.num_dml_affected_rows or 0

    def _run_atomically(self, statements: Sequence[str], then: str | None = None) -> list[tuple[Any, ...]]:
        # A script's result is its last statement's: the query after the commit.
        script = ";\n".join(
            ["BEGIN TRANSACTION", *statements, "COMMIT TRANSACTION", *([then] if then else [])]
        )
        rows = self._select(script + ";")
        return rows if then else []


def schema_fields(table: Table) -> list[bigquery.SchemaField]:
    return [bigquery.SchemaField(name, type_, mode="NULLABLE") for name, type_ in table.columns]


def from_connection(conn_id: str, extra: Mapping[str, Any]) -> BigQueryWarehouse:
    """The warehouse of a ``google_cloud_platform`` connection.

    Extras: ``project`` (else the credentials' project), ``dataset``, ``location``. Credentials come
    from the google provider's hook, as for the provider's operators. With ``api_endpoint`` the
    client talks anonymously to that endpoint instead (a local BigQuery-compatible server)."""
    dataset = extra.get("dataset") or DEFAULT_DATASET
    location = extra.get("location") or DEFAULT_LOCATION
    endpoint = extra.get("api_endpoint")
    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        project = extra.get("project")
        if not project:
            raise ValueError(f"connection {conn_id!r} has an api_endpoint but no 'project' in its extra")
        client = bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint},
            location=location,
        )
    else:
        from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

        hook = BigQueryHook(gcp_conn_id=conn_id, location=location, use_legacy_sql=False)
        project = extra.get("project") or hook.project_id
        client = hook.get_client(project_id=project, location=location)
    return BigQueryWarehouse(client, project, dataset, location)
