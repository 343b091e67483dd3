"""The chatbot's DuckDB analytics file: its schema, versioned and re-runnable, and safe connections.

The original service created ``conversation_context``, ``message_history`` and ``message_embeddings``
from ``init_databases.py``. Here the schema is a list of numbered migrations, each applied once in its
own transaction together with its row in ``chatbot_schema_version``, so initialising twice is harmless
and a file made by an older release is brought forward in order (migration 2 rebuilds
``message_history`` without its primary key and indexes; see the note there).

DuckDB is single-writer: a second process cannot open the file while one has it open. The DAGs take the
one-slot ``chatbot_duckdb`` pool around every task that opens it; anything else that holds the file
(a notebook, a stuck process) makes :func:`connect` wait up to ``lock_timeout`` and then raise
:class:`DuckDBLockedError`, an ordinary exception Airflow retries. Nothing is written before the file is
open, so a locked file never ends half-written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Generator
from pathlib import Path

import duckdb

#: WordLlama's default model has 256 dimensions; the fallback embedder produces the same size.
EMBEDDING_DIM = 256
VERSION_TABLE = "chatbot_schema_version"
LOCK_MESSAGE = "could not set lock"
#: The name a file opened with a row group size of its own is attached under.
ATTACHED = "chatbot_analytics"

#: ``message_history`` after its ``message_id``, unchanged since migration 1.
_HISTORY_COLUMNS = """source_id BIGINT NOT NULL,
    session_id VARCHAR NOT NULL,
    phone_number VARCHAR,
    role VARCHAR NOT NULL,
    content VARCHAR,
    message_type VARCHAR,
    intent VARCHAR,
    sentiment VARCHAR,
    confidence DOUBLE,
    entities JSON,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    response_time_ms BIGINT"""

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "conversation_context, message_history, message_embeddings, etl_watermark",
        [
            """CREATE TABLE conversation_context (
                session_id VARCHAR PRIMARY KEY,
                phone_number VARCHAR,
                turn_id INTEGER,
                summary VARCHAR,
                key_entities JSON,
                user_profile JSON,
                state VARCHAR,
                message_count INTEGER,
                last_message_at TIMESTAMP,
                updated_at TIMESTAMP
            )""",
            f"CREATE TABLE message_history (message_id VARCHAR PRIMARY KEY, {_HISTORY_COLUMNS})",
            f"""CREATE TABLE message_embeddings (
                message_id VARCHAR PRIMARY KEY,
                session_id VARCHAR NOT NULL,
                phone_number VARCHAR,
                content VARCHAR,
                embedding FLOAT[{EMBEDDING_DIM}] NOT NULL,
                model_name VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL
            )""",
            """CREATE TABLE etl_watermark (
                name VARCHAR PRIMARY KEY,
                last_updated_at TIMESTAMP,
                last_id BIGINT,
                updated_at TIMESTAMP NOT NULL
            )""",
            "CREATE INDEX ix_message_history_session ON message_history (session_id)",
            "CREATE INDEX ix_message_history_phone ON message_history (phone_number)",
        ],
    ),
    # DuckDB keeps every primary key and index as an ART in memory, checks and extends it row by row on
    # insert, and writes it at commit: on message_history (a bulk-loaded analytic table) the key and the
    # two indexes took most of the copy's time and memory grew with the table. None of its readers need
    # them (scans and hash joins; DuckDB uses an index only for a point look-up), and the guide asks for
    # bulk operations, not indexes. message_id stays unique because its only writer, copy_window,
    # deletes a chunk's ids before inserting them, in one transaction. DuckDB cannot drop a key in
    # place, hence the rebuilt table (same columns, same order, same rows).
    (
        2,
        "message_history without primary key or indexes",
        [
            "DROP INDEX ix_message_history_session",
            "DROP INDEX ix_message_history_phone",
            f"CREATE TABLE message_history_unindexed (message_id VARCHAR NOT NULL, {_HISTORY_COLUMNS})",
            "INSERT INTO message_history_unindexed SELECT * FROM message_history",
            "DROP TABLE message_history",
            "ALTER TABLE message_history_unindexed RENAME TO message_history",
        ],
    ),
]
TABLES = ["conversation_context", "message_history", "message_embeddings", "etl_watermark"]


class DuckDBLockedError(RuntimeError):
    """Another process holds the DuckDB file; retrying later is the cure."""


@contextlib.contextmanager
def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    lock_timeout: float = 10.0,
    row_group_size: int | None = None,
) -> Generator[duckdb.DuckDBPyConnection]:
    """Open the file (creating its directory), waiting up to ``lock_timeout`` s for another holder.

    ``row_group_size`` (rows) sets the size of the row groups this connection writes, in place of
    DuckDB's 122,880: a transaction's uncommitted appends are held in memory until a row group fills,
    so a writer that appends many rows in one long transaction holds less with smaller groups."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            conn = _open(path, read_only and path.exists(), row_group_size)
            break
        except duckdb.IOException as exc:
            if LOCK_MESSAGE not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                raise DuckDBLockedError(
                    f"{path} is locked by another process (DuckDB allows one writer); the task will "
                    "retry. Close other sessions on the file, or check that every task writing it "
                    "uses the chatbot_duckdb pool."
                ) from exc
            time.sleep(0.2)
    try:
        yield conn
    finally:
        conn.close()


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _open(path: Path, read_only: bool, row_group_size: int | None) -> duckdb.DuckDBPyConnection:
    """The file as the connection's default database. A row group size is an option of ``ATTACH``
    only, so then the file is attached to an in-memory session and made its default, with the
    temporary directory DuckDB gives a file of its own (``<file>.tmp``) rather than the working one."""
    if row_group_size is None:
        return duckdb.connect(str(path), read_only=read_only)
    conn = duckdb.connect()
    try:
        options = f"ROW_GROUP_SIZE {int(row_group_size)}" + (", READ_ONLY" if read_only else "")
        conn.execute(f"ATTACH {_quoted(str(path))} AS {ATTACHED} ({options})")
        conn.execute(f"USE {ATTACHED}")
        conn.execute(f"SET temp_directory = {_quoted(f'{path}.tmp')}")
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: duckdb.DuckDBPyConnection) -> int:
    """The highest migration applied (0 for a new file)."""
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [VERSION_TABLE]
    ).fetchone()[0]
    if not exists:
        return 0
    return conn.execute(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}").fetchone()[0]


def migrate(conn: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply the migrations the file lacks, each atomically with its version row; return them."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
        "(version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMP NOT NULL)"
    )
    current = schema_version(conn)
    applied = []
    for version, description, statements in MIGRATIONS:
        if version <= current:
            continue
        conn.begin()
        try:
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {VERSION_TABLE} VALUES (?, ?, ?)",
                [version, description, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
            )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        applied.append(version)
    return applied


def init_duckdb(path: str | Path) -> dict:
    """Create or bring forward the analytics file; the summary says what was applied."""
    with connect(path) as conn:
        applied = migrate(conn)
        version = schema_version(conn)
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    return {"path": str(path), "applied": applied, "version": version, "rows": counts}
