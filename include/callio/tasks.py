"""Entry points the callio_etl DAG calls: plan, fetch per tenant, commit per table, report, summary.

The checkpoint travels like this: ``plan`` reads each tenant's checkpoint from ``update_log`` and turns
it into a window, ``[from, to, checkpoint]`` (XCom); ``fetch_*`` fetches exactly that window and stages it, returning what it
covered (XCom); the commit task merges the staged rows of the tenants that fetched and only then
writes their new checkpoints to ``update_log``. A run that dies anywhere before the commit leaves the
checkpoints where they were, so the next run fetches the same window again; the MERGE makes that harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from include.callio import schema
from include.callio.config import WAREHOUSE_CONN_ID, CallioConfig, load_config
from include.callio.params import parse_time_ms
from include.callio.schedule import CallioConfigError
from include.callio.transform import business_date

log = logging.getLogger(__name__)

JOBS = ("customer", "call", "staffgroup")
COMMIT_TASKS = {"customer": "merge_customers", "call": "append_calls", "staffgroup": "merge_staffgroup"}
# The API resource and the warehouse table whose update_log rows hold each fetched job's checkpoint.
WINDOWED = {"customer": ("customer", schema.CUSTOMER.name), "call": ("call", schema.CALL_LOG.name)}
# Rows per staging load. BigQuery allows about 1,500 load jobs per table per day, and every DuckDB
# append pays a fixed cost (open, checkpoint, close): 100,000 rows stage a million in about 4 s where
# 50,000 take 6 to 7. The price is the chunk held in the fetch task's memory, about 200 MB of rows.
STAGE_CHUNK_ROWS = 100_000
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


def open_warehouse():
    from include.callio.warehouse import open_warehouse as open_from_connection

    return open_from_connection(WAREHOUSE_CONN_ID)


# ---------------------------------------------------------------------------------------------- plan


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


def plan_task(params: dict[str, Any], run_after: dt.datetime, run_type: str, staff_group_time: str) -> dict:
    """Jobs, tenants and each tenant's window; creates the warehouse tables on first use."""
    config = load_config()
    jobs = jobs_for(params["job"], run_after, staff_group_time, run_type=run_type)
    now = now_ms()
    backfill = backfill_window(params, now)
    warehouse = open_warehouse()
    warehouse.ensure_schema()
    windows: dict[str, dict[str, list[int]]] = {}
    for job in jobs:
        if job not in WINDOWED:
            continue
        checkpoints = {} if backfill else warehouse.checkpoints(WINDOWED[job][1])
        windows[job] = {
            tenant: [
                *(backfill or incremental_window(checkpoints.get(tenant), now, config)),
                checkpoints.get(tenant),
            ]
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


# --------------------------------------------------------------------------------------------- fetch


def _update(table: str, tenant: str, mode: str, run_id: str, **fields: Any) -> dict:
    return {"table_name": table, "tenant": tenant, "mode": mode, "run_id": run_id, **fields}


def _chunks(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def fetch_task(job: str, plan: dict, tenant: str, run_id: str) -> dict:
    """Fetch one tenant's records for ``job`` and stage them; a failed login is logged and fails the task."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.callio.api import CallioClient, CallioLoginError

    if job not in plan["jobs"]:
        raise AirflowSkipException(f"job {job} is not part of this run ({', '.join(plan['jobs'])})")
    config = load_config()
    warehouse = open_warehouse()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per page would drown the task log
    with CallioClient(config.account(tenant), config.api) as client:
        try:
            client.login()
        except CallioLoginError as exc:
            tables = [WINDOWED[job][1]] if job in WINDOWED else [schema.STAFF.name, schema.GROUP.name]
            warehouse.log_updates(
                [
                    _update(t, tenant, schema.ERROR_LOGIN, run_id, rows_loaded=0, detail=str(exc))
                    for t in tables
                ]
            )
            raise AirflowFailException(f"tenant {tenant}: {exc}") from None
        if job == "staffgroup":
            return _fetch_snapshots(client, warehouse, tenant, run_id)
        return _fetch_window(client, warehouse, job, plan, tenant, run_id)


def _fetch_window(client, warehouse, job: str, plan: dict, tenant: str, run_id: str) -> dict:
    from include.callio import transform

    resource, table = WINDOWED[job]
    window_from, window_to, checkpoint = plan["windows"][job][tenant]
    row_fn, stage = (
        (transform.customer_row, warehouse.stage_customers)
        if job == "customer"
        else (transform.call_row, warehouse.stage_calls)
    )
    warehouse.clear_staging(job, [tenant])  # rows a failed attempt left behind
    fetch = client.fetch_desc(resource, window_from, window_to, checkpoint_ms=checkpoint)
    staged = rejected = 0

    def rows() -> Iterator[dict]:
        nonlocal rejected
        for records in fetch:
            good, bad = transform.transform_all(records, tenant, row_fn)
            if bad:
                rejected += len(bad)
                warehouse.reject([{**r, "run_id": run_id} for r in bad])
            yield from good

    for chunk in _chunks(rows(), STAGE_CHUNK_ROWS):
        staged += stage(tenant, chunk)
    stats = fetch.stats
    warehouse.log_updates(
        [
            _update(
                table,
                tenant,
                schema.STAGED,
                run_id,
                rows_loaded=staged,
                window_from=stats.window_from,
                window_to=stats.window_to,
            )
        ]
    )
    result = {
        "tenant": tenant,
        "job": job,
        "window": {"from": iso(stats.window_from), "to": iso(stats.window_to)},
        "window_ms": [stats.window_from, stats.window_to],
        "fetched": stats.records,
        "staged": staged,
        "rejected": rejected,
        "max_time": stats.max_time,
        "capped": stats.capped,
        "requests": stats.requests,
    }
    log.info("callio %s %s: %s", job, tenant, result)
    return result


def _fetch_snapshots(client, warehouse, tenant: str, run_id: str) -> dict:
    from include.callio import transform

    warehouse.clear_staging("staffgroup", [tenant])
    counts = {}
    for resource, row_fn, stage in (
        ("user", transform.staff_row, warehouse.stage_staff),
        ("user-group", transform.group_row, warehouse.stage_groups),
    ):
        good, bad = transform.transform_all(client.list_all(resource), tenant, row_fn)
        if bad:
            warehouse.reject([{**r, "run_id": run_id} for r in bad])
        counts[resource] = {"staged": stage(tenant, good), "rejected": len(bad)}
    result = {"tenant": tenant, "job": "staffgroup", "staff": counts["user"], "group": counts["user-group"]}
    log.info("callio staffgroup %s: %s", tenant, result)
    return result


# -------------------------------------------------------------------------------------------- commit


def commit_task(job: str, plan: dict, fetched: list[dict | None], run_id: str) -> dict:
    """Merge what the tenants staged, once per table, then commit their checkpoints."""
    if job not in plan["jobs"]:
        return {"job": job, "ran": False, "tenants": {}}
    results = {r["tenant"]: r for r in fetched if r}
    tenants = sorted(results)
    warehouse = open_warehouse()
    if job == "staffgroup":
        staff = warehouse.merge_staff(tenants)
        groups = warehouse.replace_groups(tenants)
        warehouse.log_updates(
            [
                _update(
                    schema.STAFF.name,
                    t,
                    schema.MERGED if staff.get(t) else schema.NOOP,
                    run_id,
                    rows_loaded=staff.get(t, 0),
                )
                for t in tenants
            ]
            + [
                _update(schema.GROUP.name, t, schema.TRUNCATE, run_id, rows_loaded=groups.get(t, 0))
                for t in tenants
            ]
        )
        per_tenant = {t: {"staff_merged": staff.get(t, 0), "groups": groups.get(t, 0)} for t in tenants}
        return {"job": job, "ran": True, "tenants": per_tenant}
    table = WINDOWED[job][1]
    if job == "customer":
        loaded, mode = warehouse.merge_customers(tenants), schema.MERGED
    else:
        loaded, mode = warehouse.append_calls(tenants), schema.APPEND
    entries, per_tenant = [], {}
    for tenant in tenants:
        result, count = results[tenant], loaded.get(tenant, 0)
        checkpoint = None if plan["backfill"] else result["max_time"]
        entries.append(
            _update(
                table,
                tenant,
                mode if count else schema.NOOP,
                run_id,
                rows_loaded=count,
                max_updateTime=checkpoint,
                window_from=result["window_ms"][0],
                window_to=result["window_ms"][1],
            )
        )
        per_tenant[tenant] = {"fetched": result["fetched"], "loaded": count, "window": result["window"]}
    warehouse.log_updates(entries)
    return {"job": job, "ran": True, "tenants": per_tenant}


# ------------------------------------------------------------------------------------ report, summary


def report_days(plan: dict, today: dt.date) -> tuple[dt.date, dt.date]:
    """The business days this run may have changed: from its earliest window start to today."""
    starts = [window[0] for windows in plan["windows"].values() for window in windows.values()]
    if not starts:
        return today - dt.timedelta(days=REPORT_DAYS_WITHOUT_WINDOW), today
    return business_date(min(starts)), max(
        today, *(business_date(w[1]) for ws in plan["windows"].values() for w in ws.values())
    )


def report_task(plan: dict) -> dict:
    """Refresh the report for the days the run touched; prune ``update_log`` when a retention is set."""
    retention = load_config().run.update_log_retention_days
    warehouse = open_warehouse()
    since, until = report_days(plan, business_date(now_ms()))
    rows = warehouse.refresh_staff_daily(since, until)
    pruned = warehouse.prune_update_log(retention) if retention else 0
    return {"since": since.isoformat(), "until": until.isoformat(), "rows": rows, "update_log_pruned": pruned}


def summary_task(plan: dict, commits: dict[str, dict | None], report: dict | None) -> dict:
    """Per job and tenant what loaded; tenants missing from a job that ran did not load."""
    failed: dict[str, list[str]] = {}
    for job in plan["jobs"]:
        loaded = (commits.get(job) or {}).get("tenants", {})
        missing = [t for t in plan["tenants"] if t not in loaded]
        if missing:
            failed[job] = missing
    summary = {
        "jobs": plan["jobs"],
        "backfill": plan["backfill"],
        "tenants": plan["tenants"],
        **{job: (commits.get(job) or {}).get("tenants") for job in plan["jobs"]},
        "report": report,
        "failed": failed,
    }
    log.info("callio_etl: %s", summary)
    return summary


def check_tenants_task(summary: dict) -> None:
    """Fail the run, visibly, when a tenant did not load (its own task failed earlier)."""
    from airflow.sdk.exceptions import AirflowFailException

    if summary["failed"]:
        detail = "; ".join(f"{job}: {', '.join(tenants)}" for job, tenants in summary["failed"].items())
        raise AirflowFailException(
            f"tenants not loaded ({detail}); the others were merged. See their fetch tasks and update_log "
            "(mode ERROR_LOGIN for a failed login)."
        )
