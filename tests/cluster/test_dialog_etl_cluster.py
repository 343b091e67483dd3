"""dialog_etl on the cluster: REST trigger, mapped tasks on both workers, the pool, XCom, backfill."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa

from include.common.db import engine_for
from include.dialog.schema import prepared_conversations
from sandbox.dagrun import run_dag
from sandbox.worlds.dialog import build_world
from tests.conftest import set_connection

DAYS = [dt.date(2024, 6, 1), dt.date(2024, 6, 2), dt.date(2024, 6, 3)]
GROUPS = 6
POOL_SLOTS = 2


@pytest.fixture(scope="module")
def world(cluster):
    """A few hundred utterances a day in the cluster's source database; dialog_etl unpaused."""
    source = engine_for_conn(cluster, "DIALOG_SRC")
    world = build_world(source, DAYS, groups=GROUPS, calls_per_group_day=4)
    cluster.ok(
        "PATCH",
        "/api/v2/pools/dialog_etl",
        params={"update_mask": "slots"},
        json={"pool": "dialog_etl", "slots": POOL_SLOTS, "include_deferred": False},
    )
    cluster.wait_for_dag("dialog_etl")
    return world


def engine_for_conn(cluster, name: str) -> sa.Engine:
    import json

    from sqlalchemy.engine import URL

    conn = json.loads(cluster.env[f"AIRFLOW_CONN_{name}"])
    return sa.create_engine(
        URL.create(
            "mysql+mysqldb",
            username=conn["login"],
            host=conn["host"],
            port=conn["port"],
            database=conn["schema"],
            query={"charset": "utf8mb4"},
        )
    )


def calls(engine: sa.Engine, day: dt.date | None = None) -> dict[str, str]:
    query = sa.select(prepared_conversations.c.call_id, prepared_conversations.c.dialog_text)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return {r.call_id: r.dialog_text for r in rows if day is None or r.call_id.startswith(f"C{day:%Y%m%d}")}


def max_overlap(intervals: list[tuple[str, str]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_rest_run_spreads_mapped_tasks_over_both_workers_within_the_pool(
    cluster, world, airflow_db, mariadb_conn, monkeypatch
):
    run_id = cluster.trigger("dialog_etl", {"target_date": DAYS[0].isoformat()})
    run = cluster.wait_for_run("dialog_etl", run_id)
    tis = cluster.task_instances("dialog_etl", run_id)
    assert run["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]

    loads = [t for t in tis if t["task_id"] == "load_group"]
    assert len(loads) == GROUPS and all(t["state"] == "success" for t in loads)
    hosts = {t["hostname"].split("@")[0] for t in loads}
    assert hosts == {"worker1", "worker2"}, [t["hostname"] for t in loads]
    assert {t["queue"] for t in tis} == {cluster.queue}
    assert {t["pool"] for t in loads} == {"dialog_etl"}
    assert max_overlap([(t["start_date"], t["end_date"]) for t in loads]) <= POOL_SLOTS

    summary = cluster.xcom("dialog_etl", run_id, "summary")
    expected = world.expected(DAYS[0])
    assert summary["inserted"] == expected["conversations"]

    # The same day with dag.test() in one process, from the same source into a target of its own.
    source = engine_for_conn(cluster, "DIALOG_SRC")
    set_connection(monkeypatch, "dialog_src", "mysql", **_conn_fields(cluster, "DIALOG_SRC"))
    target = engine_for(mariadb_conn("dialog_dst"))
    local = run_dag("dialog_etl", {"target_date": DAYS[0].isoformat()})
    assert local.state == "success", local.task_states
    assert summary == local.summary
    assert calls(engine_for_conn(cluster, "DIALOG_DST"), DAYS[0]) == calls(target, DAYS[0])
    del source


def _conn_fields(cluster, name: str) -> dict:
    import json

    conn = json.loads(cluster.env[f"AIRFLOW_CONN_{name}"])
    return {k: v for k, v in conn.items() if k != "conn_type"}


def test_backfill_create_runs_each_day_once(cluster, world):
    """`airflow backfill create` over three days: three backfill runs, each processing its own day."""
    cluster.script(
        "airflow",
        "backfill",
        "create",
        "--dag-id",
        "dialog_etl",
        "--from-date",
        "2024-06-01",
        "--to-date",
        "2024-06-04",
        "--max-active-runs",
        "3",
    )
    deadline = time.monotonic() + 420
    while True:
        runs = cluster.ok(
            "GET", "/api/v2/dags/dialog_etl/dagRuns", params={"run_type": "backfill", "limit": 50}
        )
        runs = runs["dag_runs"]
        if len(runs) == 3 and all(r["state"] in ("success", "failed") for r in runs):
            break
        assert time.monotonic() < deadline, [(r["dag_run_id"], r["state"]) for r in runs]
        time.sleep(3)
    assert all(r["state"] == "success" for r in runs), [(r["dag_run_id"], r["state"]) for r in runs]
    summaries = sorted(
        (cluster.xcom("dialog_etl", r["dag_run_id"], "summary") for r in runs), key=lambda s: s["target_date"]
    )
    assert [s["target_date"] for s in summaries] == [d.isoformat() for d in DAYS]
    for day, summary in zip(DAYS, summaries, strict=True):
        expected = world.expected(day)["conversations"]
        assert summary["conversations_total"] == expected
        assert summary["inserted"] + summary["skipped_existing"] == expected
    target = engine_for_conn(cluster, "DIALOG_DST")
    assert {day: len(calls(target, day)) for day in DAYS} == {
        day: world.expected(day)["conversations"] for day in DAYS
    }
