"""The chatbot's legacy .env keys become the chatbot_postgres and chatbot_duckdb connections."""

from __future__ import annotations

import pytest

from include.common.legacy_env import LegacyEnvError, import_env

GUIDE_ENV = """
# PostgreSQL Configuration
POSTGRES_USER=faciliauto
POSTGRES_PASSWORD=faciliauto123
POSTGRES_HOST=localhost
POSTGRES_PORT=5432
POSTGRES_DB=faciliauto_chatbot

# DuckDB Configuration
DUCKDB_PATH=data/chatbot.duckdb

# SQL Echo (for debugging)
SQL_ECHO=true
"""


def test_the_guides_env_file_maps_to_connections():
    result = import_env(GUIDE_ENV)
    assert result.connections["chatbot_postgres"] == {
        "conn_id": "chatbot_postgres",
        "conn_type": "postgres",
        "conn_host": "localhost",
        "conn_port": 5432,
        "conn_schema": "faciliauto_chatbot",
        "conn_login": "faciliauto",
        "conn_password": "faciliauto123",
    }
    assert result.connections["chatbot_duckdb"] == {
        "conn_id": "chatbot_duckdb",
        "conn_type": "duckdb",
        "conn_host": "data/chatbot.duckdb",
    }
    assert any("SQL_ECHO" in note for note in result.notes)
    assert not any(note.startswith("ignored") for note in result.notes)
    assert all("faciliauto123" not in note for note in result.notes)


def test_a_bad_port_names_the_key_not_the_value():
    with pytest.raises(LegacyEnvError, match="POSTGRES_PORT") as info:
        import_env("POSTGRES_HOST=db\nPOSTGRES_PORT=abc\nPOSTGRES_PASSWORD=s3cret\n")
    assert "s3cret" not in str(info.value)
