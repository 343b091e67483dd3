"""PostgreSQL writes of the DWH tables through psycopg 3's COPY, for :func:`include.dwh.batch_writer.write_rows`.

Ids are drawn from the table's sequence before the rows go in (``nextval`` for each, so none collides
with another writer's) and given to the rows in ascending order, so they rise with the input as a
server-side default would make them. Two ways in:

* :func:`copy_inserter` copies the rows on the write's own connection;
* :func:`block_inserter` draws the ids and formats the rows on one connection into complete COPY
  blocks, which another connection, in another thread, copies: what a load of many tables in one
  transaction uses (:func:`include.dwh.exports.replace_periods`), so that the thread holding the
  transaction only streams bytes to the server while the other reads and formats the next rows.
"""

from __future__ import annotations

import contextlib
import io
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from include.dwh.validation import column_rules

#: One row's values, in the order of the COPY's columns after the id.
Row = list[Any]
_RESERVE_SQL = "SELECT nextval(%s::regclass) FROM generate_series(1, %s)"


def copy_inserter(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    stack: contextlib.ExitStack,
    expected_rows: int | None,
) -> Callable[[list[Row]], list[int]]:
    """``COPY`` the rows, ids included, straight into the table on ``conn``: no staging table, and no
    INSERT whose placeholders psycopg parses in Python; in COPY's binary format where the table's
    column types allow it (:func:`binary_copy_types`).

    When the number of input rows is known (``expected_rows``), the ids of them all are drawn at once
    and every chunk goes into one COPY, left open until the write ends (closed by ``stack``): the
    server stores each row as it arrives while the next chunk is validated here, instead of each side
    waiting for the other at every chunk's end (a query cannot run while a COPY is open). Otherwise, or
    when more rows come than announced, each chunk draws its ids and has a COPY of its own. Ids drawn
    for rows that never come (the write failed and is rolled back) are lost, as any rolled-back
    ``nextval`` is."""
    sequence, copy_sql, binary_types = _copy_target(conn, table, tuple(columns))
    dbapi_connection = conn.connection.dbapi_connection
    copying = stack.enter_context(contextlib.ExitStack())  # the open COPY and its cursor
    copy: Any = None
    drawn: list[int] = []  # the ids drawn, ascending; the first ``given`` went to rows already
    given = 0
    announced = expected_rows or 0  # rows still to come, as far as known

    def insert_psycopg(chunk: list[Row]) -> list[int]:
        nonlocal copy, drawn, given, announced
        if len(drawn) - given < len(chunk):
            copying.close()  # the COPY of the ids drawn before, if any
            cursor = copying.enter_context(dbapi_connection.cursor())
            drawn, given = _draw_ids(cursor, sequence, max(len(chunk), announced)), 0
            copy = copying.enter_context(cursor.copy(copy_sql))
            if binary_types:
                copy.set_types(binary_types)
        ids = drawn[given : given + len(chunk)]
        given, announced = given + len(chunk), announced - len(chunk)
        write_row = copy.write_row
        for id_, row in zip(ids, chunk, strict=True):
            write_row((id_, *row))
        return ids

    return insert_psycopg


def block_inserter(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str], send: Callable[[str, bytes], None]
) -> Callable[[list[Row]], list[int]]:
    """Each chunk's ids drawn on ``conn``, its rows formatted there as one complete COPY stream (in
    binary where :func:`copy_inserter` would use it), and ``send(copy_sql, block)`` called to copy it
    on the connection of the write's transaction. ``conn`` writes nothing: its ``nextval`` s are not
    undone by a rollback anyway (their lock on the sequence only keeps it from being altered), and the
    table's catalog is read in its transaction once."""
    from psycopg.copy import Copy, FileWriter  # here: importing psycopg costs 0.14 s, and only this needs it

    sequence, copy_sql, binary_types = _copy_target(conn, table, tuple(columns))
    dbapi_connection = conn.connection.dbapi_connection

    def insert_block(chunk: list[Row]) -> list[int]:
        block = io.BytesIO()
        with dbapi_connection.cursor() as cursor:
            ids = _draw_ids(cursor, sequence, len(chunk))
        # A cursor of its own: a Copy refuses one that ran a query. Nothing is sent through it.
        with dbapi_connection.cursor() as cursor:
            with Copy(cursor, binary=bool(binary_types), writer=FileWriter(block)) as copy:
                if binary_types:
                    copy.set_types(binary_types)
                write_row = copy.write_row
                for id_, row in zip(ids, chunk, strict=True):
                    write_row((id_, *row))
        send(copy_sql, block.getvalue())
        return ids

    return insert_block


