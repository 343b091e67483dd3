"""chatbot_db_init end to end with dag.test() on the real PostgreSQL and a DuckDB file."""

from __future__ import annotations

import sqlalchemy as sa

from include.chatbot.config import POSTGRES_CONN_ID
from include.common.db import engine_for
from sandbox.dagrun import run_dag
from tests.conftest import set_connection


def test_init_without_seed_then_with_seed_then_skip(postgres_conn, data_dir, monkeypatch):
    engine = engine_for(postgres_conn(POSTGRES_CONN_ID))
    set_connection(monkeypatch, "chatbot_duckdb", "duckdb", host="analytics.duckdb")

    plain = run_dag("chatbot_db_init")
    assert plain.state == "success", plain.task_states
    assert plain.summary["postgres"] == {
        "revision_before": None,
        "revision_after": "001",
        "target": "001",
        "seeded": False,
    }
    assert plain.summary["duckdb"]["path"] == str(data_dir / "analytics.duckdb")
    assert plain.summary["duckdb"]["applied"] == [1, 2]
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM users")) == 0

    seeded = run_dag("chatbot_db_init", {"seed": True})
    assert seeded.summary["postgres"]["revision_after"] == "002" and seeded.summary["duckdb"]["applied"] == []
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM messages")) == 4

    down = run_dag("chatbot_db_init", {"target_revision": "001", "skip_duckdb": True})
    assert down.summary["postgres"]["revision_after"] == "001" and down.summary["duckdb"] == "skipped"
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM users")) == 0

    skipped = run_dag("chatbot_db_init", {"skip_postgres": True})
    assert skipped.summary["postgres"] == "skipped" and skipped.summary["duckdb"]["version"] == 2
    engine.dispose()
