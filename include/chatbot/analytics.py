"""The chatbot's hourly analytics: PostgreSQL messages copied into DuckDB, with their contexts.

The original service described ``message_history``, ``conversation_context`` and ``metrics_daily`` but
left filling them to whoever read the guide. Here:

* :func:`plan_window` reads the durable keyset watermark ``(updated_at, id)`` from DuckDB's
  ``etl_watermark`` and the newest ``(updated_at, id)`` of ``messages``; the window between them is
  passed on by XCom, so a retried copy works on exactly the same rows.
* :func:`copy_window` streams the window out of PostgreSQL with ``COPY ... TO STDOUT (FORMAT csv)``
  in chunks of :data:`CHUNK_ROWS` rows (memory holds one chunk, whatever the window's size), bulk-loads
  each chunk into DuckDB and replaces its messages in ``message_history`` by ``message_id`` (delete then
  insert: the table has no key or index, its ids stay unique by this logic); then, set-based in DuckDB
  SQL and in batches of sessions, it recomputes ``response_time_ms`` and ``conversation_context`` for
  the sessions touched and advances the watermark, all in one DuckDB transaction under a memory cap
  (:data:`COPY_MEMORY_LIMIT`): a re-run or an overlapping window writes nothing twice, and a failure
  leaves the file as it was.
* :func:`include.chatbot.metrics.upsert_metrics` then recomputes ``metrics_daily`` for the days the
  window touched.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import sqlalchemy as sa
from msgspec.json import decode as _decode_json

from include.chatbot.duckdb_store import connect, migrate
from include.chatbot.pg_csv import begin, connect_postgres, copy_to_file, read_csv, stream_csv

log = logging.getLogger(__name__)

WATERMARK = "messages"
#: How many of a session's latest messages its summary quotes, and how much of each.
SUMMARY_TURNS = 6
SUMMARY_CHARS = 80

#: Rows per chunk streamed from PostgreSQL and bulk-loaded into DuckDB: what bounds the copy's memory.
CHUNK_ROWS = 100_000
#: Messages per batch of response times and contexts: what bounds their working memory.
BATCH_ROWS = 250_000
#: DuckDB's memory cap while copying (None: DuckDB's default, 80% of RAM, which lets its buffer pool
#: grow with the window). ``message_history`` has no index that must fit in memory (migration 2), and
#: sorts, joins and window functions beyond the cap spill to a temporary directory beside the file, so
#: a window of any size copies within it. Aggregates do not spill: a batch of contexts needs 110 to 130
#: MB on one thread, twice that on two (250,000 messages, short or 600-character replies alike).
COPY_MEMORY_LIMIT: str | None = "320MB"
#: DuckDB's worker threads while loading (None: DuckDB's default, one per core). The load already keeps
#: a second thread busy reading PostgreSQL's CSV: on the shared 2-core machine one DuckDB thread copied
#: 250,000 messages in 4.45 s against 5.16 s with two under load 5 to 7, and 2.44 s against 2.38 s under
#: load 2 (medians of 3), with 15 to 20 MB less memory either way.
COPY_THREADS: int | None = 1
#: DuckDB's worker threads for response times and contexts, once the reader is done: two cut them from
#: 1.9 to 1.2 s at 1,000,000 messages on 2 cores, within the cap above.
REFRESH_THREADS: int | None = 2
#: Rows per row group the copy writes (DuckDB's default: 122,880). The new contexts stay uncommitted in
#: memory until a row group of them fills, so with the default a copy touching 100,000 sessions held
#: 85 MB of them, a quarter of that window 25 MB, and its peak grew 1.27x from 250,000 to 1,000,000
#: messages; with 16,384 it held 25 MB and grew 1.19x, in the same time.
ROW_GROUP_ROWS = 16_384

_WINDOW = "(m.updated_at AT TIME ZONE 'UTC', m.id) <= (%(end_ts)s, %(end_id)s) {after}"
_AFTER = "AND (m.updated_at AT TIME ZONE 'UTC', m.id) > (%(start_ts)s, %(start_id)s)"
_MESSAGES = """COPY (
SELECT m.message_id, m.id, s.session_id, u.phone_number, m.role, m.content, m.message_type, m.intent,
       m.sentiment, m.confidence, m.entities, m.created_at AT TIME ZONE 'UTC', m.updated_at AT TIME ZONE 'UTC'
FROM messages m JOIN sessions s ON s.id = m.session_id JOIN users u ON u.id = s.user_id WHERE {window}
) TO STDOUT (FORMAT csv)"""
_SESSIONS = """COPY (
SELECT s.session_id, u.phone_number, s.turn_id, s.state, s.user_profile
FROM sessions s JOIN users u ON u.id = s.user_id
WHERE s.id IN (SELECT m.session_id FROM messages m WHERE {window})
) TO STDOUT (FORMAT csv)"""
#: Column name and DuckDB type of each CSV field, in COPY order.
MESSAGE_COLUMNS = {
    "message_id": "VARCHAR",
    "source_id": "BIGINT",
    "session_id": "VARCHAR",
    "phone_number": "VARCHAR",
    "role": "VARCHAR",
    "content": "VARCHAR",
    "message_type": "VARCHAR",
    "intent": "VARCHAR",
    "sentiment": "VARCHAR",
    "confidence": "DOUBLE",
    "entities": "VARCHAR",
    "created_at": "TIMESTAMP",
    "updated_at": "TIMESTAMP",
}
SESSION_COLUMNS = {
    "session_id": "VARCHAR",
    "phone_number": "VARCHAR",
    "turn_id": "INTEGER",
    "state": "VARCHAR",
    "user_profile": "VARCHAR",
}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _ts(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def plan_window(engine: sa.Engine, duckdb_file: str | Path) -> dict:
    """``{start: [ts, id] | None, end: [ts, id] | None}``; ``end`` None means nothing new."""
    with connect(duckdb_file) as duck:
        migrate(duck)
        row = duck.execute(
            "SELECT last_updated_at, last_id FROM etl_watermark WHERE name = ?", [WATERMARK]
        ).fetchone()
    start = [_iso(row[0]), row[1]] if row and row[0] is not None else None
    with engine.connect() as conn:
        newest = conn.execute(
            sa.text(
                "SELECT updated_at AT TIME ZONE 'UTC', id FROM messages ORDER BY updated_at DESC, id DESC LIMIT 1"
            )
        ).first()
    end = [_iso(newest[0]), newest[1]] if newest else None
    if end and start and (_ts(end[0]), end[1]) <= (_ts(start[0]), start[1]):
        end = None
    return {"start": start, "end": end}


#: ``json.dumps(value, sort_keys=True)`` without rebuilding the encoder on every call.
_SORTED_JSON = json.JSONEncoder(sort_keys=True).encode


def canonical_json(text: str | None) -> str:
    """JSON as Python writes it with sorted keys (``{}`` for none): the form contexts have always had.

    msgspec parses about four times as fast as ``json.loads`` into the same Python values; what it
    refuses (``NaN``, numbers out of range, lone surrogates, invalid JSON) goes to ``json.loads``, which
    accepts or rejects it as it always has."""
    if not text:
        return _SORTED_JSON({})
    try:
        value = _decode_json(text)
    except msgspec.DecodeError:
        value = json.loads(text)
    return _SORTED_JSON(value or {})


class _Clock:
    """Seconds per phase, logged so that a slow copy says where its time went."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self._last, 3)
        self._last = now


