"""chatbot_analytics end to end with dag.test(): the synthetic conversations on the real PostgreSQL,
copied into a DuckDB file; re-runs idempotent, changes copied once, metrics as computed by hand."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
import sqlalchemy as sa

from include.chatbot.alembic_cli import migrate_postgres
from include.chatbot.config import POSTGRES_CONN_ID
from include.chatbot.duckdb_store import DuckDBLockedError, connect
from include.common.db import engine_for
from sandbox.dagrun import run_dag
from sandbox.worlds import chatbot as world
from tests.conftest import set_connection


@pytest.fixture
def chatbot(postgres_conn, data_dir, monkeypatch):
    engine = engine_for(postgres_conn(POSTGRES_CONN_ID))
    migrate_postgres(engine, "001")
    world.populate(engine)
    set_connection(monkeypatch, "chatbot_duckdb", "duckdb", host="analytics.duckdb")
    yield engine, data_dir / "analytics.duckdb"
    engine.dispose()


def _dump(path) -> dict:
    with duckdb.connect(str(path), read_only=True) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("message_history", "conversation_context")
        }


def _history(path) -> dict:
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT message_id, phone_number, role, content, response_time_ms FROM message_history"
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_every_task_opening_duckdb_takes_the_pool_and_runs_never_overlap():
    from sandbox.dagrun import load_dag

    dag = load_dag("chatbot_analytics")
    assert dag.max_active_runs == 1
    assert {t.task_id: t.pool for t in dag.tasks if t.task_id != "summary"} == {
        "plan_window": "chatbot_duckdb",
        "copy_messages": "chatbot_duckdb",
        "metrics": "chatbot_duckdb",
        "embed_messages": "chatbot_duckdb",
    }


def test_copy_rerun_change_and_metrics(chatbot):
    engine, path = chatbot
    first = run_dag("chatbot_analytics")
    assert first.state == "success", first.task_states
    assert first.summary["copied"]["messages"] == 9 and first.summary["copied"]["sessions"] == 3
    assert first.summary["window"]["start"] is None

    history = _history(path)
    assert {k: (v[0], v[3]) for k, v in history.items()} == {
        "m1": ("+5511990000001", 2000),
        "m2": ("+5511990000001", None),
        "m3": ("+5511990000001", 4000),
        "m4": ("+5511990000001", None),
        "m5": ("+5511990000002", 3000),
        "m6": ("+5511990000002", None),
        "m7": ("+5511990000001", 1000),
        "m8": ("+5511990000001", None),
        "m9": ("+5511990000001", None),
    }
    with duckdb.connect(str(path), read_only=True) as conn:
        ctx = conn.execute(
            "SELECT phone_number, turn_id, state, summary, key_entities, user_profile, message_count "
            "FROM conversation_context WHERE session_id = 's-ana-1'"
        ).fetchone()
    assert ctx[:3] == ("+5511990000001", 2, "recommending")
    assert ctx[3].splitlines()[0] == "user: Quero um SUV para a família até 80 mil"
    assert ctx[3].splitlines()[-1].startswith("assistant: O Creta")
    assert ctx[4] == '{"color": "prata", "type": "SUV"}' and ctx[6] == 4
    assert '"budget": 80000' in ctx[5]

    with engine.connect() as conn:
        rows = {
            r.date.isoformat(): r._asdict()
            for r in conn.execute(sa.text("SELECT * FROM metrics_daily ORDER BY date"))
        }
    assert set(rows) == set(world.EXPECTED_METRICS)
    for day, expected in world.EXPECTED_METRICS.items():
        for column, value in expected.items():
            assert rows[day][column] == (pytest.approx(value) if value is not None else None), (day, column)

    # Nothing new: the re-run copies nothing and the file's contents are identical.
    before = _dump(path)
    again = run_dag("chatbot_analytics")
    assert again.state == "success" and again.summary["copied"]["messages"] == 0
    assert again.summary["window"]["end"] is None
    assert _dump(path) == before

    # A changed message and a late reply: each copied once, the earlier user message gets its time.
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE messages SET content = 'Prefiro automático, cor prata' WHERE message_id = 'm3'")
        )
        conn.execute(
            sa.text(
                "INSERT INTO messages (message_id, session_id, role, content, created_at) "
                "SELECT 'm10', id, 'assistant', 'Temos versões diesel.', :at FROM sessions WHERE session_id = 's-ana-2'"
            ),
            {"at": world.DAY2 + dt.timedelta(seconds=35)},
        )
    changed = run_dag("chatbot_analytics")
    assert changed.state == "success", changed.task_states
    assert changed.summary["copied"]["messages"] == 2
    assert changed.summary["embeddings"]["embedded"] == 2  # the edited m3 and the new m10
    history = _history(path)
    assert len(history) == 10
    assert history["m3"][2] == "Prefiro automático, cor prata" and history["m3"][3] == 4000
    assert history["m9"][3] == 5000
    with engine.connect() as conn:
        day2 = conn.execute(sa.text("SELECT * FROM metrics_daily WHERE date = '2026-03-03'")).one()
        assert conn.scalar(sa.text("SELECT count(*) FROM metrics_daily")) == 2
    assert day2.total_messages == 4 and day2.avg_response_time_ms == pytest.approx(3000.0)


def test_locked_file_is_a_clear_retryable_error(chatbot):
    _, path = chatbot
    with connect(path) as holder:
        holder.execute("SELECT 1")
        # Another connection in this process shares the lock: a second process is what DuckDB refuses.
        import subprocess
        import sys

        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from include.chatbot.duckdb_store import connect\n"
                "try:\n with connect(sys.argv[1], lock_timeout=0.5): pass\n"
                "except Exception as e: print(type(e).__name__, e)",
                str(path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    assert out.stdout.startswith(DuckDBLockedError.__name__) and "chatbot_duckdb pool" in out.stdout
