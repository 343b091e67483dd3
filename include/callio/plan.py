"""What a callio_etl run does: its jobs, its tenants and each tenant's window.

The checkpoint travels like this: the plan reads each tenant's checkpoint from ``update_log`` and turns
it into a window, ``[from, to, checkpoint]`` (XCom); each fetch task fetches exactly that window and
stages it (:mod:`include.callio.etl`); the commit merges the staged rows of the tenants that fetched and
only then writes their new checkpoints. A run that dies anywhere before the commit leaves the
checkpoints where they were, so the next run fetches the same window again; the MERGE makes that
harmless. Pure functions but :func:`make_plan`, which reads the checkpoints it is handed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from include.callio import schema
from include.callio.config import CallioConfig, CallioConfigError
from include.callio.params import parse_time_ms
from include.callio.transform import business_date

log = logging.getLogger(__name__)

JOBS = ("customer", "call", "staffgroup")
# The API resource and the warehouse table whose update_log rows hold each fetched job's checkpoint.
WINDOWED = {"customer": ("customer", schema.CUSTOMER.name), "call": ("call", schema.CALL_LOG.name)}
TIMETABLE_RUNS = ("scheduled", "backfill")
"""Run types that come from the schedule (a backfill re-creates scheduled runs); any other run was
started by hand."""
REPORT_DAYS_WITHOUT_WINDOW = 7  # a staff/group-only run refreshes the last week (names may have changed)
DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int | None) -> str | None:
    return (
        None
        if ms is None
        else dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
    )


def jobs_for(job: str, run_after: dt.datetime, staff_group_time: str, *, run_type: str) -> list[str]:
    """The jobs a run does. ``auto``: in a run the timetable made (:data:`TIMETABLE_RUNS`), customers
    and calls, plus staff and groups when the run is the staff/group slot; in a run started by hand
    (the UI, the CLI, the REST API), every job, as the original service did when run by hand."""
    if job == "all":
        return list(JOBS)
    if job in JOBS:
        return [job]
    if job != "auto":
        raise CallioConfigError(f"job must be auto, all, customer, call or staffgroup, not {job!r}")
    if str(getattr(run_type, "value", run_type)) not in TIMETABLE_RUNS:
        return list(JOBS)
    slot = run_after.astimezone(dt.UTC).strftime("%H:%M")
    return ["customer", "call", *(["staffgroup"] if slot == staff_group_time else [])]


def backfill_window(params: dict[str, Any], now: int) -> tuple[int, int] | None:
    """``from`` / ``to`` as a window, or None for an incremental run."""
    start, end = params.get("from"), params.get("to")
    if not start:
        if end:
            raise CallioConfigError("param to needs param from")
        return None
    window = (parse_time_ms(start, "from"), parse_time_ms(end, "to") if end else now)
    if window[0] >= window[1]:
        raise CallioConfigError("param from must be before param to")
    return window


def incremental_window(checkpoint: int | None, now: int, config: CallioConfig) -> tuple[int, int]:
    if checkpoint is None:
        return now - config.run.days_to_fetch_if_empty * DAY_MS, now
    return max(0, checkpoint - config.run.overlap_ms), now


def make_plan(
    config: CallioConfig,
    params: dict[str, Any],
    run_after: dt.datetime,
    run_type: str,
    staff_group_time: str,
    checkpoints: Callable[[str], dict[str, int]],
    now: int,
) -> dict:
    """Jobs, tenants and each tenant's window; ``checkpoints(table)`` gives each tenant's checkpoint
    (read only for an incremental run)."""
    jobs = jobs_for(params["job"], run_after, staff_group_time, run_type=run_type)
    backfill = backfill_window(params, now)
    windows: dict[str, dict[str, list[int]]] = {}
    for job in jobs:
        if job not in WINDOWED:
            continue
        stored = {} if backfill else checkpoints(WINDOWED[job][1])
        windows[job] = {
            tenant: [*(backfill or incremental_window(stored.get(tenant), now, config)), stored.get(tenant)]
            for tenant in config.tenants
        }
    plan = {"jobs": jobs, "tenants": config.tenants, "backfill": backfill is not None, "windows": windows}
    log.info(
        "callio_etl plan: job %s in a %s run: jobs %s, tenants %s, backfill %s",
        params["job"],
        getattr(run_type, "value", run_type),
        jobs,
        config.tenants,
        plan["backfill"],
    )
    return plan


def report_days(plan: dict, today: dt.date) -> tuple[dt.date, dt.date]:
    """The business days this run may have changed: from its earliest window start to today."""
    starts = [window[0] for windows in plan["windows"].values() for window in windows.values()]
    if not starts:
        return today - dt.timedelta(days=REPORT_DAYS_WITHOUT_WINDOW), today
    return business_date(min(starts)), max(
        today, *(business_date(w[1]) for ws in plan["windows"].values() for w in ws.values())
    )
