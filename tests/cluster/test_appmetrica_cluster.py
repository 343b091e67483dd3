"""appmetrica_export on the cluster: the exports wait in the triggerer, not on a worker, and the pool
keeps AppMetrica's limit of three queued exports per application.

Five resources are exported at once into a pool of three slots that counts deferred tasks
(``airflow_settings.yaml``). While the simulator answers 202, the REST API shows the export task
instances ``deferred`` (no worker process holds them); never more than three are queued, deferred or
running at a time, the simulator never has more than three exports waiting and never answers 429, and
the run loads every resource's day; the tables hold exactly the rows the load log records.
"""

from __future__ import annotations

import datetime as dt
import time

import sqlalchemy as sa

from include.dwh.config import APPMETRICA_POOL
from tests.cluster.conftest import engine_for_conn

DAG = "appmetrica_export"
DAY = "2024-02-05"
RESOURCES = {
    "events": ["event_name", "event_datetime", "event_json", "session_id", "appmetrica_device_id", "os_name",
               "country_iso_code", "city", "profile_id"],
    "installations": ["install_datetime", "appmetrica_device_id", "os_name", "device_model", "operator_name"],
    "sessions_starts": ["session_start_datetime", "session_id", "appmetrica_device_id"],
    "crashes": ["crash_datetime", "crash_id", "appmetrica_device_id"],
    "revenue_events": ["revenue_datetime", "revenue_price", "revenue_currency", "appmetrica_device_id"],
}  # fmt: skip
#: Export task states that take one of the pool's slots (deferred ones count: include_deferred).
IN_POOL = {"queued", "running", "deferred"}


def test_exports_wait_deferred_and_the_pool_keeps_three_queued(cluster):
    simulator = cluster.appmetrica
    statuses: list[int] = []
    dispatch = simulator.api.dispatch

    def recording(request):
        response = dispatch(request)
        statuses.append(response.status)
        return response

    simulator.api.dispatch = recording
    pool = cluster.ok("GET", f"/api/v2/pools/{APPMETRICA_POOL}")
    assert (pool["slots"], pool["include_deferred"]) == (3, True)
    cluster.wait_for_dag(DAG)
    _fail_the_scheduled_run(cluster)
    conf = {"day": DAY, "resources": RESOURCES, "poll_interval_seconds": 0.5, "timeout_seconds": 300}
    try:
        run_id = cluster.trigger(DAG, conf)
        most_in_pool = most_deferred = most_waiting = 0
        deadline = time.monotonic() + 300
        while (run := cluster.ok("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}"))["state"] not in (
            "success",
            "failed",
        ):
            assert time.monotonic() < deadline, f"{run_id} still {run['state']}"
            states = [ti["state"] for ti in cluster.task_instances(DAG, "~") if ti["task_id"] == "export"]
            most_in_pool = max(most_in_pool, sum(state in IN_POOL for state in states))
            most_deferred = max(most_deferred, states.count("deferred"))
            most_waiting = max(most_waiting, simulator.queued(simulator.application_id))
            time.sleep(0.2)
    finally:
        simulator.api.dispatch = dispatch

    tis = cluster.task_instances(DAG, run_id)
    assert run["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    exports = [t for t in tis if t["task_id"] == "export"]
    assert len(exports) == len(RESOURCES) and all(t["try_number"] == 1 for t in exports)
    assert most_deferred == 3, "three exports should have waited in the triggerer at once"
    assert most_in_pool == 3 and most_waiting <= 3
    assert 202 in statuses and 429 not in statuses

    summary = cluster.xcom(DAG, run_id, "summary")
    assert set(summary["sources"]) == set(RESOURCES)
    assert summary["sources"]["events"]["rows"]["events_part"] == 96
    # Each (resource, day) load is in the load log once, and the tables hold exactly the logged rows.
    dwh = engine_for_conn(cluster, "DWH_DB")
    with dwh.connect() as conn:
        logged = dict(
            conn.execute(
                sa.text(
                    "SELECT source || '/' || table_name, rows FROM dwh_export_loads"
                    " WHERE export = 'appmetrica' AND period = :day"
                ),
                {"day": DAY},
            ).all()
        )
        per_table = dict(
            conn.execute(
                sa.text("SELECT table_name, sum(rows) FROM dwh_export_loads GROUP BY table_name")
            ).all()
        )
        for table, rows in per_table.items():
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == rows, table
    dwh.dispose()
    assert logged == {
        f"{resource}/{table}": rows
        for resource, result in summary["sources"].items()
        for table, rows in result["rows"].items()
    }


def _fail_the_scheduled_run(cluster) -> None:
    """Unpausing starts the DAG's latest scheduled run (yesterday, default params: 30 s between polls),
    which ``max_active_runs=1`` would make the test's run wait for: mark it failed, as an operator
    would, and wait until the exports it queued at AppMetrica are ready, so the pool starts empty."""
    due = cluster.ok("GET", f"/api/v2/dags/{DAG}").get("next_dagrun_run_after")
    if not (due and dt.datetime.fromisoformat(due) <= dt.datetime.now(dt.UTC)):
        return
    deadline = time.monotonic() + 60
    while not (runs := cluster.ok("GET", f"/api/v2/dags/{DAG}/dagRuns")["dag_runs"]):
        assert time.monotonic() < deadline, "the due scheduled run was not created"
        time.sleep(0.2)
    for run in runs:
        cluster.ok("PATCH", f"/api/v2/dags/{DAG}/dagRuns/{run['dag_run_id']}", json={"state": "failed"})
    simulator = cluster.appmetrica
    while simulator.queued(simulator.application_id):
        assert time.monotonic() < deadline, "AppMetrica exports still queued"
        time.sleep(0.2)
