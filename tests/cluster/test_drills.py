"""Failure drills on the cluster: a Celery worker SIGKILLed mid-load_group, the scheduler restarted."""

from __future__ import annotations

import time

import sqlalchemy as sa

from include.dialog.schema import prepared_conversations
from tests.cluster.conftest import DAYS, calls, engine_for_conn

DAY = DAYS[1]


def _forget_day(target: sa.Engine) -> None:
    with target.begin() as conn:
        conn.execute(
            sa.delete(prepared_conversations).where(prepared_conversations.c.call_id.like(f"C{DAY:%Y%m%d}%"))
        )


def _undisturbed(cluster, target: sa.Engine) -> dict[str, str]:
    """The day as an undisturbed run loads it (into an emptied day)."""
    _forget_day(target)
    run = cluster.wait_for_run("dialog_etl", cluster.trigger("dialog_etl", {"target_date": DAY.isoformat()}))
    assert run["state"] == "success"
    return calls(target, DAY)


def test_worker_killed_mid_load_group_is_retried_on_the_other_worker(cluster, world):
    target = engine_for_conn(cluster, "DIALOG_DST")
    expected = _undisturbed(cluster, target)
    assert len(expected) == world.expected(DAY)["conversations"]
    _forget_day(target)

    run_id = cluster.trigger("dialog_etl", {"target_date": DAY.isoformat()})
    victim = cluster.running_ti("dialog_etl", run_id, "load_group")
    worker = victim["hostname"].split("@")[0]
    cluster.kill_worker(worker)

    run = cluster.wait_for_run("dialog_etl", run_id, timeout=300)
    cluster.restart(worker)  # the tests after this one count on two workers
    tis = cluster.task_instances("dialog_etl", run_id)
    assert run["state"] == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    retried = next(t for t in tis if t["task_id"] == "load_group" and t["map_index"] == victim["map_index"])
    assert retried["try_number"] >= 2
    assert retried["hostname"].split("@")[0] != worker
    # No row lost or doubled: the day equals the undisturbed run's.
    assert calls(target, DAY) == expected
    with target.connect() as conn:
        assert conn.scalar(
            sa.select(sa.func.count())
            .select_from(prepared_conversations)
            .where(prepared_conversations.c.call_id.like(f"C{DAY:%Y%m%d}%"))
        ) == len(expected)


def test_scheduler_restarted_mid_run_the_run_completes(cluster, world):
    target = engine_for_conn(cluster, "DIALOG_DST")
    _forget_day(target)
    run_id = cluster.trigger("dialog_etl", {"target_date": DAY.isoformat()})
    deadline = time.monotonic() + 120
    while not any(t["state"] in ("running", "success") for t in cluster.task_instances("dialog_etl", run_id)):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    old = cluster.pids()["scheduler"]
    cluster.script("restart", "scheduler")
    assert cluster.pids()["scheduler"] != old
    run = cluster.wait_for_run("dialog_etl", run_id, timeout=300)
    assert run["state"] == "success"
    assert len(calls(target, DAY)) == world.expected(DAY)["conversations"]
