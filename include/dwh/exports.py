"""Idempotent loads of one export period into the DWH tables: a re-run replaces, never doubles.

The seven DWH tables have no column saying which export a row came from (and existing tables with
other columns must keep working), so the loads are recorded beside them, in ``dwh_export_loads``:
one row per (export, source, period, table) holding the id ranges of the rows that load inserted.
Examples: ``("amplitude", "web", "2024-W06", "events_part")``,
``("appmetrica", "events", "2024-02-05", "events_part")``.

:func:`replace_periods` does, for all the tables of one load, **in one transaction**: delete the
rows of the previous load of that key (by its id ranges), insert the new rows through
:func:`include.dwh.batch_writer.write_rows` (the writer ``POST /dwh/<table>`` uses), record the new
ranges. A failure anywhere rolls every table back to its previous load. Ranges, not a single
``[first, last]``, because other writers (the plugin's POSTs) may interleave ids on a server. A
thread of its own writes while the next records are read and split (:func:`_batch_writer`: on
PostgreSQL it only copies the COPY blocks the reading thread formats).

The load log is created by :func:`ensure_load_log` (re-runnable: ``CREATE TABLE IF NOT EXISTS``);
nothing else in the DWH schema changes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from include.common.types import LongText
from include.dwh import schema
from include.dwh.batch_writer import DEFAULT_MAX_BYTES, DEFAULT_MAX_ROWS, write_rows
from include.dwh.pg_copy import copy_block

load_metadata = sa.MetaData()

export_loads = sa.Table(
    "dwh_export_loads",
    load_metadata,
    sa.Column("export", sa.String(32), primary_key=True, comment="amplitude or appmetrica"),
    sa.Column("source", sa.String(64), primary_key=True, comment="Amplitude source or AppMetrica resource"),
    sa.Column("period", sa.String(32), primary_key=True, comment="ISO week (2024-W06) or day (2024-02-05)"),
    sa.Column("table_name", sa.String(64), primary_key=True, comment="The DWH table loaded"),
    sa.Column("rows", sa.BigInteger, nullable=False, comment="Rows the load inserted"),
    sa.Column("id_ranges", LongText, nullable=False, comment="JSON [[first, last], ...] of the inserted ids"),
    sa.Column("loaded_at", schema.Timestamp, nullable=False, comment="When the load committed (UTC)"),
    comment="Which rows of the DWH tables each export load inserted, so that a re-run replaces them",
    mysql_charset="utf8mb4",
)


@dataclass(frozen=True)
class LoadKey:
    export: str
    source: str
    period: str


@dataclass(frozen=True)
class TableLoad:
    table: str
    rows: int
    replaced: int


def ensure_load_log(engine: sa.Engine) -> None:
    """Create the DWH tables and the load log where missing (existing ones are left alone)."""
    schema.create_all(engine)
    load_metadata.create_all(engine, checkfirst=True)


def id_ranges(ids: Iterable[int]) -> list[list[int]]:
    """Sorted ids as runs of consecutive values: ``[1, 2, 3, 7]`` -> ``[[1, 3], [7, 7]]``."""
    ranges: list[list[int]] = []
    _add_ids(ranges, ids)
    return ranges


class _InTransaction:
    """An engine stand-in for :func:`write_rows` whose ``begin()`` is the caller's open transaction,
    so the writer's inserts commit (or roll back) together with the delete before them; its
    ``dialect`` is the connection's."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect

    def begin(self) -> contextlib.AbstractContextManager[sa.Connection]:
        return contextlib.nullcontext(self._conn)


def _key_clause(key: LoadKey, table: sa.Table) -> sa.ColumnElement[bool]:
    c = export_loads.c
    return sa.and_(
        c.export == key.export, c.source == key.source, c.period == key.period, c.table_name == table.name
    )


