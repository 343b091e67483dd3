"""Does a table that already exists have the shape a pipeline reads or writes? Checked before any write.

The pipelines create their tables only when missing. At a site that ran the services this repository
replaces, ``prepared_conversations``, ``products_staging`` or ``products`` already exist, made by a DBA,
and may differ from what the pipeline expects: a column missing or renamed, ``call_id`` an integer,
``group_code`` shorter than the values, a NOT NULL column the pipeline does not fill, no unique key for
the insert-ignore to rely on. Written to blindly, such a table fails mid-run with a driver error after
some batches were committed (or, without the unique key, silently stores a re-run twice). So each
pipeline compares the live tables with its SQLAlchemy model first and stops, before writing anything,
with one message that names every problem and the shape expected.

Columns match by kind, not by exact type, so a DBA's choices that store the same values pass: any
integer type for an integer (``TINYINT(1)`` also for a boolean), any text type for text (with at least
the model's length where it has one; SQLite ignores lengths), ``DECIMAL`` with at least the model's
digits, ``DATETIME`` or ``TIMESTAMP`` for a date-time (also for a date). A model column lists further
kinds it can be read from in ``info["shape_accepts"]`` (a feed's price may be a ``DECIMAL``). Extra
columns are accepted as long as an insert that leaves them out succeeds: nullable, with a default, or
generated.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql


class TableShapeError(ValueError):
    """An existing table does not have the shape the pipeline needs; nothing was written."""


#: Live kinds accepted for each kind of model column.
COMPATIBLE_KINDS = {
    "integer": {"integer"},
    "boolean": {"boolean", "integer"},
    "decimal": {"decimal"},
    "text": {"text"},
    "datetime": {"datetime"},
    "date": {"date", "datetime"},
}
#: MySQL text types too small to be "unbounded text" (TINYTEXT holds 255 bytes).
_SMALL_TEXT = (mysql.TINYTEXT,)


#: Type classes and their kinds, the more specific first (a Float is a Numeric).
_KINDS = (
    (sa.Boolean, "boolean"),
    (sa.Integer, "integer"),
    (sa.Float, "float"),
    (sa.Numeric, "decimal"),
    (sa.DateTime, "datetime"),
    (sa.Date, "date"),
    (sa.String, "text"),
    (sa.LargeBinary, "binary"),
)


def kind_of(type_: sa.types.TypeEngine) -> str:
    """The kind of a column type: what values it stores, whatever the database calls it (``json``,
    ``jsonb``, ... for the types outside :data:`_KINDS`)."""
    return next((kind for cls, kind in _KINDS if isinstance(type_, cls)), type(type_).__name__.lower())


def describe_type(type_: sa.types.TypeEngine) -> str:
    """The model type as the expected shape names it: ``text(64)``, ``text``, ``decimal(12,2)``, ..."""
    kind = kind_of(type_)
    if kind == "text" and getattr(type_, "length", None):
        return f"text({type_.length})"
    if kind == "decimal" and type_.precision is not None:
        return f"decimal({type_.precision},{type_.scale or 0})"
    return kind


def unique_keys(conn: sa.Connection, table: str) -> list[tuple[str | None, list[str], str]]:
    """(name, columns, kind) of each unique key of ``table``, kind being "constraint" or "index".

    SQLite does not reflect a UNIQUE written on a column, so its own catalogue is read instead;
    MySQL and PostgreSQL report a key once as constraint and once as index, and are counted once.
    """
    if conn.dialect.name == "sqlite":
        keys = []
        for _seq, name, unique, origin, *_ in conn.exec_driver_sql(f"PRAGMA index_list('{table}')"):
            if unique and origin in ("u", "c"):
                columns = [row[2] for row in conn.exec_driver_sql(f"PRAGMA index_info('{name}')")]
                keys.append((name, columns, "constraint" if origin == "u" else "index"))
        return keys
    inspector = sa.inspect(conn)
    keys = [
        (u["name"], u["column_names"], "constraint")
        for u in inspector.get_unique_constraints(table)
        if "duplicates_index" not in u
    ]
    keys += [
        (i["name"], i["column_names"], "index")
        for i in inspector.get_indexes(table)
        if i.get("unique") and "duplicates_constraint" not in i
    ]
    return keys


def model_keys(table: sa.Table) -> list[tuple[str, ...]]:
    """The unique keys of the model, primary key excluded: what insert-ignore and upsert rely on."""
    keys = [
        tuple(c.name for c in constraint.columns)
        for constraint in table.constraints
        if isinstance(constraint, sa.UniqueConstraint)
    ]
    keys += [tuple(c.name for c in index.columns) for index in table.indexes if index.unique]
    return keys


def _generated(table: sa.Table) -> sa.Column | None:
    """The model's surrogate key, which the database fills on insert."""
    primary = list(table.primary_key.columns)
    return primary[0] if len(primary) == 1 and primary[0].autoincrement is True else None


