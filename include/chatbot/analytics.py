"""The chatbot's hourly analytics: PostgreSQL messages copied into DuckDB, contexts and daily metrics.

The original service described ``message_history``, ``conversation_context`` and ``metrics_daily`` but
left filling them to whoever read the guide. Here:

* :func:`plan_window` reads the durable keyset watermark ``(updated_at, id)`` from DuckDB's
  ``etl_watermark`` and the newest ``(updated_at, id)`` of ``messages``; the window between them is
  passed on by XCom, so a retried copy works on exactly the same rows.
* :func:`copy_window` replaces the window's messages in ``message_history`` by ``message_id`` (delete
  then insert), recomputes ``response_time_ms`` for the sessions touched, refreshes their
  ``conversation_context`` and advances the watermark, all in one DuckDB transaction: a re-run or an
  overlapping window writes nothing twice, and a failure leaves the file as it was.
* :func:`upsert_metrics` recomputes ``metrics_daily`` for the days the window touched (definitions in
  the README, section chatbot_analytics).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import sqlalchemy as sa

from include.chatbot.duckdb_store import connect, migrate

WATERMARK = "messages"
#: How many of a session's latest messages its summary quotes, and how much of each.
SUMMARY_TURNS = 6
SUMMARY_CHARS = 80

_MESSAGES = """
SELECT m.message_id, m.id AS source_id, s.session_id, u.phone_number, m.role, m.content, m.message_type,
       m.intent, m.sentiment, m.confidence, m.entities,
       m.created_at AT TIME ZONE 'UTC' AS created_at, m.updated_at AT TIME ZONE 'UTC' AS updated_at
FROM messages m JOIN sessions s ON s.id = m.session_id JOIN users u ON u.id = s.user_id
WHERE (m.updated_at AT TIME ZONE 'UTC', m.id) <= (:end_ts, :end_id) {after}
ORDER BY m.updated_at, m.id
"""
_AFTER = "AND (m.updated_at AT TIME ZONE 'UTC', m.id) > (:start_ts, :start_id)"
_COLUMNS = [
    "message_id",
    "source_id",
    "session_id",
    "phone_number",
    "role",
    "content",
    "message_type",
    "intent",
    "sentiment",
    "confidence",
    "entities",
    "created_at",
    "updated_at",
]


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


def _read_window(engine: sa.Engine, window: dict) -> tuple[list[tuple], dict[str, dict]]:
    """The window's messages (with the session's phone number) and the touched sessions' rows."""
    start, end = window["start"], window["end"]
    params = {"end_ts": _ts(end[0]), "end_id": end[1]}
    if start:
        params |= {"start_ts": _ts(start[0]), "start_id": start[1]}
    with engine.connect() as conn:
        rows = conn.execute(sa.text(_MESSAGES.format(after=_AFTER if start else "")), params).all()
        session_ids = sorted({r.session_id for r in rows})
        sessions = {}
        if session_ids:
            for s in conn.execute(
                sa.text(
                    "SELECT s.session_id, u.phone_number, s.turn_id, s.state, s.user_profile "
                    "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.session_id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": session_ids},
            ):
                sessions[s.session_id] = s._asdict()
    messages = [
        tuple(
            json.dumps(v, sort_keys=True) if c == "entities" else v for c, v in zip(_COLUMNS, r, strict=True)
        )
        for r in rows
    ]
    return messages, sessions


def _summary(turns: list[tuple[str, str]]) -> str:
    """The latest turns as ``role: text`` lines, oldest first, each cut to ``SUMMARY_CHARS``."""
    lines = []
    for role, content in turns:
        text = " ".join((content or "").split())
        lines.append(f"{role}: {text[:SUMMARY_CHARS]}{'…' if len(text) > SUMMARY_CHARS else ''}")
    return "\n".join(lines)


def _contexts(duck, sessions: dict[str, dict]) -> list[tuple]:
    out = []
    for session_id in sorted(sessions):
        s = sessions[session_id]
        history = duck.execute(
            "SELECT role, content, entities, created_at, updated_at FROM message_history "
            "WHERE session_id = ? ORDER BY created_at, source_id",
            [session_id],
        ).fetchall()
        entities: dict = {}
        for _, _, ents, _, _ in history:  # later messages win: the newest value of each entity
            entities.update(json.loads(ents) if ents else {})
        out.append(
            (
                session_id,
                s["phone_number"],
                s["turn_id"],
                _summary([(h[0], h[1]) for h in history[-SUMMARY_TURNS:]]),
                json.dumps(entities, sort_keys=True),
                json.dumps(s["user_profile"] or {}, sort_keys=True),
                s["state"],
                len(history),
                max((h[3] for h in history), default=None),
                max((h[4] for h in history), default=None),
            )
        )
    return out


_RESPONSE_TIMES = """
UPDATE message_history AS h SET response_time_ms = (
    SELECT CAST(date_diff('millisecond', h.created_at, min(a.created_at)) AS BIGINT)
    FROM message_history a
    WHERE a.session_id = h.session_id AND a.role = 'assistant' AND a.created_at > h.created_at
)
WHERE h.session_id IN (SELECT unnest(?::VARCHAR[])) AND h.role = 'user'
"""