def copy_block(conn: sa.Connection, copy_sql: str, block: bytes) -> None:
    """Copy one of :func:`block_inserter`'s blocks on ``conn``."""
    with conn.connection.dbapi_connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
        copy.write(block)


def _draw_ids(cursor: Any, sequence: str, count: int) -> list[int]:
    """``count`` new ids of ``sequence``, ascending."""
    cursor.execute(_RESERVE_SQL, (sequence, count))
    return sorted(id_ for (id_,) in cursor.fetchall())


class _CopyTarget(NamedTuple):
    sequence: str
    copy_sql: str
    binary_types: list[int] | None


#: Each open transaction's COPY targets by (table, columns): within one transaction a table's sequence
#: and column types stay as first read (altering the table waits for the lock the first write takes),
#: so a load writing many batches into one transaction looks them up once, not twice a batch, which
#: cost an export load a fifth of its time.
_COPY_TARGETS: weakref.WeakKeyDictionary[sa.RootTransaction, dict[tuple, _CopyTarget]] = (
    weakref.WeakKeyDictionary()
)


def _copy_target(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...]) -> _CopyTarget:
    """The table's id sequence and the COPY statement (and binary types) for ``columns``, as the server
    has them, read once per transaction."""
    transaction = conn.get_transaction()
    known = _COPY_TARGETS.setdefault(transaction, {}) if transaction is not None else {}
    if (found := known.get((table.name, columns))) is not None:
        return found
    preparer = conn.dialect.identifier_preparer
    target = preparer.format_table(table)
    column_list = ", ".join(map(preparer.quote, columns))
    with conn.connection.dbapi_connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_serial_sequence(%s, %s), (SELECT array_agg(ARRAY[attname::text, atttypid::text,"
            " format_type(atttypid, NULL)]) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped)",
            (target, table.c.id.name, target),
        )
        sequence, attributes = cursor.fetchone()
    if sequence is None:
        raise ValueError(f"{table.name}.{table.c.id.name} has no sequence; create the table with create_all")
    server_types = {name: (int(oid), type_name) for name, oid, type_name in attributes}
    binary_types = binary_copy_types(table, (table.c.id.name, *columns), server_types)
    copy_sql = f"COPY {target} ({preparer.quote(table.c.id.name)}, {column_list}) FROM STDIN" + (
        " (FORMAT BINARY)" if binary_types else ""
    )
    found = known[(table.name, columns)] = _CopyTarget(sequence, copy_sql, binary_types)
    return found


#: Server types (``format_type``) a column of each kind may have for COPY's binary format, into which
#: psycopg writes the validator's values (str, int, float, bool, naive datetime) as the very values
#: the server would parse from their text; integers of the int32 range may go to ``integer`` too.
_BINARY_COPY_TYPES: dict[str, frozenset[str]] = {
    "string": frozenset({"text", "character varying"}),
    "json": frozenset({"text", "character varying"}),
    "integer": frozenset({"bigint"}),
    "number": frozenset({"double precision"}),
    "boolean": frozenset({"boolean"}),
    "timestamp": frozenset({"timestamp without time zone"}),
}
_INT32_MAX = 2**31 - 1


def binary_copy_types(
    table: sa.Table, columns: Sequence[str], server_types: dict[str, tuple[int, str]]
) -> list[int] | None:
    """The type oids for a binary COPY of ``columns`` (the id, the validator's columns, ``loaded_at``)
    when each of the table's columns on the server has a type whose binary form psycopg writes from
    the validator's value; ``None`` (text COPY) for a table made otherwise (an existing one of other
    types). Binary values cost the server less to read than text (timestamps, numbers), and psycopg
    less to write (a datetime's text takes it eight times as long)."""
    rules = column_rules(table)
    oids: list[int] = []
    for name in columns:
        if name not in server_types:
            return None
        oid, type_name = server_types[name]
        rule = rules.get(name)
        kind = rule.kind if rule else ("timestamp" if name == "loaded_at" else "integer")
        allowed = _BINARY_COPY_TYPES[kind]
        if kind == "integer" and (rule is None or (rule.max_value or 0) <= _INT32_MAX):
            allowed |= {"integer"}  # the id (from the column's own sequence), or a 32-bit rule
        if type_name not in allowed:
            return None
        oids.append(oid)
    return oids
