"""dialog_etl on the cluster: REST trigger, mapped tasks on both workers, the pool, XCom, backfill."""

from __future__ import annotations

import time

from include.common.db import engine_for
from sandbox.dagrun import run_dag
from tests.cluster.conftest import DAYS, GROUPS, POLL_S, POOL_SLOTS, calls, engine_for_conn
from tests.conftest import set_connection


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
        time.sleep(POLL_S)
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
