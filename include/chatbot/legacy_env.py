"""The chatbot's legacy ``.env`` keys, registered with :mod:`include.common.legacy_env`.

``POSTGRES_USER/PASSWORD/HOST/PORT/DB`` were the one PostgreSQL database -> connection
``chatbot_postgres``; ``DUCKDB_PATH`` the analytics file -> connection ``chatbot_duckdb`` (type duckdb,
host = the path; a relative path is resolved under ``PIPELINES_DATA_DIR``); ``SQL_ECHO`` is no Airflow
object and comes back as a note.
"""

from __future__ import annotations

from include.chatbot.config import DUCKDB_CONN_ID, POSTGRES_CONN_ID
from include.common.legacy_env import ImportResult, LegacyEnv, register

POSTGRES_DEFAULT_PORT = 5432
POSTGRES_KEYS = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DB")
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


@register(*POSTGRES_KEYS, order=10)
def map_postgres(env: LegacyEnv, result: ImportResult) -> None:
    """``POSTGRES_*`` -> ``chatbot_postgres`` (the guide's defaults: localhost:5432)."""
    port_entry = env.entry("POSTGRES_PORT")
    port = POSTGRES_DEFAULT_PORT
    if port_entry is not None and port_entry.value.strip():
        if not port_entry.value.strip().isdigit() or not 0 < int(port_entry.value) < 65536:
            raise port_entry.fail("must be a TCP port number")
        port = int(port_entry.value)
    if env.value("POSTGRES_DB") is None:
        result.note("warning: no POSTGRES_DB; chatbot_postgres uses the login's default database")
    result.set_connection(
        POSTGRES_CONN_ID,
        conn_type="postgres",
        conn_host=env.value("POSTGRES_HOST") or "localhost",
        conn_port=port,
        conn_schema=env.value("POSTGRES_DB"),
        conn_login=env.value("POSTGRES_USER"),
        conn_password=env.value("POSTGRES_PASSWORD"),
    )


@register("DUCKDB_PATH", order=10)
def map_duckdb(env: LegacyEnv, result: ImportResult) -> None:
    """``DUCKDB_PATH`` -> ``chatbot_duckdb``."""
    entry = env.entry("DUCKDB_PATH")
    if entry is None:
        return
    if not entry.value.strip():
        raise entry.fail("is empty; give the DuckDB file's path")
    result.set_connection(DUCKDB_CONN_ID, conn_type="duckdb", conn_host=entry.value.strip())
    if not entry.value.strip().startswith("/"):
        result.note(f"DUCKDB_PATH is relative: the file is {entry.value.strip()} under PIPELINES_DATA_DIR")


@register("SQL_ECHO", order=40)
def note_sql_echo(env: LegacyEnv, result: ImportResult) -> None:
    """SQLAlchemy's echo becomes a logger level of the Airflow task logs."""
    entry = env.entry("SQL_ECHO")
    if entry is None:
        return
    value = entry.value.strip().lower()
    if value not in TRUE | FALSE:
        raise entry.fail("must be true or false")
    if value in TRUE:
        result.note(
            "SQL_ECHO=true: set AIRFLOW__LOGGING__LOGGING_LEVEL=DEBUG, or the logger sqlalchemy.engine "
            "to INFO in a custom logging config, to see the statements in the task logs"
        )