def _live_generated(conn: sa.Connection, column: dict[str, Any], primary: list[str]) -> bool:
    """Whether the database fills a live column on insert: AUTO_INCREMENT, a sequence, an identity,
    or SQLite's INTEGER PRIMARY KEY (a rowid alias; BIGINT PRIMARY KEY is not one)."""
    if column.get("autoincrement") is True or column.get("identity"):
        return True
    if conn.dialect.name == "sqlite":
        return primary == [column["name"]] and isinstance(column["type"], sa.INTEGER)
    return False


def _show(conn: sa.Connection, type_: sa.types.TypeEngine) -> str:
    try:
        return type_.compile(dialect=conn.dialect)
    except Exception:  # a reflected type the dialect cannot print back: its class name will do
        return type(type_).__name__


def _type_problem(conn: sa.Connection, column: sa.Column, live: dict[str, Any], writes: bool) -> str | None:
    """Why the live column cannot hold (or, when only read, give) the model column's values, or None."""
    expected, found = column.type, live["type"]
    expected_kind, found_kind = kind_of(expected), kind_of(found)
    shown = f"{column.name} is {_show(conn, found)}"
    accepted = COMPATIBLE_KINDS.get(expected_kind, {expected_kind}) | set(
        column.info.get("shape_accepts", ())
    )
    if found_kind not in accepted:
        return f"{shown}: expected {describe_type(expected)}"
    if not writes or conn.dialect.name == "sqlite":  # sizes matter only to writes; SQLite ignores them
        return None
    if expected_kind == "text":
        length, found_length = getattr(expected, "length", None), getattr(found, "length", None)
        if length and found_length and found_length < length:
            return f"{shown}: shorter than the {length} characters the pipeline stores there"
        if not length and (found_length or isinstance(found, _SMALL_TEXT)):
            return f"{shown}: expected unbounded text (TEXT, MEDIUMTEXT, LONGTEXT)"
    if expected_kind == "decimal" and found_kind == "decimal":
        scale, found_scale = expected.scale or 0, found.scale
        if (
            found.precision is not None
            and found_scale is not None
            and (found_scale < scale or found.precision - found_scale < expected.precision - scale)
        ):
            return f"{shown}: expected {describe_type(expected)} or wider"
    return None


