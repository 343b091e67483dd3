"""The Callio warehouse in an embedded DuckDB file: the default when no BigQuery is configured.

DuckDB lets one process at a time open a file for writing, while the pipeline's tenants stage from
parallel worker processes. So every operation opens the file, does its work and closes it at once,
and an operation that finds the file locked waits and retries (bounded by ``lock_timeout``) instead of
failing the tenant.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from include.callio import schema
from include.callio.schema import Table
from include.callio.warehouse.arrow_rows import arrow_schema
from include.callio.warehouse.base import STAGING, Warehouse
from include.callio.warehouse.sql import Dialect

LOCK_ERROR = "could not set lock"

STAGING_TABLES = frozenset(table.name for tables in STAGING.values() for table in tables)
"""Tables whose rows are written once, read once by the next merge and deleted: DuckDB stores them
uncompressed. Choosing and applying a compression for every staged segment cost a third of the time
of staging a chunk, to save disk space the rows hold for minutes. (A file created before keeps its
staging tables as they were: DuckDB cannot alter a column's compression.)"""


class DuckDBWarehouse(Warehouse):
    """The warehouse tables in the DuckDB file ``path`` (created on first use).

    ``memory_limit`` caps DuckDB's own memory (it spills to disk beyond it): the file is written from
    Airflow workers that run other work too. Merging a million staged customers into an empty table
    peaks at about 435MB of resident memory with the default 320MB, against 490MB with 384MB and
    555MB with 448MB, in the same time (4.1-5.3 s of CPU under load 6 on two cores): the time goes
    to writing the target (compression), not to spilling."""

    looks_up_moved_rows = False
    merges_in_one_statement = False
    skips_unneeded_dedupe = True

    def __init__(
        self,
        path: str | Path,
        *,
        lock_timeout: float = 300.0,
        memory_limit: str = "320MB",
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.dialect = Dialect.duckdb()
        self._config: dict[str, Any] = {"memory_limit": memory_limit}
        if threads:
            self._config["threads"] = threads

    @contextlib.contextmanager
    def connect(self) -> Generator[duckdb.DuckDBPyConnection]:
        """A connection for one operation, waiting while another process holds the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.02
        while True:
            try:
                conn = duckdb.connect(str(self.path), config=self._config)
                break
            except duckdb.IOException as exc:
                if LOCK_ERROR not in str(exc).lower() or time.monotonic() >= deadline:
                    raise
            # Jitter keeps waiting processes from retrying in lockstep.
            time.sleep(min(pause * random.uniform(0.5, 1.5), max(deadline - time.monotonic(), 0)))
            pause = min(pause * 2, 0.5)
        try:
            yield conn
        finally:
            conn.close()

    def ensure_schema(self) -> None:
        d = self.dialect
        statements = []
        for table in schema.TABLES:
            stored = " USING COMPRESSION uncompressed" if table.name in STAGING_TABLES else ""
            columns = ", ".join(
                f"{d.ident(name)} {schema.DUCKDB_TYPES[type_]}{stored}" for name, type_ in table.columns
            )
            statements.append(f"CREATE TABLE IF NOT EXISTS {d.table(table)} ({columns})")
            statements.append(f"COMMENT ON TABLE {d.table(table)} IS {d.string(table.description)}")
        self._run_atomically(statements)

    def _append(self, table: Table, batches: Iterator[pa.RecordBatch]) -> None:
        # DuckDB reads the batches as a stream, inserting one while Python builds the next. A batch
        # that fails to build fails the INSERT (nothing is stored), and DuckDB reports it as text:
        # the caller gets the exception itself.
        failures: list[BaseException] = []

        def read() -> Iterator[pa.RecordBatch]:
            try:
                yield from batches
            except BaseException as exc:
                failures.append(exc)
                raise

        stream = pa.RecordBatchReader.from_batches(arrow_schema(table), read())
        columns = self.dialect.columns(stream.schema.names)
        with self.connect() as conn:
            conn.register("staged_batch", stream)
            try:
                conn.execute(
                    f"INSERT INTO {self.dialect.table(table)} ({columns}) SELECT {columns} FROM staged_batch"
                )
            except duckdb.Error:
                if failures:
                    raise failures[0] from None
                raise

    def _select(self, query: str) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(query).fetchall()

    def _execute(self, statement: str) -> int:
        with self.connect() as conn:
            (count,) = conn.execute(statement).fetchone() or (0,)
            return int(count)

    def _run_atomically(self, statements: Sequence[str], then: str | None = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            conn.begin()
            try:
                for statement in statements:
                    conn.execute(statement)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            return conn.execute(then).fetchall() if then else []
