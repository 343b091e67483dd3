"""All-or-nothing chunked writes to the DWH tables, and paged reads.

:func:`write_rows` is what ``POST /dwh/<table>`` and the export DAGs call. Its promises:

* **Nothing is half-written.** Every chunk goes into one transaction; an invalid row, a malformed
  request body or a database error anywhere rolls the whole write back.
* **Every problem is reported.** Each row is validated (:mod:`include.dwh.validation`); the errors of
  all rows, up to ``max_errors``, come back together in one :class:`ValidationError`.
* **Each batch stays bounded** by ``max_rows`` rows and ``max_bytes`` bytes, where a row's bytes are
  the size of its bound parameters: UTF-8 length of text (JSON objects as their encoded text) and
  8 bytes per number, boolean or timestamp (``loaded_at`` included). That is what travels to the
  server, so the bound protects MySQL's ``max_allowed_packet`` and the server's memory; a row larger
  than ``max_bytes`` on its own is rejected as invalid. A batch is one multi-row ``INSERT``
  (on PostgreSQL with psycopg 3, rows streamed into a COPY: one for the whole write when ``rows`` is
  a sized collection, such as a parsed request body, else one per batch).
* **Ids come back in input order.** PostgreSQL with psycopg 3: the ids are drawn from the table's
  sequence first (all at once when ``rows`` is sized) and given to the rows in ascending order;
  other drivers go through SQLAlchemy's ordered RETURNING
  (``INSERT ... SELECT ... ORDER BY <position> RETURNING id``). SQLite: ``RETURNING`` sorted, because
  one statement's rowids are assigned ascending in VALUES order while it holds the write lock. MySQL/MariaDB:
  ``LAST_INSERT_ID()``, because a multi-row ``INSERT ... VALUES`` is a "simple insert" for which
  InnoDB reserves all its auto-increment values at once (consecutive in every
  ``innodb_autoinc_lock_mode``), so the ids are ``first + k * @@auto_increment_increment``.

Rows are consumed as an iterable and validated as they arrive, so a request body can be parsed one
row at a time: memory holds one chunk, not the whole input. A row may also come as its JSON text
(:class:`msgspec.Raw`, as the plugin hands over a request body's rows): a valid one is then decoded
and checked in one step (:mod:`include.dwh.json_rows`), any other decoded by ``decode_raw`` and
checked field by field, so that the outcome and the messages are those of the decoded row. A row may
also come checked already (:class:`CheckedRow`: what
:meth:`RowValidator.convert <include.dwh.validation.RowValidator.convert>` gave for values decoded
to the table's types, as the Amplitude export's splitter checks each event once for all its rows);
only its size is checked then. Writing
starts with the first full chunk (the database is not even connected to before) and stops at the
first invalid row; validation goes on to collect the other errors, and the transaction is rolled
back. The outcome is the same as validating everything before writing, without keeping every row in
memory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from msgspec import Raw

from include.common.sql import multi_row_insert
from include.dwh.json_rows import JsonRows
from include.dwh.pg_copy import block_inserter, copy_inserter
from include.dwh.validation import FIXED_VALUE_BYTES, RowError, RowValidator, ValidationError

DEFAULT_MAX_ROWS = 1000
DEFAULT_MAX_BYTES = 10_000_000
DEFAULT_MAX_ERRORS = 100
DEFAULT_READ_LIMIT = 100
MAX_READ_LIMIT = 1000

T = TypeVar("T")
#: One row's parameters, in the order of the validator's columns and ``loaded_at``.
Params = list[Any]


class CheckedRow(NamedTuple):
    """A row that passed the validator's checks: its values converted for the database, in the order
    of the table's writable columns, and their size in bytes, as
    :meth:`RowValidator.convert <include.dwh.validation.RowValidator.convert>` returns them for
    values already of their columns' types, lengths and ranges (which a typed decoder checked), by
    a validator built for the engine's dialect (:func:`timestamps_as_text`). The writer appends
    ``loaded_at`` to ``values``."""

    values: list[Any]
    size: int


@dataclass(frozen=True)
class WriteResult:
    """Ids of the inserted rows in input order, how many, and in how many batches (INSERTs)."""

    inserted_ids: list[int]
    count: int
    batches: int


def chunk_rows(sized_rows: Iterable[tuple[T, int]], max_rows: int, max_bytes: int) -> Iterator[list[T]]:
    """Group ``(row, size)`` pairs, in order, into chunks of at most ``max_rows`` rows and ``max_bytes``.

    A chunk is closed when the next row would break either bound. A row larger than ``max_bytes``
    alone still forms a chunk of its own (the writer rejects such rows before they get here).
    """
    if max_rows < 1 or max_bytes < 1:
        raise ValueError(f"max_rows and max_bytes must be positive, got {max_rows} and {max_bytes}")
    chunk: list[T] = []
    chunk_bytes = 0
    for row, size in sized_rows:
        if chunk and (len(chunk) == max_rows or chunk_bytes + size > max_bytes):
            yield chunk
            chunk, chunk_bytes = [], 0
        chunk.append(row)
        chunk_bytes += size
    if chunk:
        yield chunk


def timestamps_as_text(dialect: sa.Dialect) -> bool:
    """Whether :func:`write_rows` hands the database timestamps as the text ``isoformat(" ")`` writes
    (:func:`include.dwh.validation.sqlite_timestamp`) instead of datetimes: on SQLite, which stores
    that text."""
    return dialect.name == "sqlite"


def write_rows(
    engine: sa.Engine,
    table: sa.Table,
    rows: Iterable[Any],
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_errors: int = DEFAULT_MAX_ERRORS,
    decode_raw: Callable[[int, Raw], Any] = lambda _index, raw: json.loads(bytes(raw)),
    copy_blocks: Callable[[str, bytes], None] | None = None,
) -> WriteResult:
    """Insert ``rows`` (mappings of column name to JSON-like value, their JSON text as
    :class:`msgspec.Raw`, or :class:`CheckedRow`) into ``table`` in one transaction.

    Raises :class:`~include.dwh.validation.ValidationError` (nothing written) when any row is
    invalid; exceptions raised by ``rows`` itself (say, a malformed request body) or by
    ``decode_raw(index, raw)`` (which decodes the text of a row that is not valid) and database
    errors propagate after the rollback. The table must exist (:func:`include.dwh.schema.create_all`).

    ``copy_blocks`` (PostgreSQL with psycopg only) hands each chunk, as a COPY statement and its data,
    to be copied on another connection (:func:`include.dwh.pg_copy.block_inserter`); the rows are then
    checked and their ids drawn on ``engine``'s, and the write is atomic only with the other's
    transaction, which is the caller's to end.
    """
    if max_errors < 1:
        raise ValueError(f"max_errors must be positive, got {max_errors}")
    as_text = timestamps_as_text(engine.dialect)
    validator = RowValidator(table, timestamps_as_text=as_text)
    json_rows: JsonRows | None = None  # built for the first row given as text, if any
    loaded_at_value = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    loaded_at = loaded_at_value.isoformat(" ") if as_text else loaded_at_value
    errors: list[RowError] = []

    def valid_rows() -> Iterator[tuple[Params, int]]:
        nonlocal json_rows
        for index, row in enumerate(rows):
            try:
                checked = None
                if type(row) is CheckedRow:
                    checked = row
                elif type(row) is Raw:
                    json_rows = json_rows or JsonRows(validator)
                    checked = json_rows.check(row)
                    if checked is None:
                        row = decode_raw(index, row)
                values, size = checked if checked is not None else validator.check_values(index, row)
            except ValidationError as exc:
                errors.extend(exc.errors)
            else:
                size += FIXED_VALUE_BYTES  # loaded_at
                if size > max_bytes:
                    message = f"is {size} bytes as parameters; one INSERT may carry at most {max_bytes} bytes"
                    errors.append(RowError(index, None, message))
                elif not errors:  # after the first error nothing more is written: only validate
                    values.append(loaded_at)
                    yield values, size
            if len(errors) >= max_errors:
                return  # enough to act on: the rest of the input is not even read

    inserted: list[int] = []
    batches = 0
    with contextlib.ExitStack() as stack:
        insert: Callable[[list[Params]], list[int]] | None = None
        for chunk in chunk_rows(valid_rows(), max_rows, max_bytes):
            if errors:
                continue
            if insert is None:  # connect only once there is something valid to write
                conn = stack.enter_context(engine.begin())
                columns = (*validator.columns, "loaded_at")
                expected = len(rows) if isinstance(rows, Sized) else None
                insert = _inserter(conn, table, columns, stack, expected, copy_blocks)
            inserted.extend(insert(chunk))
            batches += 1
        if errors:
            raise ValidationError(errors[:max_errors], truncated=len(errors) >= max_errors)
    return WriteResult(inserted, len(inserted), batches)


def _inserter(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    stack: contextlib.ExitStack,
    expected_rows: int | None,
    copy_blocks: Callable[[str, bytes], None] | None,
) -> Callable[[list[Params]], list[int]]:
    """A function writing one chunk (rows of values in ``columns`` order) with one INSERT and returning
    the new ids in input order. What it leaves open (PostgreSQL's COPY) is closed by ``stack``, before
    the transaction ends; ``expected_rows`` is the number of input rows, when known beforehand."""
    dialect, driver = conn.dialect.name, conn.dialect.driver
    if copy_blocks is not None:
        if (dialect, driver) != ("postgresql", "psycopg"):
            raise ValueError(f"copy_blocks needs PostgreSQL with psycopg, not {dialect}+{driver}")
        return block_inserter(conn, table, columns, copy_blocks)
    if dialect == "mysql":
        return _mysql_inserter(conn, table, columns)
    if dialect == "postgresql" and driver == "psycopg":
        return copy_inserter(conn, table, columns, stack, expected_rows)
    if dialect == "postgresql":
        # SQLAlchemy's INSERT ... SELECT ... ORDER BY sentinel: ids come back in parameter order.
        ordered = sa.insert(table).returning(table.c.id, sort_by_parameter_order=True)

        def insert_postgresql(chunk: list[Params]) -> list[int]:
            stmt = ordered.execution_options(insertmanyvalues_page_size=len(chunk))  # one statement
            return list(conn.execute(stmt, [dict(zip(columns, row, strict=True)) for row in chunk]).scalars())

        return insert_postgresql
    if dialect == "sqlite":
        return _sqlite_inserter(conn, table, columns)
    raise ValueError(f"unsupported dialect {dialect!r}; expected sqlite, mysql or postgresql")


def _sqlite_inserter(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str]
) -> Callable[[list[Params]], list[int]]:
    """The driver's own ``executemany``, values converted by the columns' SQLAlchemy types (so they
    read back as SQLAlchemy wrote them); timestamps come as that text already (the validator's
    ``timestamps_as_text``). SQLAlchemy's ``INSERT ... RETURNING`` batches cost five times as much
    here. The transaction holds SQLite's only write lock from the first row to the commit and a new
    rowid is the largest plus one, so the chunk's ids are the consecutive run ending at
    ``last_insert_rowid()``; the change count confirms no row was skipped."""
    processors = [
        None
        if isinstance(table.c[name].type, sa.DateTime)
        else table.c[name].type.bind_processor(conn.dialect)
        for name in columns
    ]
    converted = [(i, process) for i, process in enumerate(processors) if process is not None]
    preparer = conn.dialect.identifier_preparer
    insert_sql = (
        f"INSERT INTO {preparer.format_table(table)} ({', '.join(map(preparer.quote, columns))}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    dbapi_connection = conn.connection.dbapi_connection

    def insert_sqlite(chunk: list[Params]) -> list[int]:
        for row in chunk if converted else ():  # booleans and floats, where the table has them
            for i, process in converted:
                if (value := row[i]) is not None:
                    row[i] = process(value)
        before = dbapi_connection.total_changes
        cursor = dbapi_connection.cursor()
        try:
            cursor.executemany(insert_sql, chunk)
            (last,) = cursor.execute("SELECT last_insert_rowid()").fetchone()
        finally:
            cursor.close()
        if dbapi_connection.total_changes - before != len(chunk):
            raise RuntimeError(
                f"SQLite inserted {dbapi_connection.total_changes - before} of {len(chunk)} rows into {table.name}"
            )
        return list(range(last - len(chunk) + 1, last + 1))

    return insert_sqlite


def _mysql_inserter(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str]
) -> Callable[[list[Params]], list[int]]:
    """A multi-row ``INSERT ... VALUES`` built here: SQLAlchemy would hand MySQLdb an executemany,
    which the driver splits into 64 KB statements, and only the last statement's first id is known."""
    increment = conn.exec_driver_sql("SELECT @@auto_increment_increment").scalar_one()

    def insert_mysql(chunk: list[Params]) -> list[int]:
        params = tuple(value for row in chunk for value in row)
        result = conn.exec_driver_sql(multi_row_insert(conn, table, columns, len(chunk)), params)
        if result.rowcount != len(chunk):
            raise RuntimeError(f"MySQL inserted {result.rowcount} of {len(chunk)} rows into {table.name}")
        first = result.lastrowid
        return [first + k * increment for k in range(len(chunk))]

    return insert_mysql


def read_rows(
    engine: sa.Engine,
    table: sa.Table,
    limit: int = DEFAULT_READ_LIMIT,
    offset: int = 0,
    *,
    max_limit: int = MAX_READ_LIMIT,
) -> tuple[list[dict[str, Any]], int]:
    """One page of ``table`` in id order, as JSON-ready dicts, and the table's total row count.

    Timestamps become ISO 8601 text (UTC, no offset) and JSON columns their objects again, so a row
    read here can be posted back unchanged (minus ``id`` and ``loaded_at``).
    """
    if not 1 <= limit <= max_limit:
        raise ValueError(f"limit must be between 1 and {max_limit}, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must not be negative, got {offset}")
    json_columns = {column.name for column in table.columns if column.info.get("json")}
    page = sa.select(table).order_by(table.c.id).limit(limit).offset(offset)
    with engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        rows = [
            {name: _json_safe(value, name in json_columns) for name, value in row.items()}
            for row in conn.execute(page).mappings()
        ]
    return rows, count


def _json_safe(value: Any, is_json: bool) -> Any:
    if value is None:
        return None
    if is_json:
        return json.loads(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value
