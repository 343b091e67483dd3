"""SQLAlchemy engines built from Airflow connections.

Every pipeline names its stores by Airflow connection id, and the connection's *type* picks the
backend: ``sqlite`` for the embedded defaults, ``mysql`` and ``postgres`` for real servers. MySQL and
PostgreSQL engines come from the providers' hooks, so connection extras (charset, SSL, IAM, ...) behave
exactly as they do for any other Airflow task.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """Directory of the embedded SQLite/DuckDB files (``PIPELINES_DATA_DIR``, default ``<repo>/.data``)."""
    return Path(os.environ.get("PIPELINES_DATA_DIR", REPO_ROOT / ".data"))


def sqlite_path(host: str) -> Path:
    """Resolve a sqlite connection's host: relative paths live under :func:`data_dir`."""
    path = Path(host)
    return path if path.is_absolute() else data_dir() / path


def sqlite_engine(host: str) -> sa.Engine:
    """Engine for an embedded SQLite file (``host`` as in a sqlite connection), tuned for concurrent use."""
    path = sqlite_path(host)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # WAL lets a reader and a writer work on the same file at once.
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return engine


def engine_for(conn_id: str) -> sa.Engine:
    """Return an engine for the Airflow connection ``conn_id`` (sqlite, mysql or postgres)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        return sqlite_engine(conn.host or f"{conn_id}.sqlite")
    if conn_type == "mysql":
        from airflow.providers.mysql.hooks.mysql import MySqlHook

        hook = MySqlHook(mysql_conn_id=conn_id)
        url = sa.make_url(hook.get_uri())
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        return sa.create_engine(url, pool_pre_ping=True, pool_recycle=3600)
    if conn_type in ("postgres", "postgresql"):
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=conn_id).get_sqlalchemy_engine({"pool_pre_ping": True})
    raise ValueError(
        f"connection {conn_id!r} has type {conn.conn_type!r}; expected sqlite, mysql or postgres"
    )


def dialect_name(bind: sa.Engine | sa.Connection) -> str:
    """``sqlite``, ``mysql`` (MariaDB too) or ``postgresql``."""
    return bind.dialect.name
