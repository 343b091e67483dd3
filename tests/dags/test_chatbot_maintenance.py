"""chatbot_maintenance end to end with dag.test(): the synthetic conversations plus two users due for
retention on the real PostgreSQL, copied to DuckDB by chatbot_analytics, backed up to the local S3."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import duckdb
import pytest
import sqlalchemy as sa

from include.chatbot.alembic_cli import migrate_postgres
from include.chatbot.backup import list_backups
from include.chatbot.config import BACKUP_CONN_ID, BACKUP_PREFIX, POSTGRES_CONN_ID
from include.chatbot.restore import main as restore_main
from include.common.db import engine_for
from include.dwh.s3 import S3Store
from sandbox.dagrun import run_dag
from sandbox.simulators.s3 import airflow_connection
from sandbox.worlds import chatbot as world
from tests.conftest import _postgres_admin, new_bucket, set_connection

AS_OF = "2026-03-10T00:00:00+00:00"
CARLA, DORA = "+5511990000003", "+5511990000004"
SECRET = f"pw-{uuid.uuid4().hex}"


@pytest.fixture
def chatbot(postgres_conn, data_dir, s3_endpoint, monkeypatch):
    conn_id = postgres_conn(POSTGRES_CONN_ID)
    engine = engine_for(conn_id)
    migrate_postgres(engine, "001")
    world.populate(engine)
    world.populate_maintenance(engine)
    # The local server trusts every login; the password must still never show.
    url = engine.url
    set_connection(
        monkeypatch,
        POSTGRES_CONN_ID,
        "postgres",
        host=url.host,
        port=url.port,
        login=url.username,
        password=SECRET,
        schema=url.database,
    )
    set_connection(monkeypatch, "chatbot_duckdb", "duckdb", host="analytics.duckdb")
    bucket = new_bucket(s3_endpoint)
    fields = airflow_connection(s3_endpoint, bucket)
    set_connection(monkeypatch, BACKUP_CONN_ID, fields.pop("conn_type"), **fields)
    assert run_dag("chatbot_analytics").state == "success"
    yield engine, data_dir / "analytics.duckdb"
    engine.dispose()


def _maintain(**conf):
    outcome = run_dag("chatbot_maintenance", {"as_of": AS_OF, **conf})
    assert outcome.state == "success", outcome.task_states
    return outcome.summary


def _pg(engine, sql: str) -> list:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


def _duck(path, sql: str) -> list:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def _duck_rows_of(path, phone: str, sessions: tuple) -> int:
    return sum(
        _duck(
            path,
            f"SELECT count(*) FROM {t} WHERE phone_number = '{phone}' OR session_id IN {sessions}",
        )[0][0]
        for t in ("message_history", "message_embeddings", "conversation_context")
    )


DUE_SESSIONS = ("s-carla-1", "s-dora-1")


def test_delete_expires_retains_backs_up_and_reruns_idempotent(chatbot, capfd, caplog):
    engine, path = chatbot
    assert _duck_rows_of(path, CARLA, DUE_SESSIONS) == 3 + 3 + 2  # history, embeddings, contexts
    dry = _maintain(dry_run=True, retention_action="delete")
    assert dry["retention"]["users"] == 2 and dry["sessions_expired"] == 1
    assert _pg(engine, "SELECT count(*) FROM users") == [(4,)]
    assert "objects" not in dry["backup"]

    first = _maintain(retention_action="delete", backup_keep=1)
    assert first["sessions_expired"] == 1
    retention = first["retention"]
    assert (retention["users"], retention["users_without_consent"]) == (2, 1)
    assert retention["postgres"] == {
        "sessions": 2,
        "messages": 3,
        "qualified_leads": 1,
        "car_interactions": 1,
        "human_handoffs": 0,
    }
    assert retention["duckdb"] == {"message_embeddings": 3, "message_history": 3, "conversation_context": 2}
    assert _pg(engine, "SELECT phone_number FROM users ORDER BY 1") == [(p,) for _, p, _ in world.USERS]
    assert _pg(engine, "SELECT session_id, state FROM sessions WHERE session_id = 's-bruno-1'") == [
        ("s-bruno-1", "expired")
    ]
    assert _pg(engine, "SELECT count(*) FROM messages") == [(len(world.MESSAGES),)]
    for phone in (CARLA, DORA):
        assert _duck_rows_of(path, phone, DUE_SESSIONS) == 0
    assert _duck(path, "SELECT count(*) FROM message_history") == [(len(world.MESSAGES),)]

    report = first["report"]
    assert report["postgres"]["tables"]["users"]["rows"] == 2
    assert report["postgres"]["tables"]["messages"]["rows"] == len(world.MESSAGES)
    assert report["postgres"]["database_bytes"] > 0 and report["postgres"]["database_size"].endswith("B")
    assert report["duckdb"]["rows"]["message_history"] == len(world.MESSAGES)
    assert report["duckdb"]["file_bytes"] == path.stat().st_size
    assert first["vacuum"]["vacuumed"][0] == "users"

    store = S3Store.from_connection(BACKUP_CONN_ID)
    stamp = first["backup"]["stamp"]
    assert list_backups(store) == {
        stamp: [
            f"{BACKUP_PREFIX}/{stamp}/{name}" for name in ("chatbot.duckdb", "manifest.json", "postgres.dump")
        ]
    }
    assert (
        store.head(f"{BACKUP_PREFIX}/{stamp}/postgres.dump").size
        == first["backup"]["objects"]["postgres.dump"]["bytes"]
    )

    # Backups are stamped to the second and a run in the same second replaces its backup: start the
    # second run in a later second so that it makes a new one and prunes the first.
    time.sleep(1.1)
    second = _maintain(retention_action="delete", backup_keep=1)
    assert second["sessions_expired"] == 0 and second["retention"]["users"] == 0
    assert second["retention"]["duckdb"] == {
        "message_embeddings": 0,
        "message_history": 0,
        "conversation_context": 0,
    }
    assert second["backup"]["retention"] == {"kept": [second["backup"]["stamp"]], "deleted": [stamp]}
    assert list(list_backups(store)) == [second["backup"]["stamp"]]

    shown = json.dumps([dry, first, second]) + caplog.text + "".join(capfd.readouterr())
    assert SECRET not in shown


def test_anonymize_removes_personal_data_in_both_stores(chatbot):
    engine, path = chatbot
    first = _maintain(retention_action="anonymize")
    assert first["retention"]["users"] == 2
    assert first["retention"]["duckdb"] == {
        "message_embeddings": 3,
        "message_history": 3,
        "conversation_context": 2,
    }
    users = _pg(engine, "SELECT phone_number, name, email, is_active FROM users ORDER BY id")
    assert len(users) == 4 and users[:2] == [(p, n, None, True) for _, p, n in world.USERS]
    tokens = [u[0] for u in users[2:]]
    assert all(t.startswith("anon-") and len(t) == 29 for t in tokens) and tokens[0] != tokens[1]
    assert [u[1:] for u in users[2:]] == [(None, None, False)] * 2
    assert _pg(
        engine,
        "SELECT DISTINCT m.content, m.entities::text FROM messages m JOIN sessions s ON s.id = m.session_id"
        " WHERE s.session_id IN ('s-carla-1', 's-dora-1')",
    ) == [("[redacted]", "{}")]
    assert _pg(engine, "SELECT feedback FROM car_interactions") == [(None,)]
    history = _duck(
        path,
        "SELECT DISTINCT phone_number, content FROM message_history WHERE session_id IN "
        f"{DUE_SESSIONS} ORDER BY 1",
    )
    assert history == sorted((t, "[redacted]") for t in tokens)
    assert _duck(path, f"SELECT count(*) FROM message_embeddings WHERE session_id IN {DUE_SESSIONS}") == [
        (0,)
    ]
    assert _duck(
        path,
        f"SELECT DISTINCT summary, key_entities, user_profile FROM conversation_context WHERE session_id IN {DUE_SESSIONS}",
    ) == [(None, "{}", "{}")]

    # The next copy brings the redacted rows again: still nothing personal; maintenance is a no-op.
    assert run_dag("chatbot_analytics").state == "success"
    everything = json.dumps(
        [_duck(path, f"SELECT * FROM {t}") for t in ("message_history", "conversation_context")], default=str
    )
    for personal in (CARLA, DORA, "Carla", "Dora", "Não quero", "Meu CPF"):
        assert personal not in everything
    again = _maintain(retention_action="anonymize")
    assert again["retention"]["users"] == 0
    assert _pg(engine, "SELECT phone_number FROM users ORDER BY id")[2:] == [(t,) for t in tokens]


def test_restore_round_trip(chatbot, tmp_path):
    engine, path = chatbot
    summary = _maintain(retention_action="delete")
    stamp = summary["backup"]["stamp"]
    target = f"t_restored_{uuid.uuid4().hex[:8]}"
    admin = _postgres_admin()
    try:
        assert restore_main(["--stamp", stamp, "--database", target, "--duckdb", "restored.duckdb"]) == 0
        restored = sa.create_engine(engine.url.set(database=target))
        try:
            for table in ("users", "sessions", "messages", "qualified_leads", "metrics_daily"):
                sql = f"SELECT * FROM {table} ORDER BY id"
                assert _pg(restored, sql) == _pg(engine, sql), table
            assert _pg(restored, "SELECT version_num FROM alembic_version") == [("001",)]
        finally:
            restored.dispose()
        restored_file = path.parent / "restored.duckdb"
        for table in ("message_history", "conversation_context", "message_embeddings", "etl_watermark"):
            assert _duck(restored_file, f"SELECT * FROM {table} ORDER BY 1") == _duck(
                path, f"SELECT * FROM {table} ORDER BY 1"
            )
        # An existing file is not overwritten without --force; a missing backup is a clear error.
        assert restore_main(["--stamp", stamp, "--database", target, "--duckdb", "restored.duckdb"]) == 1
        assert restore_main(["--stamp", "19990101T000000Z", "--database", target]) == 2
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        admin.close()


def test_the_maintenance_dag_wiring():
    from sandbox.dagrun import load_dag

    dag = load_dag("chatbot_maintenance")
    assert dag.max_active_runs == 1
    assert {t.task_id for t in dag.tasks if t.pool == "chatbot_duckdb"} == {"retention", "backup", "report"}
    assert dt.timedelta(0) < dag.default_args["retry_delay"]
