"""PostgreSQL's ``COPY ... TO STDOUT (FORMAT csv)`` streamed into DuckDB: the chatbot copy's plumbing.

PostgreSQL writes CSV faster than any row-by-row fetch, and DuckDB's CSV reader loads it faster than any
insert from Python, so the copy moves its rows as CSV files on disk between the two: memory holds at most
a few chunks, whatever the window's size, and every file lives in a directory the caller removes.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from pathlib import Path

import sqlalchemy as sa
from psycopg import sql


def read_csv(path: Path, columns: dict[str, str]) -> str:
    """DuckDB's reader for one chunk of PostgreSQL's CSV (empty unquoted field = NULL, ``""`` = '')."""
    spec = ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items())
    return (
        f"read_csv('{path}', columns = {{{spec}}}, header = false, auto_detect = false, delim = ',', "
        "quote = '\"', escape = '\"', allow_quoted_nulls = false, max_line_size = 67108864)"
    )


class _StoppedError(Exception):
    """The loading side failed: the reading side stops at its next chunk."""


def stream_csv(cursor, statement: str, params: dict, chunk_rows: int, directory: Path, load) -> int:
    """Run PostgreSQL's ``COPY ... TO STDOUT (FORMAT csv)`` and hand every ``chunk_rows`` rows to
    ``load(path)`` as one file; return the rows.

    A thread reads chunk n+1 from PostgreSQL while DuckDB loads chunk n (both release the GIL while
    they wait or work), so the copy costs about the slower of the two instead of their sum. At most
    three chunk files exist at once (one loading, one queued, one being written); each is deleted as
    soon as it is loaded."""
    chunks: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item) -> None:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _StoppedError

    def read() -> None:
        try:
            pending, index, out = 0, 0, None
            with cursor.copy(statement, params) as copy:
                for row in copy:  # one data message per row
                    if out is None:
                        path = directory / f"chunk-{index}.csv"
                        out = path.open("wb")
                    out.write(row)
                    pending += 1
                    if pending == chunk_rows:
                        out.close()
                        put((path, pending))
                        pending, index, out = 0, index + 1, None
            if out is not None:
                out.close()
                put((path, pending))
            put(None)
        except _StoppedError:
            pass
        except BaseException as exc:  # handed to the loading side, which raises it
            with contextlib.suppress(_StoppedError):
                put(exc)

    reader = threading.Thread(target=read, name="chatbot-copy-reader", daemon=True)
    reader.start()
    rows = 0
    try:
        while (item := chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            path, count = item
            try:
                load(path)
            finally:
                path.unlink(missing_ok=True)
            rows += count
        return rows
    finally:
        stop.set()
        reader.join()
        for leftover in directory.glob("chunk-*.csv"):
            leftover.unlink(missing_ok=True)


def connect_postgres(engine: sa.Engine):
    """A psycopg connection of its own for COPY, whatever driver the engine uses."""
    import psycopg

    url = engine.url.set(drivername="postgresql")
    return psycopg.connect(url.render_as_string(hide_password=False))


def begin(cursor, snapshot: str | None = None) -> None:
    """A read-only REPEATABLE READ transaction (on ``snapshot``, exported by another, if given) whose
    CSV has ISO timestamps and floats that read back exactly."""
    cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot:
        cursor.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    cursor.execute("SET LOCAL datestyle = 'ISO, YMD'; SET LOCAL extra_float_digits = 1")


def copy_to_file(engine: sa.Engine, snapshot: str, statement: str, params: dict, path: Path) -> int:
    """Run ``statement`` (a ``COPY ... TO STDOUT``) on a connection of its own, in the snapshot of the
    copy's transaction, into ``path``; return the rows.

    The window's sessions are copied this way while the messages stream: PostgreSQL finds them with a
    pass over the window's messages of its own, which then costs no time of the copy's."""
    with connect_postgres(engine) as pg, path.open("wb") as out:
        cursor = pg.cursor()
        begin(cursor, snapshot)
        rows = 0
        with cursor.copy(statement, params) as copy:
            for row in copy:
                out.write(row)
                rows += 1
        return rows
