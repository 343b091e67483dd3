"""The chatbot's ``metrics_daily``, recomputed per day from both databases after each copy.

Message figures come from the DuckDB copy (``message_history``, with its response times), lead and
handoff figures from PostgreSQL; a day is recomputed whole and upserted, so a re-run or a late message
only rewrites that day's row. The definition of each column is in the README, section chatbot_analytics.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from include.chatbot.duckdb_store import connect

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
