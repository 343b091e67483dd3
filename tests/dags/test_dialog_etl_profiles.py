"""dialog_etl follows the AICO_HOST Variable: two real MariaDB databases, one per profile."""

from __future__ import annotations

import datetime as dt
import os

import sqlalchemy as sa

from include.common.db import engine_for
from include.dialog.schema import prepared_conversations
from sandbox.dagrun import run_dag
from sandbox.worlds.dialog import build_world

DAY = dt.date(2024, 6, 1)
TEST_HOST, PROD_HOST = "20.17.0.1", "20.17.0.2"


def _calls(engine) -> int:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("prepared_conversations"):
            return 0
        return conn.scalar(sa.select(sa.func.count()).select_from(prepared_conversations))


def _profile_database(mariadb_conn, monkeypatch, profile: str) -> sa.Engine:
    """One MariaDB database holding source and target of a profile, as ``<PROFILE>_URL`` imports."""
    target = mariadb_conn(f"dialog_dst_{profile}")
    monkeypatch.setenv(
        f"AIRFLOW_CONN_DIALOG_SRC_{profile.upper()}", os.environ[f"AIRFLOW_CONN_{target.upper()}"]
    )
    return engine_for(target)


def test_only_the_variable_changes_and_the_run_switches_databases(mariadb_conn, sqlite_conn, monkeypatch):
    default_src, default_dst = engine_for(sqlite_conn("dialog_src")), engine_for(sqlite_conn("dialog_dst"))
    test_db = _profile_database(mariadb_conn, monkeypatch, "test")
    prod_db = _profile_database(mariadb_conn, monkeypatch, "prod")
    test_world = build_world(test_db, [DAY], groups=2, calls_per_group_day=4, invalid_bytes=False)
    prod_world = build_world(prod_db, [DAY], groups=3, calls_per_group_day=7, invalid_bytes=False)
    build_world(default_src, [DAY], groups=1, calls_per_group_day=2)
    monkeypatch.setenv("AIRFLOW_VAR_AICO_HOST_TEST", TEST_HOST)
    monkeypatch.setenv("AIRFLOW_VAR_AICO_HOST_PROD", PROD_HOST)

    monkeypatch.setenv("AIRFLOW_VAR_AICO_HOST", TEST_HOST)
    test_run = run_dag("dialog_etl", {"target_date": "2024-06-01"})
    assert test_run.state == "success", test_run.task_states
    assert test_run.summary["inserted"] == test_world.expected(DAY)["conversations"]
    assert _calls(test_db) == test_world.expected(DAY)["conversations"]
    assert _calls(prod_db) == 0 and _calls(default_dst) == 0
    assert _profile_xcom(test_run.run_id) == {
        "profile": "TEST",
        "source_conn_id": "dialog_src_test",
        "target_conn_id": "dialog_dst_test",
        "aico_host": TEST_HOST,
    }

    monkeypatch.setenv("AIRFLOW_VAR_AICO_HOST", PROD_HOST)
    prod_run = run_dag("dialog_etl", {"target_date": "2024-06-01"})
    assert prod_run.summary["inserted"] == prod_world.expected(DAY)["conversations"]
    assert _calls(prod_db) == prod_world.expected(DAY)["conversations"]
    assert _calls(test_db) == test_world.expected(DAY)["conversations"]
    assert _profile_xcom(prod_run.run_id)["profile"] == "PROD"

    monkeypatch.setenv("AIRFLOW_VAR_AICO_HOST", "10.0.0.1")  # neither: the default connections
    default_run = run_dag("dialog_etl", {"target_date": "2024-06-01"})
    assert _profile_xcom(default_run.run_id)["profile"] == "DEFAULT"
    assert _calls(default_dst) == default_run.summary["inserted"] > 0


def test_a_profile_without_its_target_connection_fails_before_anything(sqlite_conn, monkeypatch):
    sqlite_conn("dialog_src"), sqlite_conn("dialog_dst")
    monkeypatch.setenv("AIRFLOW_VAR_AICO_HOST_TEST", TEST_HOST)
    monkeypatch.setenv("AIRFLOW_VAR_AICO_HOST", TEST_HOST)
    outcome = run_dag("dialog_etl", {"target_date": "2024-06-01"})
    assert outcome.state == "failed"
    assert outcome.task_states["resolve_profile"] == "failed"
    assert outcome.task_states["find_groups"] != "success"


def _profile_xcom(run_id: str) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return (
            session.scalars(
                XComModel.get_many(
                    run_id=run_id, dag_ids="dialog_etl", task_ids="resolve_profile", key="return_value"
                )
            )
            .one()
            .value
        )
