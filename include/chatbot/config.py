"""Where the chatbot pipelines' settings live.

* Connection ``chatbot_postgres`` (type ``postgres``): the chatbot's operational database, which the
  Alembic migrations in :mod:`include.chatbot.migrations` own. Its embedded default is the local
  PostgreSQL (database ``chatbot``): JSONB columns, triggers and Alembic's transactional DDL have no
  honest SQLite stand-in. ``AIRFLOW_CONN_CHATBOT_POSTGRES`` points every command and DAG elsewhere.
* Connection ``chatbot_duckdb`` (type ``duckdb``, ``host`` = the file; relative paths live under
  ``PIPELINES_DATA_DIR``): the analytics copy. Without the connection, ``chatbot.duckdb`` there.
* Connection ``chatbot_backups`` (type ``aws``; extra ``endpoint_url``, ``bucket_name``): where the
  maintenance DAG puts its backups; the embedded default is the local S3 store of ``make dwh-sandbox``.
* Pool ``chatbot_duckdb`` (one slot): DuckDB is single-writer, so every task that opens the file
  takes this slot.
"""

from __future__ import annotations

from pathlib import Path

POSTGRES_CONN_ID = "chatbot_postgres"
DUCKDB_CONN_ID = "chatbot_duckdb"
BACKUP_CONN_ID = "chatbot_backups"
DUCKDB_POOL = "chatbot_duckdb"
DEFAULT_DUCKDB_FILE = "chatbot.duckdb"
BACKUP_PREFIX = "chatbot/backups"


class ChatbotConfigError(ValueError):
    """A chatbot connection of the wrong type or without what it needs."""


def duckdb_path(conn_id: str = DUCKDB_CONN_ID) -> Path:
    """The DuckDB file of ``conn_id`` (type duckdb, host = path), or the default file if undefined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    from include.common.db import sqlite_path

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return sqlite_path(DEFAULT_DUCKDB_FILE)
    if (conn.conn_type or "").lower() != "duckdb":
        raise ChatbotConfigError(f"connection {conn_id!r} has type {conn.conn_type!r}; expected duckdb")
    return sqlite_path(conn.host or DEFAULT_DUCKDB_FILE)
