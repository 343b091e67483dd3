"""The Callio warehouse: what the pipeline does to its tables, whichever engine holds them.

Tenants are fetched in parallel, each staging its rows (an append, safe to run concurrently); then one
call per table and run moves every tenant's staged rows into the target and clears them. BigQuery
limits concurrent DML per table and bills MERGEs by the partitions they read, so the per-table step
runs once, with constant partition bounds computed from the staged rows beforehand.

:class:`Warehouse` holds that logic once; a backend supplies four primitives (append an Arrow batch,
select, run one DML statement, run statements atomically) and :meth:`Warehouse.ensure_schema`.
Every method that changes data is a single statement or a single transaction, so a failure leaves
the tables as they were and a retry starts over cleanly. ``update_log`` rows are written after the
data they describe: a crash in between leaves an older checkpoint, and the next fetch's overlap
re-merges rows idempotently.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from include.callio import schema
from include.callio.schema import Table
from include.callio.warehouse import report, sql
from include.callio.warehouse.arrow_rows import Row, record_batches
from include.callio.warehouse.sql import Dialect, MergeSpec
from include.common.jsonutil import stable_json

STAGING = {
    "customer": (schema.STG_CUSTOMER,),
    "call": (schema.STG_CALL_LOG,),
    "staffgroup": (schema.STG_STAFF, schema.STG_GROUP),
}
"""The staging tables each fetch job fills."""


def _distinct(tenants: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(tenants))


def _per_tenant(tenants: Sequence[str], counts: Iterable[tuple[Any, ...]]) -> dict[str, int]:
    return {tenant: 0 for tenant in tenants} | {tenant: int(n) for tenant, n in counts}


def _as_text(payload: Any) -> str | None:
    return payload if payload is None or isinstance(payload, str) else stable_json(payload)


def business_today() -> dt.date:
    return dt.datetime.now(ZoneInfo(schema.BUSINESS_TZ)).date()


class Warehouse(abc.ABC):
    """Staging, merges, checkpoints and the daily report of the Callio tables."""

    dialect: Dialect
    looks_up_moved_rows = True
    """Whether a merge whose rows move between partitions first finds the partitions holding the
    staged keys' current rows. BigQuery bills a MERGE by the partitions it reads, so the narrow
    lookup pays; an embedded file has no partitions, and the lookup costs a join of every staged key
    with the target (as much as the merge's own read of the target's narrow columns)."""
    merges_in_one_statement = True
    """Whether changed and new rows are written by one MERGE, or by an UPDATE and an INSERT. BigQuery
    bills and limits DML statements; DuckDB's MERGE took 1 to 1.5 s more CPU than an INSERT to load a
    million new customers, and the same as an UPDATE to change 200,000 of them."""
    skips_unneeded_dedupe = False
    """Whether to count the staged keys that repeat and leave out the newest-version window when none
    does. Locally the count is a cheap hash aggregate and the window a sort of every staged row
    (a third of a first merge's time); on BigQuery either is one more billed scan."""

    # -- engine primitives ------------------------------------------------------------------------

    @abc.abstractmethod
    def ensure_schema(self) -> None:
        """Create the dataset and every table of :data:`schema.TABLES` that is missing."""

    @abc.abstractmethod
    def _append(self, table: Table, batches: Iterator[pa.RecordBatch]) -> None:
        """Append every batch to ``table`` in one load or insert, or none if building one fails."""

    @abc.abstractmethod
    def _select(self, query: str) -> list[tuple[Any, ...]]:
        """Rows of a read-only query."""

    @abc.abstractmethod
    def _execute(self, statement: str) -> int:
        """Run one DML statement; return the number of rows it inserted, updated or deleted."""

    @abc.abstractmethod
    def _run_atomically(self, statements: Sequence[str], then: str | None = None) -> list[tuple[Any, ...]]:
        """Run ``statements`` as one transaction, then return the rows of the query ``then`` (if any)."""

    # -- staging ----------------------------------------------------------------------------------

    def stage_customers(self, tenant: str, rows: Sequence[Row]) -> int:
        return self._stage(sql.CUSTOMERS, tenant, rows)

    def stage_calls(self, tenant: str, rows: Sequence[Row]) -> int:
        return self._stage(sql.CALLS, tenant, rows)

    def stage_staff(self, tenant: str, rows: Sequence[Row]) -> int:
        return self._stage(sql.STAFF, tenant, rows)

    def stage_groups(self, tenant: str, rows: Sequence[Row]) -> int:
        return self._stage(sql.GROUPS, tenant, rows)

    def clear_staging(self, job: str, tenants: Iterable[str]) -> int:
        """Delete what ``tenants`` staged for ``job`` (customer, call or staffgroup); return the row count.

        A retried fetch clears first, so rows an earlier attempt staged do not linger. Usually nothing
        is staged, and then no DELETE runs at all: BigQuery allows few concurrent DML statements per
        table, and every tenant's fetch clears at the same time."""
        tenants, d = _distinct(tenants), self.dialect
        if not tenants:
            return 0
        staged = {table: self._select(sql.staged_count(d, table, tenants))[0][0] for table in STAGING[job]}
        statements = [sql.clear_staging(d, table, tenants) for table, count in staged.items() if count]
        if statements:
            self._run_atomically(statements)
        return sum(staged.values())

    def _stage(self, spec: MergeSpec, tenant: str, rows: Sequence[Row]) -> int:
        """Append ``rows`` of ``tenant`` to the staging table; the ``tenant`` argument fills the column.

        Keys and partition days must be present: a row without them could never be matched again
        and would be duplicated by every later merge (such records belong in :meth:`reject`). The
        batches are checked as they are built, and a failing one fails the whole append."""
        if not rows:
            return 0
        staging = spec.staging
        required = [*spec.key, *([staging.partition_by] if staging.partition_by else [])]

        def checked() -> Iterator[pa.RecordBatch]:
            for batch in record_batches(staging, rows, {"tenant": tenant}):
                for column in required:
                    if batch.column(column).null_count:
                        missing = sum(row.get(column) is None for row in rows)
                        raise ValueError(
                            f"{missing} {staging.name} row(s) of tenant {tenant!r} have no {column}"
                        )
                yield batch

        self._append(staging, checked())
        return len(rows)

    # -- staging -> targets -----------------------------------------------------------------------

    def merge_customers(self, tenants: Iterable[str]) -> dict[str, int]:
        """Merge the staged customers of ``tenants``: the newest updateTime per (tenant, _id) wins,
        an unchanged row_hash is left alone. Per tenant, the rows inserted or updated."""
        return self._merge(sql.CUSTOMERS, tenants)

    def append_calls(self, tenants: Iterable[str]) -> dict[str, int]:
        """Append the staged calls of ``tenants`` not yet in call_log; per tenant, the rows appended."""
        return self._merge(sql.CALLS, tenants)

    def merge_staff(self, tenants: Iterable[str]) -> dict[str, int]:
        """Merge the staged staff of ``tenants`` on (tenant, name); per tenant, rows inserted or changed."""
        return self._merge(sql.STAFF, tenants)

    def replace_groups(self, tenants: Iterable[str]) -> dict[str, int]:
        """Replace the groups of each tenant that staged a snapshot; per tenant, the rows it now has.

        Tenants outside ``tenants``, and tenants that staged nothing, keep their rows."""
        tenants = _distinct(tenants)
        if not tenants:
            return {}
        statements = sql.replace(self.dialect, sql.GROUPS, tenants)
        return _per_tenant(tenants, self._run_atomically(statements, sql.changes_per_tenant(self.dialect)))

    def _merge(self, spec: MergeSpec, tenants: Iterable[str]) -> dict[str, int]:
        """Move the staged rows of ``tenants`` into ``spec.target`` in one transaction.

        For a partitioned target the statements carry constant bounds. The staged rows' first and
        last day bound the staging side. On the target side, a call's NgayTao never changes, so the
        staged days bound it exactly; a customer's NgayUpdate moves forward with each change, so its
        current row may sit in any older partition: a lookup of three narrow columns (tenant, _id,
        NgayUpdate) finds the partitions holding the staged keys today, and the target is read only
        there instead of in full (where :attr:`looks_up_moved_rows`; elsewhere it is read in full)."""
        tenants, d = _distinct(tenants), self.dialect
        if not tenants:
            return {}
        staged_where = target_where = "TRUE"
        if spec.target.partition_by:
            day = d.ident(spec.target.partition_by)
            low, high = self._select(sql.staged_range(d, spec.staging, tenants))[0]
            if low is None:
                return _per_tenant(tenants, [])
            staged_where = d.between(day, low, high)
            if spec.rows_move and self.looks_up_moved_rows:
                days = [row[0] for row in self._select(sql.current_days(d, spec, tenants))]
                target_where = d.one_of_days(f"T.{day}", days)
            elif not spec.rows_move:
                target_where = d.between(f"T.{day}", low, high)
        unique = self.skips_unneeded_dedupe and not self._select(sql.duplicate_keys(d, spec, tenants))[0][0]
        statements = sql.merge(
            d,
            spec,
            tenants,
            staged_where,
            target_where,
            unique=unique,
            one_statement=self.merges_in_one_statement,
        )
        return _per_tenant(tenants, self._run_atomically(statements, sql.changes_per_tenant(d)))

    # -- update_log and rejects -------------------------------------------------------------------

    def log_updates(self, entries: Iterable[Row]) -> int:
        """Append one update_log row per entry, all stamped with the same ``updated_at`` (UTC now).

        An entry's ``max_updateTime`` becomes the tenant's checkpoint for ``table_name``; leave it
        None for rows that commit nothing (STAGED, ERROR_LOGIN, backfills)."""
        now = dt.datetime.now(dt.UTC)
        rows = [{**entry, "updated_at": now} for entry in entries]
        for row in rows:
            if row.get("mode") not in schema.MODES:
                raise ValueError(f"update_log mode {row.get('mode')!r} is not one of {schema.MODES}")
        if rows:
            self._append(schema.UPDATE_LOG, record_batches(schema.UPDATE_LOG, rows))
        return len(rows)

    def checkpoints(self, table_name: str) -> dict[str, int]:
        """Per tenant, the newest ``max_updateTime`` logged for ``table_name``."""
        return {
            tenant: int(newest) for tenant, newest in self._select(sql.checkpoints(self.dialect, table_name))
        }

    def prune_update_log(self, keep_days: int) -> int:
        """Delete update_log rows older than ``keep_days`` but each tenant's checkpoint row; return the count."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=keep_days)
        return self._execute(sql.prune_update_log(self.dialect, cutoff))

    def reject(self, rows: Iterable[Row]) -> int:
        """Append records that could not be loaded, with their reason, to the rejects table.

        A payload that is not text is stored as stable JSON; ``rejected_at`` defaults to now."""
        now = dt.datetime.now(dt.UTC)
        prepared = [
            {**row, "payload": _as_text(row.get("payload")), "rejected_at": row.get("rejected_at") or now}
            for row in rows
        ]
        if prepared:
            self._append(schema.REJECTS, record_batches(schema.REJECTS, prepared))
        return len(prepared)

    # -- report -----------------------------------------------------------------------------------

    def refresh_staff_daily(self, since_day: dt.date, until_day: dt.date | None = None) -> int:
        """Recompute fact_staff_daily_PK for ``since_day`` .. ``until_day`` (default: today, UTC+7).

        Returns the rows inserted, changed or deleted; see :mod:`report` for the definitions."""
        until_day = until_day or business_today()
        if until_day < since_day:
            raise ValueError(f"until_day {until_day} is before since_day {since_day}")
        return self._execute(report.refresh_staff_daily(self.dialect, since_day, until_day))