def replace_period(
    engine: sa.Engine,
    table: sa.Table,
    key: LoadKey,
    rows: Iterable[dict[str, Any]],
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> TableLoad:
    """Replace the rows ``key`` loaded into ``table`` by ``rows``, in one transaction (see module)."""
    split = ({table.name: row} for row in rows)
    [load] = replace_periods(engine, key, [table], split, max_rows=max_rows, max_bytes=max_bytes)
    return load


def replace_periods(
    engine: sa.Engine,
    key: LoadKey,
    tables: Sequence[sa.Table],
    split_rows: Iterable[Mapping[str, dict[str, Any]]],
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[TableLoad]:
    """Replace the rows ``key`` loaded into each of ``tables``, all in one transaction: a failure
    anywhere leaves every table with its previous load. ``split_rows`` yields, per source record (an
    event), its row for each table it feeds, keyed by table name; the records are read once, and each
    table's rows go to :func:`write_rows` a batch of ``max_rows`` at a time, so memory holds one batch a
    table whatever the period's size."""
    by_name = {table.name: table for table in tables}
    pending: dict[str, list[Any]] = {name: [] for name in by_name}
    ranges: dict[str, list[list[int]]] = {name: [] for name in by_name}
    counts = dict.fromkeys(by_name, 0)

    def write(target: Any, name: str, batch: list[Any], copy_blocks: Any = None) -> None:
        result = write_rows(
            target, by_name[name], batch, max_rows=max_rows, max_bytes=max_bytes, copy_blocks=copy_blocks
        )
        _add_ids(ranges[name], result.inserted_ids)
        counts[name] += result.count

    with engine.begin() as conn:
        replaced = {name: _delete_previous(conn, table, key) for name, table in by_name.items()}
        with _batch_writer(engine, conn, write) as submit:
            for rows in split_rows:
                for name, row in rows.items():
                    if name in pending:
                        pending[name].append(row)
                        if len(pending[name]) >= max_rows:
                            submit(name, pending[name])
                            pending[name] = []
            for name in by_name:
                if pending[name]:
                    submit(name, pending[name])
        for name in by_name:
            conn.execute(
                sa.insert(export_loads).values(
                    export=key.export,
                    source=key.source,
                    period=key.period,
                    table_name=name,
                    rows=counts[name],
                    id_ranges=json.dumps(ranges[name]),
                    loaded_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                )
            )
    return [TableLoad(name, counts[name], replaced[name]) for name in by_name]


@contextlib.contextmanager
def _batch_writer(
    engine: sa.Engine, conn: sa.Connection, write: Callable[..., None]
) -> Generator[Callable[[str, list[Any]], None], None, None]:
    """``submit(name, batch)``, writing the batch in ``conn``'s transaction by ``write(target, name,
    batch[, copy_blocks])``, with a thread of its own doing the waiting (:class:`_BackgroundWriter`).

    With psycopg, the batches are checked, their ids drawn and their rows formatted into COPY blocks
    here, on a second connection of ``engine``, and the thread only copies the blocks on ``conn``: it
    then needs the interpreter for a moment a block, so the server is kept busy while this thread reads
    the next records (a thread writing whole batches waited for its turn after each round trip, and
    the server for it). Elsewhere the thread writes the batches."""
    if (conn.dialect.name, conn.dialect.driver) == ("postgresql", "psycopg"):
        with engine.begin() as drawing, _BackgroundWriter(functools.partial(copy_block, conn)) as send:
            checking = _InTransaction(drawing)
            yield lambda name, batch: write(checking, name, batch, send)
    else:
        in_transaction = _InTransaction(conn)
        with _BackgroundWriter(functools.partial(write, in_transaction)) as submit:
            yield submit


class _BackgroundWriter:
    """Runs ``write(*job)`` for the submitted jobs (batches, or COPY blocks) in a thread of its own,
    one at a time in submission order, while the caller reads and splits the next records: the writes
    spend much of their time waiting for the database (which releases the GIL), and the records are
    parsed meanwhile. At most :attr:`DEPTH` jobs wait in the queue, so memory stays bounded.

    Errors come out as if every job had been done when it was submitted: a failed write is raised by
    the next :meth:`submit` or on leaving the block; when the block itself raises (a record that
    cannot be read), the jobs submitted before are done first, and the first of their errors, which
    came earlier in the input, is raised instead."""

    DEPTH = 2

    def __init__(self, write: Callable[[str, Any], None]) -> None:
        self._write = write
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue(self.DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dwh-export-writer", daemon=True)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is None:  # after a failure the batches are only drained
                try:
                    self._write(*job)
                except BaseException as exc:  # handed to the caller's thread
                    self._error = exc

    def submit(self, name: str, job: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((name, job))

    def __enter__(self) -> Callable[[str, Any], None]:
        self._thread.start()
        return self.submit

    def __exit__(self, *exc_info: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _delete_previous(conn: sa.Connection, table: sa.Table, key: LoadKey) -> int:
    """Delete the rows of ``key``'s previous load of ``table`` and its log row; how many rows."""
    previous = conn.execute(sa.select(export_loads.c.id_ranges).where(_key_clause(key, table))).scalar()
    replaced = 0
    for first, last in json.loads(previous) if previous else []:
        replaced += conn.execute(sa.delete(table).where(table.c.id.between(first, last))).rowcount
    conn.execute(sa.delete(export_loads).where(_key_clause(key, table)))
    return replaced


def _add_ids(ranges: list[list[int]], ids: Iterable[int]) -> None:
    """Extend ``ranges`` (runs of consecutive ids, as :func:`id_ranges` makes) by ``ids``."""
    for id_ in sorted(ids):
        if ranges and id_ == ranges[-1][1] + 1:
            ranges[-1][1] = id_
        else:
            ranges.append([id_, id_])


def table_fingerprint(engine: sa.Engine, table: sa.Table) -> tuple[int, str]:
    """(row count, checksum of every row's content but ``id`` and ``loaded_at``), independent of the
    order rows were written in: what a re-run must leave unchanged."""
    import hashlib

    columns = [column for column in table.columns if column.name not in schema.SERVER_COLUMNS]
    digests: list[str] = []
    with engine.connect() as conn:
        for row in conn.execute(sa.select(*columns)):
            digests.append(hashlib.sha256(repr(tuple(row)).encode()).hexdigest())
    digests.sort()
    return len(digests), hashlib.sha256("".join(digests).encode()).hexdigest()


def loads_of(engine: sa.Engine, key: LoadKey) -> Iterator[dict[str, Any]]:
    """The load log's rows for ``key``, by table name."""
    c = export_loads.c
    with engine.connect() as conn:
        query = sa.select(export_loads).where(
            c.export == key.export, c.source == key.source, c.period == key.period
        )
        yield from (dict(row) for row in conn.execute(query.order_by(c.table_name)).mappings())
