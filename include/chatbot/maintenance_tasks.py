"""Entry points of chatbot_maintenance: connection ids and params in, XCom-friendly dicts out.

Nothing returned here carries a password or personal data: counts, sizes, keys and stamps only.
"""

from __future__ import annotations

import datetime as dt
import logging

from include.chatbot.config import (
    BACKUP_CONN_ID,
    BACKUP_PREFIX,
    DUCKDB_CONN_ID,
    POSTGRES_CONN_ID,
    duckdb_path,
)
from include.common.db import engine_for

log = logging.getLogger(__name__)


def expire_sessions_task(dry_run: bool, now: str | None = None, conn_id: str = POSTGRES_CONN_ID) -> dict:
    from include.chatbot.maintenance import expire_sessions

    engine = engine_for(conn_id)
    try:
        return expire_sessions(engine, now=dt.datetime.fromisoformat(now) if now else None, dry_run=dry_run)
    finally:
        engine.dispose()


def retention_task(
    params: dict, now: str | None = None, conn_id: str = POSTGRES_CONN_ID, duck_conn_id: str = DUCKDB_CONN_ID
) -> dict:
    from include.chatbot.maintenance import apply_retention

    engine = engine_for(conn_id)
    try:
        return apply_retention(
            engine,
            duckdb_path(duck_conn_id),
            action=params["retention_action"],
            retention_days=int(params["retention_days"]),
            consent_grace_days=int(params["consent_grace_days"]),
            now=dt.datetime.fromisoformat(now) if now else None,
            dry_run=bool(params["dry_run"]),
        )
    finally:
        engine.dispose()


def vacuum_task(dry_run: bool, conn_id: str = POSTGRES_CONN_ID) -> dict:
    from include.chatbot.maintenance import vacuum_analyze

    if dry_run:
        return {"vacuumed": [], "dry_run": True}
    engine = engine_for(conn_id)
    try:
        return vacuum_analyze(engine)
    finally:
        engine.dispose()


def backup_task(
    run_after: str,
    keep: int,
    dry_run: bool,
    conn_id: str = POSTGRES_CONN_ID,
    duck_conn_id: str = DUCKDB_CONN_ID,
    backup_conn_id: str = BACKUP_CONN_ID,
    prefix: str = BACKUP_PREFIX,
) -> dict:
    """Dump, upload and prune; the dumps live in a work directory removed however the task ends."""
    from include.chatbot.backup import create_backup, prune_backups, stamp_of
    from include.common.workdir import work_directory
    from include.dwh.s3 import S3Store

    stamp = stamp_of(dt.datetime.fromisoformat(run_after))
    if dry_run:
        return {"stamp": stamp, "dry_run": True}
    store = S3Store.from_connection(backup_conn_id)
    engine = engine_for(conn_id)
    try:
        with work_directory(None, "chatbot-backup-") as workdir:
            result = create_backup(store, engine, duckdb_path(duck_conn_id), stamp, workdir, prefix=prefix)
    finally:
        engine.dispose()
    result["retention"] = prune_backups(store, keep, prefix)
    return result


def report_task(conn_id: str = POSTGRES_CONN_ID, duck_conn_id: str = DUCKDB_CONN_ID) -> dict:
    from include.chatbot.maintenance import duckdb_report, postgres_report

    engine = engine_for(conn_id)
    try:
        return {"postgres": postgres_report(engine), "duckdb": duckdb_report(duckdb_path(duck_conn_id))}
    finally:
        engine.dispose()


def maintenance_summary(expired: dict, retention: dict, vacuum: dict, backup: dict, report: dict) -> dict:
    summary = {
        "sessions_expired": expired["sessions_expired"],
        "retention": retention,
        "vacuum": vacuum,
        "backup": backup,
        "report": report,
    }
    log.info("chatbot_maintenance: %s", summary)
    return summary
