"""Alembic's environment: the database is the ``chatbot_postgres`` Airflow connection.

A caller that already holds a connection (the ``chatbot_db_init`` DAG, the tests) passes it in
``config.attributes["connection"]``; otherwise the engine comes from the Airflow connection, so
``AIRFLOW_CONN_CHATBOT_POSTGRES`` (or the metadata DB's connection) decides where the command runs.
"""

from __future__ import annotations

from alembic import context

from include.chatbot.models import TABLES, metadata

config = context.config


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Autogenerate compares the chatbot's tables only; other tables in the database are not ours."""
    if type_ == "table":
        return name in TABLES
    return True


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=_include_object,
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from include.chatbot.config import POSTGRES_CONN_ID
    from include.common.db import engine_for

    engine = engine_for(POSTGRES_CONN_ID)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported: run against the chatbot_postgres connection")
run_migrations_online()
