"""Failure drill on the cluster: a Celery worker SIGKILLed in the middle of a Callio tenant's fetch.

The baseline is an undisturbed cluster run of the same simulated data into an empty warehouse: the
scheduled run that unpausing callio_etl starts when one is due (catchup=False still runs the latest
schedule time), or else one triggered here. The drill empties the warehouse, slows the simulator down
so that a fetch takes many slow pages, kills the worker running one tenant's ``fetch_calls`` once that
tenant's pages are being served, and expects the retry (on the other worker) to leave customers, calls
and their checkpoints in ``update_log`` exactly as the undisturbed run did: no lost or doubled rows.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import duckdb

DAG = "callio_etl"
#: Seconds the simulator waits before answering each request while the drill's fetch runs.
SLOW_S = 0.4
#: update_log without what differs from run to run (run id, load time, the window's ends around "now").
CHECKPOINTS = (
    "SELECT table_name, tenant, mode, rows_loaded, max_updateTime, detail FROM update_log"
    " WHERE table_name IN ('customer', 'call_log') ORDER BY ALL"
)


def _reset_warehouse(cluster) -> None:
    for path in cluster.home.glob("callio.duckdb*"):
        path.unlink()


def _tables(cluster) -> dict[str, list[tuple]]:
    with duckdb.connect(str(cluster.home / "callio.duckdb"), read_only=True) as conn:
        tables = {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in ("customer", "call_log")
        }
        tables["update_log"] = conn.execute(CHECKPOINTS).fetchall()
    return tables


def _undisturbed(cluster) -> dict[str, list[tuple]]:
    """Unpause callio_etl and take the tables of its first run, scheduled or (when none is due) manual."""
    _reset_warehouse(cluster)
    cluster.wait_for_dag(DAG)
    due = cluster.ok("GET", f"/api/v2/dags/{DAG}").get("next_dagrun_run_after")
    if due and dt.datetime.fromisoformat(due) <= dt.datetime.now(dt.UTC):
        deadline = time.monotonic() + 60
        while not (runs := cluster.ok("GET", f"/api/v2/dags/{DAG}/dagRuns")["dag_runs"]):
            assert time.monotonic() < deadline, "the due scheduled run was not created"
            time.sleep(0.5)
        run_id = runs[0]["dag_run_id"]
    else:
        run_id = cluster.trigger(DAG, {"job": "all"})
    run = cluster.wait_for_run(DAG, run_id)
    assert run["state"] == "success"
    return _tables(cluster)


def test_worker_killed_mid_tenant_fetch_is_retried_and_the_warehouse_matches(cluster):
    simulator = cluster.callio
    expected = _undisturbed(cluster)
    assert expected["call_log"] and expected["customer"]
    _reset_warehouse(cluster)

    pages: dict[tuple[str, str], int] = {}
    paging = threading.Condition()

    def count(tenant: str, resource: str, page: int) -> None:
        with paging:
            pages[tenant, resource] = pages.get((tenant, resource), 0) + 1
            paging.notify_all()

    simulator.before_list = count
    simulator.faults.latency_s = SLOW_S
    try:
        run_id = cluster.trigger(DAG, {"job": "all"})
        victim = cluster.running_ti(DAG, run_id, "fetch_calls")
        # fetch_calls is mapped over the tenants in the order of the connection's accounts
        tenant = simulator.accounts()[victim["map_index"]]["tenant"]
        with paging:  # mid-fetch: the tenant's call pages are being served
            assert paging.wait_for(lambda: pages.get((tenant, "call"), 0) >= 2, timeout=60), (victim, pages)
        worker = victim["hostname"].split("@")[0]
        cluster.kill_worker(worker)
    finally:
        simulator.faults.latency_s = 0.0
        simulator.before_list = None

    run = cluster.wait_for_run(DAG, run_id)
    cluster.restart(worker)  # the tests after this one count on two workers
    tis = cluster.task_instances(DAG, run_id)
    assert run["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    retried = next(t for t in tis if t["task_id"] == "fetch_calls" and t["map_index"] == victim["map_index"])
    assert retried["try_number"] == 2
    assert retried["hostname"].split("@")[0] != worker
    # No row lost or doubled, every checkpoint where the undisturbed run put it.
    assert _tables(cluster) == expected