#: Python's ``str.split()`` whitespace as RE2 classes, so summaries collapse exactly what Python would;
#: only texts with a run, an edge or a non-space whitespace (``_ODD_SPACE``) pay for the rewrite.
_WHITESPACE = [c for c in map(chr, range(0x3001)) if c.isspace()]
_SPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in _WHITESPACE) + "]+"
_ODD_SPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in _WHITESPACE if c != " ") + "]"

_RESPONSE_TIMES = """
UPDATE message_history AS h SET response_time_ms = r.ms
FROM (
    SELECT rowid AS rid, role, CAST(date_diff('millisecond', created_at, min(created_at) FILTER (WHERE role = 'assistant')
        OVER (PARTITION BY session_id ORDER BY created_at
              RANGE BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING EXCLUDE GROUP)) AS BIGINT) AS ms
    FROM message_history WHERE session_id IN (SELECT session_id FROM batch_sessions)
) AS r
WHERE h.rowid = r.rid AND r.role = 'user' AND h.response_time_ms IS DISTINCT FROM r.ms
"""
_CONTEXTS = f"""
INSERT INTO conversation_context
WITH turns AS MATERIALIZED (  -- one pass: counts, and the row ids of the latest turns kept by a top-n aggregate
    SELECT session_id, count(*) AS n, max(created_at) AS last_created, max(updated_at) AS last_updated,
           max_by(rowid, (created_at, source_id), {SUMMARY_TURNS}) AS latest
    FROM message_history WHERE session_id IN (SELECT session_id FROM batch_sessions) GROUP BY session_id
), texts AS (  -- the latest turns' texts fetched by row id, whitespace collapsed as Python's split() would
    SELECT h.session_id, h.created_at, h.source_id, h.role,
           CASE WHEN regexp_matches(h.content, '{_ODD_SPACE}|  |^ | $')
                THEN trim(regexp_replace(h.content, '{_SPACE}', ' ', 'g')) ELSE coalesce(h.content, '') END AS text
    FROM message_history h JOIN (SELECT unnest(latest) AS rid FROM turns) l ON h.rowid = l.rid
), summaries AS (  -- oldest first (a list sorted per session: an ordered aggregate buffers the batch)
    SELECT session_id, array_to_string(list_transform(list_sort(list({{
        'at': (created_at, source_id),
        'line': role || ': ' || substring(text, 1, {SUMMARY_CHARS}) || CASE WHEN length(text) > {SUMMARY_CHARS} THEN '…' ELSE '' END
    }})), lambda e: e.line), chr(10)) AS summary
    FROM texts GROUP BY session_id
), entity_rows AS MATERIALIZED (  -- the batch's rows first: else json_each may run on every row's entities
    SELECT session_id, created_at, source_id, entities FROM message_history
    WHERE session_id IN (SELECT session_id FROM batch_sessions) AND entities IS NOT NULL AND entities NOT IN ('{{}}', 'null')
), entity_values AS (  -- later messages win: the newest value of each entity
    SELECT h.session_id, e.key, arg_max(e.value, (h.created_at, h.source_id)) AS value
    FROM entity_rows h, json_each(h.entities) e
    WHERE json_type(h.entities) = 'OBJECT'
    GROUP BY h.session_id, e.key
), entities AS (
    SELECT session_id, CAST(json_group_object(key, value) AS VARCHAR) AS merged FROM entity_values GROUP BY session_id
), canonical AS (  -- each distinct text through Python once: the call costs more than the conversion
    SELECT text, canonical_json(text) AS json FROM (
        SELECT merged AS text FROM entities UNION SELECT user_profile FROM batch_sessions
    ) WHERE text IS NOT NULL
)
SELECT w.session_id, w.phone_number, w.turn_id, coalesce(s.summary, ''), ej.json, pj.json, w.state,
       coalesce(t.n, 0), t.last_created, t.last_updated
FROM batch_sessions w LEFT JOIN turns t USING (session_id) LEFT JOIN summaries s USING (session_id)
     LEFT JOIN entities e USING (session_id) LEFT JOIN canonical ej ON ej.text = e.merged
     LEFT JOIN canonical pj ON pj.text = w.user_profile
"""