def copy_window(engine: sa.Engine, duckdb_file: str | Path, window: dict) -> dict:
    """Replace the window's messages, refresh the touched sessions, advance the watermark: atomically."""
    if not window.get("end"):
        return {"messages": 0, "sessions": 0, "days": [], "watermark": window.get("start")}
    messages, sessions = _read_window(engine, window)
    with connect(duckdb_file) as duck:
        migrate(duck)
        duck.begin()
        try:
            ids = [m[0] for m in messages]
            duck.execute(
                "DELETE FROM message_history WHERE message_id IN (SELECT unnest(?::VARCHAR[]))", [ids]
            )
            if messages:
                duck.executemany(
                    f"INSERT INTO message_history ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    messages,
                )
            duck.execute(_RESPONSE_TIMES, [sorted(sessions)])
            contexts = _contexts(duck, sessions)
            duck.execute(
                "DELETE FROM conversation_context WHERE session_id IN (SELECT unnest(?::VARCHAR[]))",
                [sorted(sessions)],
            )
            if contexts:
                duck.executemany(
                    "INSERT INTO conversation_context VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", contexts
                )
            duck.execute(
                "INSERT OR REPLACE INTO etl_watermark VALUES (?, ?, ?, ?)",
                [
                    WATERMARK,
                    _ts(window["end"][0]),
                    window["end"][1],
                    dt.datetime.now(dt.UTC).replace(tzinfo=None),
                ],
            )
            duck.commit()
        except BaseException:
            duck.rollback()
            raise
    days = sorted({m[_COLUMNS.index("created_at")].date().isoformat() for m in messages})
    return {"messages": len(messages), "sessions": len(sessions), "days": days, "watermark": window["end"]}


_DAY_FROM_DUCKDB = """
SELECT count(*), count(DISTINCT session_id), count(DISTINCT phone_number),
       avg(response_time_ms) FILTER (WHERE role = 'user'),
       avg(confidence) FILTER (WHERE role = 'user')
FROM message_history WHERE created_at >= ? AND created_at < ?
"""
_DAY_FROM_POSTGRES = """
SELECT (SELECT count(*) FROM qualified_leads WHERE created_at >= :lo AND created_at < :hi),
       (SELECT avg(qualification_score) FROM qualified_leads WHERE created_at >= :lo AND created_at < :hi),
       (SELECT avg(CASE WHEN converted THEN 1.0 ELSE 0.0 END) FROM qualified_leads
         WHERE created_at >= :lo AND created_at < :hi),
       (SELECT count(*) FROM human_handoffs WHERE created_at >= :lo AND created_at < :hi)
"""
_UPSERT_METRICS = """
INSERT INTO metrics_daily (date, total_messages, total_sessions, total_users, total_qualified_leads,
    total_handoffs, avg_response_time_ms, avg_qualification_score, nlp_accuracy, conversion_rate)
VALUES (:date, :total_messages, :total_sessions, :total_users, :total_qualified_leads, :total_handoffs,
    :avg_response_time_ms, :avg_qualification_score, :nlp_accuracy, :conversion_rate)
ON CONFLICT (date) DO UPDATE SET total_messages = EXCLUDED.total_messages,
    total_sessions = EXCLUDED.total_sessions, total_users = EXCLUDED.total_users,
    total_qualified_leads = EXCLUDED.total_qualified_leads, total_handoffs = EXCLUDED.total_handoffs,
    avg_response_time_ms = EXCLUDED.avg_response_time_ms,
    avg_qualification_score = EXCLUDED.avg_qualification_score,
    nlp_accuracy = EXCLUDED.nlp_accuracy, conversion_rate = EXCLUDED.conversion_rate
"""


def day_metrics(engine: sa.Engine, duck, day: dt.date) -> dict:
    """One ``metrics_daily`` row: messages from the DuckDB copy, leads and handoffs from PostgreSQL."""
    lo = dt.datetime.combine(day, dt.time())
    hi = lo + dt.timedelta(days=1)
    msgs, sessions, users, rt, conf = duck.execute(_DAY_FROM_DUCKDB, [lo, hi]).fetchone()
    with engine.connect() as conn:
        leads, score, conversion, handoffs = conn.execute(
            sa.text(_DAY_FROM_POSTGRES), {"lo": lo.replace(tzinfo=dt.UTC), "hi": hi.replace(tzinfo=dt.UTC)}
        ).one()
    return {
        "date": day,
        "total_messages": msgs,
        "total_sessions": sessions,
        "total_users": users,
        "total_qualified_leads": leads,
        "total_handoffs": handoffs,
        "avg_response_time_ms": float(rt) if rt is not None else None,
        "avg_qualification_score": float(score) if score is not None else None,
        "nlp_accuracy": float(conf) if conf is not None else None,
        "conversion_rate": float(conversion) if conversion is not None else None,
    }


def upsert_metrics(engine: sa.Engine, duckdb_file: str | Path, days: list[str]) -> list[dict]:
    """Recompute and upsert ``metrics_daily`` for ``days`` (ISO dates); return the rows written."""
    if not days:
        return []
    with connect(duckdb_file, read_only=True) as duck:
        rows = [day_metrics(engine, duck, dt.date.fromisoformat(d)) for d in sorted(set(days))]
    with engine.begin() as conn:
        conn.execute(sa.text(_UPSERT_METRICS), rows)
    return [r | {"date": r["date"].isoformat()} for r in rows]