def shape_problems(
    conn: sa.Connection,
    table: sa.Table,
    *,
    writes: bool,
    may_add: Collection[str] = (),
    may_add_keys: Collection[tuple[str, ...]] = (),
) -> list[str]:
    """What keeps the live table named like ``table`` from serving the pipeline; [] when nothing does
    or when the table does not exist (the pipeline creates it).

    A read-only table needs the model's columns, of compatible kinds. A table the pipeline ``writes``
    also needs room for every value (lengths, NULL where the model allows it), a database-generated
    surrogate key, the model's unique keys, and no extra column an insert cannot leave out. Columns
    in ``may_add`` and keys in ``may_add_keys`` may be missing: a schema migration adds them.
    """
    inspector = sa.inspect(conn)
    if not inspector.has_table(table.name):
        return []
    live = {c["name"]: c for c in inspector.get_columns(table.name)}
    primary = inspector.get_pk_constraint(table.name).get("constrained_columns") or []
    surrogate = _generated(table)
    problems = []
    for column in table.columns:
        found = live.get(column.name)
        if found is None:
            if column.name not in may_add:
                shown = describe_type(column.type) if writes else kind_of(column.type)
                problems.append(f"missing column {column.name} ({shown})")
            continue
        problem = _type_problem(conn, column, found, writes)
        if problem:
            problems.append(problem)
        elif writes and column is surrogate and not _live_generated(conn, found, primary):
            problems.append(
                f"{column.name} is not generated by the database (AUTO_INCREMENT, identity or serial)"
            )
        elif writes and column.nullable and not found["nullable"] and found.get("default") is None:
            problems.append(f"{column.name} is NOT NULL without a default: the pipeline stores NULL there")
    if writes:
        for name, found in live.items():
            if name in table.columns:
                continue
            if (
                not found["nullable"]
                and found.get("default") is None
                and not _live_generated(conn, found, primary)
            ):
                problems.append(
                    f"extra column {name} is NOT NULL without a default: the pipeline's inserts leave it out"
                )
        existing = {frozenset(columns) for _, columns, _ in unique_keys(conn, table.name)}
        existing.add(frozenset(primary))
        for key in model_keys(table):
            if frozenset(key) not in existing and tuple(key) not in may_add_keys:
                problems.append(f"no unique key on ({', '.join(key)})")
    return problems


def expected_shape(table: sa.Table, *, writes: bool = True) -> str:
    """The model as the check applies it, one item per column and key, for messages and the README.

    A table only read is shown by kinds (with the kinds also accepted); sizes, NULLs and keys matter
    only to a table the pipeline writes."""
    surrogate = _generated(table)
    items = []
    for column in table.columns:
        if not writes:
            also = ", ".join(column.info.get("shape_accepts", ()))
            items.append(f"{column.name} {kind_of(column.type)}{f' (or {also})' if also else ''}")
            continue
        note = "generated primary key" if column is surrogate else "" if column.nullable else "not null"
        items.append(f"{column.name} {describe_type(column.type)}{f', {note}' if note else ''}")
    if writes:
        items += [f"unique ({', '.join(key)})" for key in model_keys(table)]
    return "; ".join(items)


def check_tables(
    engine: sa.Engine,
    pipeline: str,
    *,
    reads: Iterable[sa.Table] = (),
    writes: Iterable[sa.Table] = (),
    may_add: dict[str, Collection[str]] | None = None,
    may_add_keys: dict[str, Collection[tuple[str, ...]]] | None = None,
) -> None:
    """Raise :class:`TableShapeError` naming every problem of the tables ``pipeline`` ``reads`` (they
    must exist) and of those it ``writes`` that exist already. ``may_add`` / ``may_add_keys``: per table,
    what a pending migration adds (see :func:`shape_problems`).

    Only reads the database's catalogue, so a failing check leaves everything as it was.
    """
    may_add, may_add_keys = may_add or {}, may_add_keys or {}
    report: list[str] = []
    with engine.connect() as conn:
        for table, writing in [*((t, False) for t in reads), *((t, True) for t in writes)]:
            if not writing and not sa.inspect(conn).has_table(table.name):
                report.append(
                    f"{table.name}:\n  - does not exist\n  expected: {expected_shape(table, writes=False)}"
                )
                continue
            problems = shape_problems(
                conn,
                table,
                writes=writing,
                may_add=may_add.get(table.name, ()),
                may_add_keys=may_add_keys.get(table.name, ()),
            )
            if problems:
                lines = "".join(f"\n  - {problem}" for problem in problems)
                report.append(f"{table.name}:{lines}\n  expected: {expected_shape(table, writes=writing)}")
    if report:
        raise TableShapeError(_message(engine, pipeline, report))


def _message(engine: sa.Engine, pipeline: str, report: Sequence[str]) -> str:
    where = f"{engine.dialect.name} database {engine.url.database!r}"
    return "\n".join(
        [
            f"{pipeline} cannot use the tables of {where}; nothing was written.",
            *report,
            "Extra columns are fine when nullable, with a default, or generated. Alter the table(s) or point"
            " the connection at another database (README: Existing tables).",
        ]
    )