def _load_messages(duck, chunk: Path, replace: bool) -> None:
    """One chunk: replace its messages by ``message_id``.

    Each statement reads the chunk's file itself (the CSV reader converts only the columns it is asked
    for) rather than from a staged copy, so no second copy of the chunk is held in memory. Without an
    index on ``message_history`` the delete is a hash join of the chunk's ids against the table; it is
    skipped (``replace`` false) when the table held no rows before the copy, as the window's ids are
    unique in PostgreSQL and no earlier chunk can hold them."""
    names = ", ".join(MESSAGE_COLUMNS)
    source = read_csv(chunk, MESSAGE_COLUMNS)
    if replace:
        duck.execute(f"DELETE FROM message_history WHERE message_id IN (SELECT message_id FROM {source})")
    duck.execute(f"INSERT INTO message_history ({names}) SELECT {names} FROM {source}")


#: The window's rows in ``message_history`` once they are all in: the window's keys ``(updated_at, id)``
#: pick exactly the rows this copy wrote, as every row copied before has a key at or below the watermark
#: it started from. The window's days are read back from them: returning every inserted row's day to
#: Python instead cost a quarter of the load.
_COPIED = "(updated_at < $end_ts OR (updated_at = $end_ts AND source_id <= $end_id)) {after}"
_COPIED_AFTER = "AND (updated_at > $start_ts OR (updated_at = $start_ts AND source_id > $start_id))"


