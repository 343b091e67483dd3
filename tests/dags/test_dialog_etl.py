"""dialog_etl end to end with dag.test(): the embedded SQLite defaults and real MariaDB."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from include.common.db import engine_for
from include.dialog.days import SHANGHAI
from include.dialog.schema import prepared_conversation_rejects, prepared_conversations
from sandbox.dagrun import load_dag, run_dag
from sandbox.worlds.dialog import build_world

DAY = dt.date(2024, 6, 1)
#: A plain call, one handed over to another group, one that runs past midnight, one whose seq
#: numbers disagree with time, and one with a rejected utterance.
KNOWN_CALLS = [f"C20240601-{c}" for c in ("G01-00007", "G02-00001", "G03-00000", "G01-00005", "G02-00003")]


def _count(engine, table, **where):
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        return conn.scalar(query)


def test_sqlite_defaults_run_and_rerun(sqlite_conn):
    source, target = engine_for(sqlite_conn("dialog_src")), engine_for(sqlite_conn("dialog_dst"))
    world = build_world(source, [DAY], groups=3, calls_per_group_day=10)
    expected = world.expected(DAY)

    first = run_dag("dialog_etl", {"target_date": "2024-06-01"})
    assert first.state == "success", first.task_states
    assert first.summary == {
        "target_date": "2024-06-01",
        "groups_processed": 3,
        "conversations_total": expected["conversations"],
        "inserted": expected["conversations"],
        "skipped_existing": 0,
        "path": "streaming",  # SQLite files: never pushed down
    }
    assert {k for k in first.task_states if k.startswith("load_group[")} == {
        f"load_group[{i}]" for i in range(3)
    }
    assert _count(target, prepared_conversations) == expected["conversations"]
    assert _count(target, prepared_conversation_rejects, etl_run_id=first.run_id) == len(world.bad_row_ids)

    # A few known calls hold exactly the utterances the synthetic world generated for them.
    with target.connect() as conn:
        stored = {
            r.call_id: r
            for r in conn.execute(
                sa.select(prepared_conversations).where(prepared_conversations.c.call_id.in_(KNOWN_CALLS))
            )
        }
    assert set(stored) == set(KNOWN_CALLS)
    for call_id, row in stored.items():
        assert json.loads(row.turns_json) == world.turns(call_id)
        assert row.dialog_text == world.dialog_text(call_id)

    second = run_dag("dialog_etl", {"target_date": "2024-06-01"})
    assert second.summary["inserted"] == 0
    assert second.summary["skipped_existing"] == expected["conversations"]
    assert _count(target, prepared_conversations) == expected["conversations"]
    # The second run found the same bad rows and stored none of them again.
    assert _count(target, prepared_conversation_rejects) == len(world.bad_row_ids)
    assert _count(target, prepared_conversation_rejects, etl_run_id=second.run_id) == 0


@pytest.mark.parametrize(("load_path", "path"), [("auto", "pushdown"), ("streaming", "streaming")])
def test_mariadb_source_and_target_in_different_databases(mariadb_conn, load_path, path):
    """One server and login: pushed down unless the load_path param forces streaming; the same rows."""
    source, target = engine_for(mariadb_conn("dialog_src")), engine_for(mariadb_conn("dialog_dst"))
    world = build_world(
        source, [DAY, DAY + dt.timedelta(days=1)], groups=4, calls_per_group_day=15, invalid_bytes=False
    )

    outcome = run_dag("dialog_etl", {"target_date": "2024-06-02", "load_path": load_path})
    assert outcome.state == "success", outcome.task_states
    assert outcome.summary["path"] == path and "streaming_fallbacks" not in outcome.summary
    assert outcome.summary["inserted"] == world.expected(dt.date(2024, 6, 2))["conversations"]
    with target.connect() as conn:
        for call_id, turns_json, dialog_text in conn.execute(
            sa.select(
                prepared_conversations.c.call_id,
                prepared_conversations.c.turns_json,
                prepared_conversations.c.dialog_text,
            )
        ):
            assert json.loads(turns_json) == world.turns(call_id)
            assert dialog_text == world.dialog_text(call_id)
    with target.connect() as conn:
        days = conn.execute(sa.select(prepared_conversations.c.dialog_date).distinct()).scalars().all()
    assert days == [dt.date(2024, 6, 2)]
    with source.connect() as conn:  # the source is only read
        assert not conn.execute(sa.text("SHOW TABLES LIKE 'prepared%'")).all()


def test_manual_run_without_target_date_processes_shanghai_yesterday(sqlite_conn):
    source = engine_for(sqlite_conn("dialog_src"))
    sqlite_conn("dialog_dst")
    yesterday = dt.datetime.now(SHANGHAI).date() - dt.timedelta(days=1)
    world = build_world(source, [yesterday], groups=2, calls_per_group_day=6)
    outcome = run_dag("dialog_etl", {})
    assert outcome.summary["target_date"] == yesterday.isoformat()
    assert outcome.summary["inserted"] == world.expected(yesterday)["conversations"]


def test_day_without_data_gives_a_zero_summary(sqlite_conn):
    build_world(engine_for(sqlite_conn("dialog_src")), [DAY], groups=1, calls_per_group_day=5)
    sqlite_conn("dialog_dst")
    outcome = run_dag("dialog_etl", {"target_date": "2023-01-01"})
    assert outcome.state == "success"
    assert outcome.summary == {
        "target_date": "2023-01-01",
        "groups_processed": 0,
        "conversations_total": 0,
        "inserted": 0,
        "skipped_existing": 0,
        "path": "streaming",
    }


@pytest.mark.parametrize("bad", ["2024-13-01", "2024-02-30", "20240601", "yesterday"])
def test_target_date_is_validated_before_the_run_starts(bad, sqlite_conn):
    from airflow.sdk.exceptions import ParamValidationError

    dag = load_dag("dialog_etl")
    with pytest.raises(ParamValidationError, match="target_date"):
        dag.test(run_conf={"target_date": bad})


def test_a_target_of_another_shape_fails_the_run_before_anything_is_written(sqlite_conn):
    """An existing prepared_conversations without the pipeline's columns fails find_groups at once
    (no retry can fix it), before any load: the table keeps its rows and no rejects table appears."""
    build_world(engine_for(sqlite_conn("dialog_src")), [DAY], groups=2, calls_per_group_day=5)
    target = engine_for(sqlite_conn("dialog_dst"))
    with target.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE prepared_conversations (id INTEGER PRIMARY KEY, call_id VARCHAR(64) NOT NULL UNIQUE,"
            " conversation TEXT NOT NULL)"
        )
        conn.exec_driver_sql("INSERT INTO prepared_conversations (call_id, conversation) VALUES ('C0', 'x')")

    outcome = run_dag("dialog_etl", {"target_date": "2024-06-01"})
    assert outcome.state == "failed"
    assert outcome.task_states["find_groups"] == "failed"
    assert not any(k.startswith("load_group") and v == "success" for k, v in outcome.task_states.items())
    with target.connect() as conn:
        assert conn.exec_driver_sql("SELECT call_id, conversation FROM prepared_conversations").all() == [
            ("C0", "x")
        ]
        assert not sa.inspect(conn).has_table("prepared_conversation_rejects")
