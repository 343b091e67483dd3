"""Entry points the chatbot DAGs call: connection ids and params in, XCom-friendly dicts out."""

from __future__ import annotations

import logging

from include.chatbot.config import DUCKDB_CONN_ID, POSTGRES_CONN_ID, duckdb_path
from include.common.db import engine_for

log = logging.getLogger(__name__)


def migrate_postgres_task(target: str, seed: bool, conn_id: str = POSTGRES_CONN_ID) -> dict:
    from include.chatbot.alembic_cli import migrate_postgres

    engine = engine_for(conn_id)
    try:
        return migrate_postgres(engine, target, seed)
    finally:
        engine.dispose()


def init_duckdb_task(conn_id: str = DUCKDB_CONN_ID) -> dict:
    from include.chatbot.duckdb_store import init_duckdb

    return init_duckdb(duckdb_path(conn_id))


def db_init_summary(postgres: dict | None, duckdb: dict | None) -> dict:
    summary = {"postgres": postgres or "skipped", "duckdb": duckdb or "skipped"}
    log.info("chatbot_db_init: %s", summary)
    return summary


def plan_window_task(conn_id: str = POSTGRES_CONN_ID, duck_conn_id: str = DUCKDB_CONN_ID) -> dict:
    from include.chatbot.analytics import plan_window

    engine = engine_for(conn_id)
    try:
        return plan_window(engine, duckdb_path(duck_conn_id))
    finally:
        engine.dispose()


def copy_window_task(
    window: dict, conn_id: str = POSTGRES_CONN_ID, duck_conn_id: str = DUCKDB_CONN_ID
) -> dict:
    from include.chatbot.analytics import copy_window

    engine = engine_for(conn_id)
    try:
        return copy_window(engine, duckdb_path(duck_conn_id), window)
    finally:
        engine.dispose()


def metrics_task(
    days: list[str], conn_id: str = POSTGRES_CONN_ID, duck_conn_id: str = DUCKDB_CONN_ID
) -> list:
    from include.chatbot.metrics import upsert_metrics

    engine = engine_for(conn_id)
    try:
        return upsert_metrics(engine, duckdb_path(duck_conn_id), days)
    finally:
        engine.dispose()


def analytics_summary(window: dict, copied: dict, metrics: list, embeddings: dict) -> dict:
    summary = {"window": window, "copied": copied, "metrics": metrics, "embeddings": embeddings}
    log.info("chatbot_analytics: %s", summary)
    return summary


def embed_task(duck_conn_id: str = DUCKDB_CONN_ID) -> dict:
    from include.chatbot.duckdb_store import connect, migrate
    from include.chatbot.embeddings import embed_messages, load_embedder

    embedder = load_embedder()
    with connect(duckdb_path(duck_conn_id)) as duck:
        migrate(duck)
        return {"model_name": embedder.model_name, "embedded": embed_messages(duck, embedder)}