def _refresh_sessions(duck, clock: _Clock) -> None:
    """Response times and contexts of the touched sessions, in batches of about :data:`BATCH_ROWS` of
    their messages (sessions split by a hash of their id): the working memory of the window functions
    and aggregations is that of one batch, whatever the window's size. They run once the reader is
    done, so on :data:`REFRESH_THREADS` threads."""
    if REFRESH_THREADS:
        duck.execute(f"SET threads = {REFRESH_THREADS}")
    rows = duck.execute(
        "SELECT count(*) FROM message_history WHERE session_id IN (SELECT session_id FROM window_sessions)"
    ).fetchone()[0]
    batches = max(1, -(-rows // BATCH_ROWS))
    duck.execute(
        "DELETE FROM conversation_context WHERE session_id IN (SELECT session_id FROM window_sessions)"
    )
    for batch in range(batches):
        duck.execute("DELETE FROM batch_sessions")
        duck.execute(  # literals, not parameters: DuckDB then folds them, 8 ms against 50 a batch
            f"INSERT INTO batch_sessions SELECT * FROM window_sessions WHERE hash(session_id) % {batches} = {batch}"
        )
        clock.lap("batches")
        duck.execute(_RESPONSE_TIMES)
        clock.lap("response times")
        duck.execute(_CONTEXTS)
        clock.lap("contexts")


def _prepare(duck) -> None:
    if COPY_MEMORY_LIMIT:
        duck.execute(f"SET memory_limit = '{COPY_MEMORY_LIMIT}'")
    if COPY_THREADS:
        duck.execute(f"SET threads = {COPY_THREADS}")
    columns = ", ".join(f"{name} {kind}" for name, kind in SESSION_COLUMNS.items())
    duck.execute(f"CREATE OR REPLACE TEMP TABLE window_sessions ({columns})")
    duck.execute(f"CREATE OR REPLACE TEMP TABLE batch_sessions ({columns})")
    duck.create_function("canonical_json", canonical_json, ["VARCHAR"], "VARCHAR", side_effects=False)


def copy_window(
    engine: sa.Engine, duckdb_file: str | Path, window: dict, chunk_rows: int = CHUNK_ROWS
) -> dict:
    """Replace the window's messages, refresh the touched sessions, advance the watermark: atomically.

    PostgreSQL streams the window as CSV in chunks of ``chunk_rows`` rows (one REPEATABLE READ
    snapshot for messages and sessions); DuckDB bulk-loads each chunk, then recomputes response times
    and contexts of the touched sessions set-based, all in one transaction."""
    if not window.get("end"):
        return {"messages": 0, "sessions": 0, "days": [], "watermark": window.get("start")}
    start, end = window["start"], window["end"]
    params = {"end_ts": _ts(end[0]), "end_id": end[1]}
    if start:
        params |= {"start_ts": _ts(start[0]), "start_id": start[1]}
    where = _WINDOW.format(after=_AFTER if start else "")
    with (
        tempfile.TemporaryDirectory(prefix="chatbot-copy-") as tmp,
        connect_postgres(engine) as pg,
        connect(duckdb_file, row_group_size=ROW_GROUP_ROWS) as duck,
    ):
        migrate(duck)
        _prepare(duck)
        cursor = pg.cursor()
        begin(cursor)
        snapshot = cursor.execute("SELECT pg_export_snapshot()").fetchone()[0]
        clock = _Clock()
        duck.begin()
        try:
            replace = duck.execute("SELECT count(*) FROM (FROM message_history LIMIT 1)").fetchone()[0] > 0
            with ThreadPoolExecutor(1, thread_name_prefix="chatbot-copy-sessions") as aside:
                sessions_csv = Path(tmp) / "sessions.csv"
                pending = aside.submit(
                    copy_to_file, engine, snapshot, _SESSIONS.format(window=where), params, sessions_csv
                )
                messages = stream_csv(
                    cursor,
                    _MESSAGES.format(window=where),
                    params,
                    chunk_rows,
                    Path(tmp),
                    lambda p: _load_messages(duck, p, replace),
                )
                clock.lap("messages")
                sessions = pending.result()
            duck.execute(
                f"INSERT INTO window_sessions SELECT * FROM {read_csv(sessions_csv, SESSION_COLUMNS)}"
            )
            sessions_csv.unlink()
            copied = _COPIED.format(after=_COPIED_AFTER if start else "")
            days = duck.execute(
                f"SELECT DISTINCT CAST(created_at AS DATE) FROM message_history WHERE {copied}", params
            ).fetchall()
            clock.lap("sessions")
            _refresh_sessions(duck, clock)
            duck.execute(
                "INSERT OR REPLACE INTO etl_watermark VALUES (?, ?, ?, ?)",
                [WATERMARK, _ts(end[0]), end[1], dt.datetime.now(dt.UTC).replace(tzinfo=None)],
            )
            duck.commit()
            clock.lap("commit")
        except BaseException:
            duck.rollback()
            raise
    clock.lap("close")
    log.info("copy_window: %s messages, %s sessions; seconds %s", messages, sessions, clock.laps)
    return {
        "messages": messages,
        "sessions": sessions,
        "days": sorted(d.isoformat() for (d,) in days),
        "watermark": end,
    }
