"""The chatbot's daily housekeeping: session expiry, LGPD retention, VACUUM ANALYZE, the size report.

The original service's guide asks for "data retention policies" (LGPD), a periodic ``VACUUM ANALYZE``
and three monitoring queries; this module is that policy made runnable. Never touches Airflow context.

Retention rules (README, chatbot_maintenance): a user is due when

* they never consented (``consent_given`` false) and their account is older than ``consent_grace_days``,
* or their last activity (the newest of the user row's, their sessions' and their messages' times) is
  older than ``retention_days``.

Such a user is deleted (the foreign keys cascade to sessions, messages, leads, interactions and
handoffs) or anonymized: the phone number becomes a random ``anon-`` token (nothing to reverse), name
and email are emptied, every message's content and entities and every stored profile, context and
feedback is redacted. The DuckDB analytics copy follows in the same task: the user's rows are deleted
or redacted there (their embeddings always removed) *before* the PostgreSQL transaction commits, so a
failure at either end leaves the users due, and the next run finishes the job. An anonymized user is
never due again, so re-runs change nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path

import sqlalchemy as sa

from include.chatbot.models import TABLES

log = logging.getLogger(__name__)

ANON_PREFIX = "anon-"
REDACTED = "[redacted]"
DUCKDB_SESSION_TABLES = ("message_embeddings", "message_history", "conversation_context")


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def expire_sessions(engine: sa.Engine, *, now: dt.datetime | None = None, dry_run: bool = False) -> dict:
    """Mark sessions past ``expires_at`` as ``expired`` (the partial index keeps this cheap)."""
    where = "expires_at IS NOT NULL AND expires_at < :now AND state <> 'expired'"
    with engine.begin() as conn:
        if dry_run:
            count = conn.scalar(sa.text(f"SELECT count(*) FROM sessions WHERE {where}"), {"now": _now(now)})
        else:
            count = conn.execute(
                sa.text(f"UPDATE sessions SET state = 'expired' WHERE {where}"), {"now": _now(now)}
            ).rowcount
    return {"sessions_expired": count, "dry_run": dry_run}


DUE_USERS = """
SELECT u.id, u.created_at, u.consent_given,
       (SELECT array_agg(s.session_id) FROM sessions s WHERE s.user_id = u.id) AS session_ids,
       u.phone_number
FROM users u
WHERE u.phone_number NOT LIKE :anon
  AND (
    (NOT u.consent_given AND u.created_at < :consent_cutoff)
    OR greatest(
         u.updated_at,
         (SELECT max(s.updated_at) FROM sessions s WHERE s.user_id = u.id),
         (SELECT max(m.created_at) FROM messages m JOIN sessions s ON s.id = m.session_id
           WHERE s.user_id = u.id)
       ) < :activity_cutoff
  )
