"""The warehouse's statements, written once for BigQuery and DuckDB.

Both engines speak the same SQL for everything the pipeline needs (``MERGE`` with ``NOT MATCHED BY
SOURCE``, ``QUALIFY``, temporary tables, ``IS DISTINCT FROM``); they differ in how identifiers, string
and timestamp literals and the integer type are spelled, which is all :class:`Dialect` carries. Keeping
one text means the DuckDB tests exercise the very statements BigQuery receives.

Every value a statement depends on (tenants, partition bounds, cut-off times) is inlined as a literal:
BigQuery prunes partitions only on constant bounds, and literals keep the text identical across
engines, where query parameters are spelled differently.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from include.callio import schema
from include.callio.schema import Table

CHANGES = "staged_changes"  # temporary table of the staged rows a statement batch writes
NEW_KEY = "is_new_key"  # its column marking the rows whose key the target lacks (see merge)


@dataclass(frozen=True)
class Dialect:
    """Spelling of one engine: identifier quote, string escapes, timestamp literal, integer type."""

    name: str
    quote: str
    int64: str
    timestamp_keyword: str
    table_prefix: str = ""  # BigQuery: ``project.dataset.``

    @classmethod
    def bigquery(cls, project: str, dataset: str) -> Dialect:
        return cls("bigquery", "`", "INT64", "TIMESTAMP", f"{project}.{dataset}.")

    @classmethod
    def duckdb(cls) -> Dialect:
        return cls("duckdb", '"', "BIGINT", "TIMESTAMPTZ")

    def ident(self, name: str) -> str:
        if self.quote in name:
            raise ValueError(f"identifier {name!r} contains {self.quote}")
        return f"{self.quote}{name}{self.quote}"

    def table(self, table: Table | str) -> str:
        name = table.name if isinstance(table, Table) else table
        return self.ident(self.table_prefix + name)

    def string(self, value: str) -> str:
        if self.name == "bigquery":  # backslash escapes; a raw newline would end the literal
            value = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
        else:
            value = value.replace("'", "''")
        return f"'{value}'"

    def strings(self, values: Iterable[str]) -> str:
        return ", ".join(self.string(v) for v in values)

    def date(self, day: dt.date) -> str:
        return f"DATE '{day.isoformat()}'"

    def timestamp(self, moment: dt.datetime) -> str:
        utc = moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        return f"{self.timestamp_keyword} '{utc}'"

    def columns(self, names: Iterable[str], alias: str | None = None) -> str:
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + self.ident(n) for n in names)

    def between(self, column: str, low: dt.date, high: dt.date) -> str:
        return f"{column} BETWEEN {self.date(low)} AND {self.date(high)}"

    def one_of_days(self, column: str, days: Sequence[dt.date | None]) -> str:
        """``column`` in exactly these days (None: the NULL partition); no day at all reads nothing."""
        terms = []
        if dated := sorted(day for day in days if day is not None):
            terms.append(f"{column} IN ({', '.join(self.date(day) for day in dated)})")
        if None in days:
            terms.append(f"{column} IS NULL")
        return f"({' OR '.join(terms)})" if terms else "FALSE"


@dataclass(frozen=True)
class MergeSpec:
    """How staged rows of one table reach their target.

    ``key`` identifies a row; staged duplicates of a key (two fetches, a retried stage) collapse to the
    first by ``newest_first`` (descending), so the newest version wins and ties resolve the same way
    on every engine. ``updates`` false means a loaded row never changes (calls); ``only_newer`` names
    the column that must grow for an update to apply (an older version never overwrites a newer one).
    ``rows_move``: an update may carry a row to another partition (a customer's NgayUpdate).
    """

    target: Table
    staging: Table
    key: tuple[str, ...]
    newest_first: tuple[str, ...]
    updates: bool = True
    only_newer: str | None = None
    rows_move: bool = False


CUSTOMERS = MergeSpec(
    schema.CUSTOMER,
    schema.STG_CUSTOMER,
    ("tenant", "_id"),
    ("updateTime", "row_hash"),
    only_newer="updateTime",
    rows_move=True,
)
CALLS = MergeSpec(
    schema.CALL_LOG, schema.STG_CALL_LOG, ("tenant", "_id"), ("createTime", "row_hash"), updates=False
)
STAFF = MergeSpec(schema.STAFF, schema.STG_STAFF, ("tenant", "name"), ("updateTime", "row_hash"))
GROUPS = MergeSpec(schema.GROUP, schema.STG_GROUP, ("tenant", "group_id"), ("row_hash",))


def _key_match(d: Dialect, key: Sequence[str], left: str = "T", right: str = "S") -> str:
    return " AND ".join(f"{left}.{d.ident(k)} = {right}.{d.ident(k)}" for k in key)


def _tenant_filter(d: Dialect, tenants: Sequence[str], alias: str | None = None) -> str:
    return f"{d.columns(['tenant'], alias)} IN ({d.strings(tenants)})"


def staged_rows(
    d: Dialect, spec: MergeSpec, tenants: Sequence[str], where: str = "TRUE", unique: bool = False
) -> str:
    """The staged rows of ``tenants``, one per key: the newest version.

    ``unique``: no key is staged twice (see :func:`duplicate_keys`), so every row is its key's newest
    and the window that picks it is left out."""
    rows = f"SELECT {d.columns(spec.staging.column_names)} FROM {d.table(spec.staging)} WHERE {_tenant_filter(d, tenants)} AND {where}"
    if unique:
        return rows
    order = ", ".join(f"{d.ident(c)} DESC NULLS LAST" for c in spec.newest_first)
    return f"{rows} QUALIFY ROW_NUMBER() OVER (PARTITION BY {d.columns(spec.key)} ORDER BY {order}) = 1"


def duplicate_keys(d: Dialect, spec: MergeSpec, tenants: Sequence[str]) -> str:
    """How many keys ``tenants`` staged more than once."""
    return (
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {d.table(spec.staging)} WHERE {_tenant_filter(d, tenants)} "
        f"GROUP BY {d.columns(spec.key)} HAVING COUNT(*) > 1) AS D"
    )


def staged_range(d: Dialect, staging: Table, tenants: Sequence[str]) -> str:
    """First and last partition day among the staged rows of ``tenants``."""
    day = d.ident(staging.partition_by)
    return f"SELECT MIN({day}), MAX({day}) FROM {d.table(staging)} WHERE {_tenant_filter(d, tenants)}"


def staged_count(d: Dialect, staging: Table, tenants: Sequence[str]) -> str:
    return f"SELECT COUNT(*) FROM {d.table(staging)} WHERE {_tenant_filter(d, tenants)}"


def current_days(d: Dialect, spec: MergeSpec, tenants: Sequence[str]) -> str:
    """The partitions of the target that hold a version of a staged key.

    Reads three narrow columns of the tenants' target rows; the merge then touches only these
    partitions instead of every partition of the target."""
    day = d.ident(spec.target.partition_by)
    keys = f"SELECT DISTINCT {d.columns(spec.key)} FROM {d.table(spec.staging)} WHERE {_tenant_filter(d, tenants)}"
    return (
        f"SELECT DISTINCT T.{day} FROM {d.table(spec.target)} AS T "
        f"JOIN ({keys}) AS S ON {_key_match(d, spec.key)} WHERE {_tenant_filter(d, tenants, 'T')}"
    )


def merge(
    d: Dialect,
    spec: MergeSpec,
    tenants: Sequence[str],
    staged_where: str = "TRUE",
    target_where: str = "TRUE",
    *,
    unique: bool = False,
    one_statement: bool = True,
) -> list[str]:
    """Statements that move the staged rows of ``tenants`` into the target, then clear them.

    The rows that will change (new keys, and for updatable tables changed versions) are collected
    first into :data:`CHANGES`, so the batch can report per tenant what it wrote; a MERGE then
    applies exactly those, or with ``one_statement`` false an UPDATE of the changed keys and an
    INSERT of the new ones (:data:`NEW_KEY` marks them). ``target_where`` (on alias ``T``) must admit
    every partition holding a version of a staged key, or that key would be inserted a second time.
    ``unique``: as for :func:`staged_rows`.
    """
    target, last_key = d.table(spec.target), d.ident(spec.key[-1])
    compared = list(spec.key)
    new_key = f"T.{last_key} IS NULL"
    changed = [new_key]
    if spec.updates:
        compared += ["row_hash"] + ([spec.only_newer] if spec.only_newer else [])
        newer = ""
        if spec.only_newer:
            col = d.ident(spec.only_newer)
            newer = f"(T.{col} IS NULL OR S.{col} > T.{col}) AND "
        changed.append(f"({newer}S.{d.ident('row_hash')} IS DISTINCT FROM T.{d.ident('row_hash')})")
    split = spec.updates and not one_statement
    flag = f", {new_key} AS {d.ident(NEW_KEY)}" if split else ""
    changes = (
        f"CREATE TEMP TABLE {CHANGES} AS SELECT S.*{flag} "
        f"FROM ({staged_rows(d, spec, tenants, staged_where, unique)}) AS S "
        f"LEFT JOIN (SELECT {d.columns(compared)} FROM {target} AS T WHERE {target_where}) AS T "
        f"ON {_key_match(d, spec.key)} WHERE {' OR '.join(changed)}"
    )
    columns = spec.target.column_names
    insert = f"INSERT INTO {target} ({d.columns(columns)}) SELECT {d.columns(columns)} FROM {CHANGES}"
    updated = ", ".join(f"{d.ident(c)} = S.{d.ident(c)}" for c in columns if c not in spec.key)
    if not spec.updates:
        writes = [insert]
    elif split:
        writes = [
            f"UPDATE {target} AS T SET {updated} FROM {CHANGES} AS S "
            f"WHERE NOT S.{d.ident(NEW_KEY)} AND {target_where} AND {_key_match(d, spec.key)}",
            f"{insert} WHERE {d.ident(NEW_KEY)}",
        ]
    else:
        writes = [
            f"MERGE INTO {target} AS T USING {CHANGES} AS S ON {target_where} AND {_key_match(d, spec.key)} "
            f"WHEN MATCHED THEN UPDATE SET {updated} "
            f"WHEN NOT MATCHED THEN INSERT ({d.columns(columns)}) VALUES ({d.columns(columns, 'S')})"
        ]
    return [changes, *writes, clear_staging(d, spec.staging, tenants)]


def replace(d: Dialect, spec: MergeSpec, tenants: Sequence[str]) -> list[str]:
    """Statements that make each staged tenant's target rows exactly its staged snapshot.

    A tenant of ``tenants`` with nothing staged keeps its rows: an absent snapshot (a failed fetch)
    must not read as "everything was deleted"."""
    target, columns = d.table(spec.target), spec.target.column_names
    return [
        f"CREATE TEMP TABLE {CHANGES} AS {staged_rows(d, spec, tenants)}",
        f"DELETE FROM {target} WHERE {d.ident('tenant')} IN (SELECT DISTINCT {d.ident('tenant')} FROM {CHANGES})",
        f"INSERT INTO {target} ({d.columns(columns)}) SELECT {d.columns(columns)} FROM {CHANGES}",
        clear_staging(d, spec.staging, tenants),
    ]


def changes_per_tenant(d: Dialect) -> str:
    tenant = d.ident("tenant")
    return f"SELECT {tenant}, COUNT(*) FROM {CHANGES} GROUP BY {tenant}"


def clear_staging(d: Dialect, staging: Table, tenants: Sequence[str]) -> str:
    return f"DELETE FROM {d.table(staging)} WHERE {_tenant_filter(d, tenants)}"


def checkpoints(d: Dialect, table_name: str) -> str:
    """Per tenant, the newest source time ``table_name`` is complete up to."""
    tenant, newest = d.ident("tenant"), d.ident("max_updateTime")
    return (
        f"SELECT {tenant}, MAX({newest}) FROM {d.table(schema.UPDATE_LOG)} "
        f"WHERE {d.ident('table_name')} = {d.string(table_name)} AND {newest} IS NOT NULL GROUP BY {tenant}"
    )


def prune_update_log(d: Dialect, cutoff: dt.datetime) -> str:
    """Delete log rows older than ``cutoff``, except each (table, tenant)'s checkpoint row.

    A row survives when no other row of its table and tenant has a newer checkpoint (ties: a later
    ``updated_at``), so :func:`checkpoints` answers the same before and after."""
    log = d.table(schema.UPDATE_LOG)
    table_name, tenant, at = d.ident("table_name"), d.ident("tenant"), d.ident("updated_at")
    newest = d.ident("max_updateTime")
    superseded = (
        f"SELECT 1 FROM {log} AS N WHERE N.{table_name} IS NOT DISTINCT FROM U.{table_name} "
        f"AND N.{tenant} IS NOT DISTINCT FROM U.{tenant} AND (N.{newest} > U.{newest} "
        f"OR (N.{newest} = U.{newest} AND N.{at} > U.{at}))"
    )
    return (
        f"DELETE FROM {log} AS U WHERE U.{at} < {d.timestamp(cutoff)} "
        f"AND (U.{newest} IS NULL OR EXISTS ({superseded}))"
    )
