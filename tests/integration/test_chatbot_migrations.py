"""The chatbot's Alembic revisions on the real PostgreSQL: up, down, seed rows, the CLI, autogenerate."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic import command

from include.chatbot.alembic_cli import alembic_config, current_revision
from include.chatbot.config import POSTGRES_CONN_ID
from include.chatbot.models import TABLES
from include.common.db import REPO_ROOT, engine_for


@pytest.fixture
def engine(postgres_conn):
    engine = engine_for(postgres_conn(POSTGRES_CONN_ID))
    yield engine
    engine.dispose()


def migrate(engine, action: str, target: str) -> None:
    with engine.begin() as conn:
        getattr(command, action)(alembic_config(conn), target)


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.scalar(sa.text(f"SELECT count(*) FROM {t}")) for t in TABLES}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "include.chatbot.alembic_cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=os.environ.copy(),
    )


def test_schema_revision_creates_the_seven_tables_with_keys_and_jsonb(engine):
    migrate(engine, "upgrade", "001")
    inspector = sa.inspect(engine)
    assert set(TABLES) <= set(inspector.get_table_names())
    assert counts(engine) == dict.fromkeys(TABLES, 0)
    columns = {c["name"]: c for c in inspector.get_columns("sessions")}
    assert type(columns["user_profile"]["type"]).__name__ == "JSONB"
    assert {c["name"] for c in inspector.get_columns("users")} >= {"consent_given", "consent_timestamp"}
    fks = {
        (fk["referred_table"], tuple(fk["constrained_columns"]))
        for fk in inspector.get_foreign_keys("messages")
    }
    assert fks == {("sessions", ("session_id",))}
    assert {u["column_names"][0] for u in inspector.get_unique_constraints("messages")} == {"message_id"}
    assert ["updated_at", "id"] in [i["column_names"] for i in inspector.get_indexes("messages")]
    with engine.begin() as conn:  # the trigger moves updated_at on any UPDATE
        conn.execute(sa.text("INSERT INTO users (phone_number, updated_at) VALUES ('+1', '2000-01-01')"))
        conn.execute(sa.text("UPDATE users SET name = 'x'"))
        assert conn.scalar(sa.text("SELECT updated_at > '2001-01-01' FROM users"))


def test_seed_revision_up_and_down_touches_exactly_its_rows(engine):
    migrate(engine, "upgrade", "head")
    assert counts(engine) == {
        "users": 3,
        "sessions": 2,
        "messages": 4,
        "qualified_leads": 1,
        "car_interactions": 0,
        "human_handoffs": 0,
        "metrics_daily": 0,
    }
    with engine.begin() as conn:
        assert current_revision(conn) == "002"
        roles = conn.execute(sa.text("SELECT role, count(*) FROM messages GROUP BY role ORDER BY role")).all()
        assert roles == [("assistant", 2), ("user", 2)]
        lead = conn.execute(
            sa.text(
                "SELECT u.phone_number, q.session_id, q.priority, q.user_profile->>'usage' "
                "FROM qualified_leads q JOIN users u ON u.id = q.user_id"
            )
        ).one()
        assert tuple(lead) == ("+5511999990001", "seed-session-0001", "high", "family")
        conn.execute(
            sa.text("INSERT INTO users (phone_number, consent_given) VALUES ('+5500000000000', true)")
        )
    migrate(engine, "downgrade", "001")
    after = counts(engine)
    assert after["users"] == 1 and sum(after.values()) == 1, "only the user created meanwhile is left"
    migrate(engine, "upgrade", "002")
    assert counts(engine)["messages"] == 4
    migrate(engine, "downgrade", "-1")
    migrate(engine, "downgrade", "-1")
    with engine.connect() as conn:
        assert current_revision(conn) is None
    assert not set(TABLES) & set(sa.inspect(engine).get_table_names())


def test_the_command_line_runs_against_the_connection(engine):
    up = cli("upgrade", "head")
    assert up.returncode == 0, up.stderr
    current = cli("current")
    assert "002 (head)" in current.stdout
    history = cli("history")
    assert "001 -> 002 (head)" in history.stdout and "<base> -> 001" in history.stdout
    assert cli("check").returncode == 0, "the models and the revisions agree (autogenerate finds nothing)"
    assert cli("downgrade", "-1").returncode == 0
    assert counts(engine)["users"] == 0
    assert cli("stamp", "head").returncode == 0
    with engine.connect() as conn:
        assert current_revision(conn) == "002"
    assert counts(engine)["users"] == 0, "stamp moves the version only"
    bad = cli()
    assert bad.returncode != 0 and "upgrade head" in bad.stderr