ORDER BY u.id
FOR UPDATE OF u
"""


def apply_retention(
    engine: sa.Engine,
    duckdb_file: Path | None,
    *,
    action: str,
    retention_days: int,
    consent_grace_days: int,
    now: dt.datetime | None = None,
    dry_run: bool = False,
) -> dict:
    """Delete or anonymize the users due (module docstring) in PostgreSQL and the DuckDB copy.

    The summary counts users (and why they were due) and rows per store; it carries no personal data.
    """
    if action not in ("delete", "anonymize"):
        raise ValueError(f"retention_action must be 'delete' or 'anonymize', not {action!r}")
    if retention_days < 1 or consent_grace_days < 0:
        raise ValueError("retention_days must be at least 1 and consent_grace_days at least 0")
    now = _now(now)
    params = {
        "anon": f"{ANON_PREFIX}%",
        "consent_cutoff": now - dt.timedelta(days=consent_grace_days),
        "activity_cutoff": now - dt.timedelta(days=retention_days),
    }
    with engine.begin() as conn:
        due = conn.execute(sa.text(DUE_USERS), params).all()
        user_ids = [row.id for row in due]
        sessions = [sid for row in due for sid in (row.session_ids or [])]
        summary = {
            "action": action,
            "dry_run": dry_run,
            "users": len(due),
            "users_without_consent": sum(not row.consent_given for row in due),
            "postgres": _postgres_counts(conn, user_ids),
        }
        # users.phone_number is VARCHAR(32): 24 hex digits (96 random bits) fit beside the prefix.
        tokens = {uid: f"{ANON_PREFIX}{uuid.uuid4().hex[:24]}" for uid in user_ids}
        if duckdb_file is not None:
            summary["duckdb"] = _retain_duckdb(duckdb_file, due, tokens, action, dry_run)
        if not dry_run and due:
            if action == "delete":
                conn.execute(sa.text("DELETE FROM users WHERE id = ANY(:ids)"), {"ids": user_ids})
            else:
                _anonymize_postgres(conn, tokens)
        log.info(
            "retention (%s, dry_run=%s): %s users, %s sessions", action, dry_run, len(due), len(sessions)
        )
    return summary


def _postgres_counts(conn: sa.Connection, user_ids: list[int]) -> dict:
    """Rows of the due users per table, as the cascade (or the redaction) reaches them."""
    row = conn.execute(
        sa.text(
            "SELECT (SELECT count(*) FROM sessions WHERE user_id = ANY(:ids)) AS sessions,"
            " (SELECT count(*) FROM messages m JOIN sessions s ON s.id = m.session_id"
            "   WHERE s.user_id = ANY(:ids)) AS messages,"
            " (SELECT count(*) FROM qualified_leads WHERE user_id = ANY(:ids)) AS qualified_leads,"
            " (SELECT count(*) FROM car_interactions c JOIN sessions s ON s.id = c.session_id"
            "   WHERE s.user_id = ANY(:ids)) AS car_interactions,"
            " (SELECT count(*) FROM human_handoffs h JOIN sessions s ON s.id = h.session_id"
            "   WHERE s.user_id = ANY(:ids)) AS human_handoffs"
        ),
        {"ids": user_ids},
    ).one()
    return row._asdict()


def _anonymize_postgres(conn: sa.Connection, tokens: dict[int, str]) -> None:
    ids = list(tokens)
    conn.execute(
        sa.text(
            "UPDATE users SET phone_number = :token, name = NULL, email = NULL, is_active = false"
            " WHERE id = :id"
        ),
        [{"id": uid, "token": token} for uid, token in tokens.items()],
    )
    in_sessions = "session_id IN (SELECT id FROM sessions WHERE user_id = ANY(:ids))"
    for statement in (
        f"UPDATE messages SET content = '{REDACTED}', entities = '{{}}'::jsonb WHERE {in_sessions}",
        "UPDATE sessions SET user_profile = '{}'::jsonb WHERE user_id = ANY(:ids)",
        "UPDATE qualified_leads SET user_profile = '{}'::jsonb WHERE user_id = ANY(:ids)",
        f"UPDATE car_interactions SET feedback = NULL WHERE {in_sessions}",
        f"UPDATE human_handoffs SET context = '{{}}'::jsonb, feedback = NULL WHERE {in_sessions}",
    ):
        conn.execute(sa.text(statement), {"ids": ids})


def _retain_duckdb(path: Path, due: list, tokens: dict[int, str], action: str, dry_run: bool) -> dict:
    """Delete or redact the due users' rows of the analytics copy, matched by session and phone."""
    from include.chatbot.duckdb_store import connect, migrate

    counts = dict.fromkeys(DUCKDB_SESSION_TABLES, 0)
    if not due or not path.exists():  # nothing copied yet: nothing to remove, and no file to create
        return counts
    with connect(path) as duck:
        migrate(duck)
        duck.begin()
        try:
            for row in due:
                sessions, phone = list(row.session_ids or []), row.phone_number
                match = "(list_contains(?, session_id) OR phone_number = ?)"
                for table in DUCKDB_SESSION_TABLES:
                    if dry_run:
                        sql = f"SELECT count(*) FROM {table} WHERE {match}"
                    elif action == "delete" or table == "message_embeddings":
                        sql = f"DELETE FROM {table} WHERE {match}"
                    elif table == "message_history":
                        sql = (
                            f"UPDATE {table} SET phone_number = '{tokens[row.id]}', content = '{REDACTED}',"
                            f" entities = '{{}}' WHERE {match}"
                        )
                    else:
                        sql = (
                            f"UPDATE {table} SET phone_number = '{tokens[row.id]}', summary = NULL,"
                            f" key_entities = '{{}}', user_profile = '{{}}' WHERE {match}"
                        )
                    counts[table] += duck.execute(sql, [sessions, phone]).fetchone()[0]
            duck.commit()
        except BaseException:
            duck.rollback()
            raise
    return counts


def vacuum_analyze(engine: sa.Engine) -> dict:
    """``VACUUM ANALYZE`` each chatbot table; VACUUM cannot run in a transaction, hence autocommit."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in TABLES:
            conn.execute(sa.text(f"VACUUM ANALYZE {table}"))
    return {"vacuumed": list(TABLES)}


def postgres_report(engine: sa.Engine) -> dict:
    """The guide's monitoring queries: database size, each table's size, row counts (exact and
    the statistics' ``n_live_tup``, which VACUUM ANALYZE has just refreshed)."""
    with engine.connect() as conn:
        size = conn.execute(
            sa.text(
                "SELECT current_database() AS name, pg_database_size(current_database()) AS bytes,"
                " pg_size_pretty(pg_database_size(current_database())) AS pretty"
            )
        ).one()
        tables = conn.execute(
            sa.text(
                "SELECT t.tablename, pg_total_relation_size(quote_ident(t.schemaname) || '.' ||"
                " quote_ident(t.tablename)) AS bytes, coalesce(s.n_live_tup, 0) AS live_rows"
                " FROM pg_tables t LEFT JOIN pg_stat_user_tables s"
                "   ON s.schemaname = t.schemaname AND s.relname = t.tablename"
                " WHERE t.schemaname = current_schema() ORDER BY 2 DESC, 1"
            )
        ).all()
        rows = {table: conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) for table in TABLES}
    return {
        "database": size.name,
        "database_bytes": size.bytes,
        "database_size": size.pretty,
        "tables": {
            t.tablename: {"bytes": t.bytes, "live_rows": t.live_rows, "rows": rows.get(t.tablename)}
            for t in tables
        },
    }


def duckdb_report(path: Path) -> dict:
    """The analytics file's size on disk and its tables' row counts (None when it does not exist)."""
    from include.chatbot.duckdb_store import TABLES as DUCK_TABLES
    from include.chatbot.duckdb_store import connect

    if not path.exists():
        return {"path": str(path), "exists": False}
    with connect(path, read_only=True) as duck:
        size = duck.execute(
            "SELECT database_size, total_blocks, used_blocks FROM pragma_database_size()"
        ).fetchone()
        present = {r[0] for r in duck.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        rows = {
            t: duck.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DUCK_TABLES if t in present
        }
    return {
        "path": str(path),
        "exists": True,
        "file_bytes": path.stat().st_size,
        "database_size": size[0],
        "rows": rows,
    }
