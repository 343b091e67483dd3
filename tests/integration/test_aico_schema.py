"""The AICO sync's migration on SQLite, MariaDB and PostgreSQL: creates, adds aico_host, re-runs, refuses."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from include.aico.scenarios import choose_for_scenario, read_items
from include.aico.schema import migrate
from include.common.db import engine_for
from include.common.table_shape import TableShapeError

LEGACY_SCENARIOS = """
CREATE TABLE scenarios (
    id BIGINT PRIMARY KEY,
    scenario_code VARCHAR(64) NOT NULL UNIQUE,
    scenario_name VARCHAR(255),
    aico_username VARCHAR(128),
    aico_password VARCHAR(255),
    aico_project VARCHAR(128),
    aico_kb_name VARCHAR(128),
    owner_email VARCHAR(255) NOT NULL,
    created_at TIMESTAMP NULL
)
"""


def _columns(engine, table):
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def test_new_database_gets_every_table_and_a_rerun_changes_nothing(any_db_conn):
    engine = engine_for(any_db_conn("dialog_dst"))
    assert migrate(engine) == [
        "created scenarios",
        "created scenario_knowledge_items",
        "created aico_sync_log",
        "created aico_documents",
    ]
    assert "aico_host" in _columns(engine, "scenarios")
    assert migrate(engine) == []


def test_existing_scenarios_table_with_more_columns_gets_aico_host(any_db_conn):
    """The seed's ALTER TABLE on a table of the original service, rows and extra columns kept."""
    engine = engine_for(any_db_conn("dialog_dst"))
    with engine.begin() as conn:
        conn.execute(sa.text(LEGACY_SCENARIOS))
        conn.execute(
            sa.text(
                "INSERT INTO scenarios (id, scenario_code, scenario_name, aico_username, aico_password,"
                " aico_project, aico_kb_name, owner_email) VALUES"
                " (7, 'sales', '销售', 'bot', 'pw-prod', 'crm', 'kb-sales', 'a@example.com'),"
                " (8, 'sales_test', '销售 test', 'bot', 'pw-test', 'crm', 'kb-sales-t', 'a@example.com')"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TABLE scenario_knowledge_items (id BIGINT PRIMARY KEY, scenario_id BIGINT NOT NULL,"
                " title VARCHAR(255) NOT NULL, content TEXT NOT NULL, updated_at TIMESTAMP NULL,"
                " category VARCHAR(32))"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO scenario_knowledge_items (id, scenario_id, title, content) VALUES"
                " (2, 7, '退货', '七天无理由'), (1, 7, '发货', '48 小时内')"
            )
        )
    assert migrate(engine) == ["created aico_sync_log", "created aico_documents", "added scenarios.aico_host"]
    assert migrate(engine) == []
    assert {"aico_host", "owner_email", "created_at"} <= _columns(engine, "scenarios")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE scenarios SET aico_host = '20.17.0.2' WHERE id = 8"))
        code, choice = choose_for_scenario(conn, 7, "TEST", "20.17.0.1")
        assert (code, choice.row.scenario_code, choice.row.kb_name) == ("sales", "sales_test", "kb-sales-t")
        _, choice = choose_for_scenario(conn, 7, "PROD", "20.17.0.2")
        assert (choice.row.id, choice.reason) == (8, "aico_host matches AICO_HOST (sales_test)")
        assert [(i.id, i.title) for i in read_items(conn, 7)] == [(1, "发货"), (2, "退货")]


def test_a_scenarios_table_missing_a_column_is_refused_before_any_change(any_db_conn):
    engine = engine_for(any_db_conn("dialog_dst"))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE scenarios (id BIGINT PRIMARY KEY, scenario_code VARCHAR(64))"))
    with pytest.raises(TableShapeError) as info:
        migrate(engine)
    assert "missing column aico_kb_name" in str(info.value)
    assert "aico_host" not in str(info.value).split("expected:")[0]
    assert set(sa.inspect(engine).get_table_names()) == {"scenarios"}
    assert "aico_host" not in _columns(engine, "scenarios")
