"""Insert-ignore and upsert that mean the same thing on SQLite, MariaDB/MySQL and PostgreSQL.

Idempotency rests on unique keys enforced by the database, never on check-then-insert: two runs
racing for the same key both succeed and the row exists once. Both helpers report how many rows
they actually inserted, because run summaries count inserted versus skipped rows.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

Row = Mapping[str, Any]


def _dialect_insert(table: sa.Table, dialect: str):
    if dialect == "mysql":
        return mysql.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"unsupported dialect {dialect!r}")


def _returning_key(table: sa.Table) -> sa.Column:
    return next(iter(table.primary_key.columns))


def insert_ignore(conn: sa.Connection, table: sa.Table, rows: Sequence[Row]) -> int:
    """Insert ``rows``, silently skipping those that collide with a unique key; return how many went in.

    MySQL reports the inserted count as the statement's rowcount; PostgreSQL and SQLite return the
    keys of the rows actually written (``ON CONFLICT DO NOTHING ... RETURNING``), which stays exact
    when the driver batches the rows into several statements.
    """
    if not rows:
        return 0
    dialect = conn.dialect.name
    stmt = _dialect_insert(table, dialect)
    if dialect == "mysql":
        return conn.execute(stmt.prefix_with("IGNORE"), list(rows)).rowcount
    stmt = stmt.on_conflict_do_nothing().returning(_returning_key(table))
    return len(conn.execute(stmt, list(rows)).all())


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[Row],
    key: Sequence[str],
    update: Sequence[str] | None = None,
    returning: Sequence[sa.Column] = (),
) -> list[sa.Row]:
    """Insert ``rows`` or, when ``key`` already exists, overwrite the ``update`` columns.

    ``key`` must be covered by a primary key or unique constraint (PostgreSQL and SQLite name it in
    ``ON CONFLICT``; MySQL finds it itself). ``update`` defaults to every column outside ``key``.
    ``returning`` columns of every written row, inserted or updated, come back in the same statements
    (``RETURNING``: MariaDB 10.5+, PostgreSQL, SQLite 3.35+; check ``insert_executemany_returning``),
    in no particular order.
    """
    if not rows:
        return []
    dialect = conn.dialect.name
    columns = list(rows[0].keys())
    update = list(update) if update is not None else [c for c in columns if c not in key]
    stmt = _dialect_insert(table, dialect)
    if dialect == "mysql":
        # VALUES(col) is understood by MariaDB and MySQL alike (MySQL 8's row alias is not by MariaDB).
        stmt = stmt.on_duplicate_key_update({c: sa.func.values(table.c[c]) for c in update})
    else:
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[k] for k in key],
            set_={c: stmt.excluded[c] for c in update},
        )
    if returning and dialect == "mysql":
        return _mysql_upsert_returning(conn, table, rows, columns, update, returning)
    if returning:
        return conn.execute(stmt.returning(*returning), list(rows)).all()
    conn.execute(stmt, list(rows))
    return []


def multi_row_insert(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: int) -> str:
    """``INSERT INTO table (columns) VALUES (%s, ...), ...`` for ``rows`` rows, in the driver's own
    parameter style (MySQLdb's ``format``), to send with the rows' values flattened in one tuple: one
    statement whose values the driver escapes in C, where an ``executemany`` formats row by row."""
    preparer = conn.dialect.identifier_preparer
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    return (
        f"INSERT INTO {preparer.format_table(table)} ({', '.join(map(preparer.quote, columns))}) "
        f"VALUES {', '.join([placeholders] * rows)}"
    )


#: Rows per statement of :func:`_mysql_upsert_returning`, as SQLAlchemy pages its own.
RETURNING_PAGE_ROWS = 1000


def _mysql_upsert_returning(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[Row],
    columns: Sequence[str],
    update: Sequence[str],
    returning: Sequence[sa.Column],
) -> list[sa.Row]:
    """MariaDB's ``INSERT ... ON DUPLICATE KEY UPDATE ... RETURNING``, as multi-row statements built
    here, each value through its column type's bind processor, and sent through the driver.
    SQLAlchemy's own paging of the same statements (insertmanyvalues) builds and binds each page in
    Python: 43.5 to 45.3 us a product row against 38.4 to 39.9 for this (1,000-row pages, MariaDB)."""
    quote = conn.dialect.identifier_preparer.quote
    processors = [(i, table.c[c].type.bind_processor(conn.dialect)) for i, c in enumerate(columns)]
    processors = [(i, process) for i, process in processors if process is not None]
    tail = (
        " ON DUPLICATE KEY UPDATE "
        + ", ".join(f"{quote(c)} = VALUES({quote(c)})" for c in update)
        + " RETURNING "
        + ", ".join(quote(column.name) for column in returning)
    )
    values_of = operator.itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)
    written: list[sa.Row] = []
    for start in range(0, len(rows), RETURNING_PAGE_ROWS):
        page = rows[start : start + RETURNING_PAGE_ROWS]
        params: list[Any] = []
        for row in page:
            values = values_of(row)
            if processors:
                values = list(values)
                for i, process in processors:
                    values[i] = process(values[i])
            params.extend(values)
        sql = multi_row_insert(conn, table, columns, len(page)) + tail
        written.extend(conn.exec_driver_sql(sql, tuple(params)).all())
    return written
