"""The work of a callio_etl run, without Airflow: fetch and stage a tenant's window, merge once per
table and commit the checkpoints, refresh the report, summarize. :mod:`include.callio.tasks` adapts it
to the DAG's tasks; :mod:`include.callio.plan` says what a run does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from include.callio import schema, transform
from include.callio.plan import WINDOWED, iso

log = logging.getLogger(__name__)

# Rows per staging load. BigQuery allows about 1,500 load jobs per table per day, and every DuckDB
# append pays a fixed cost (open, checkpoint, close): 100,000 rows stage a million customers in 2.6 to
# 3.3 s, where 50,000 take 4.6 to 5.1 and 200,000 take 2.0 to 2.2. The price is the chunk held in the
# fetch task's memory, about 200 MB of rows per 100,000.
STAGE_CHUNK_ROWS = 100_000


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


def fetch_tenant(client, warehouse, job: str, plan: dict, tenant: str, run_id: str) -> dict:
    """Fetch one tenant's records for ``job`` with a logged-in ``client`` and stage them."""
    if job == "staffgroup":
        return _fetch_snapshots(client, warehouse, tenant, run_id)
    return _fetch_window(client, warehouse, job, plan, tenant, run_id)


def log_login_failure(warehouse, job: str, tenant: str, run_id: str, error: Exception) -> None:
    """An ``ERROR_LOGIN`` row for each table ``job`` loads: the load history says why nothing came."""
    tables = [WINDOWED[job][1]] if job in WINDOWED else [schema.STAFF.name, schema.GROUP.name]
    warehouse.log_updates(
        [_update(t, tenant, schema.ERROR_LOGIN, run_id, rows_loaded=0, detail=str(error)) for t in tables]
    )


def _fetch_window(client, warehouse, job: str, plan: dict, tenant: str, run_id: str) -> dict:
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


def commit(warehouse, job: str, plan: dict, fetched: list[dict | None], run_id: str) -> dict:
    """Merge what the tenants staged, once per table, then commit their checkpoints."""
    results = {r["tenant"]: r for r in fetched if r}
    tenants = sorted(results)
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


def summarize(plan: dict, commits: dict[str, dict | None], report: dict | None) -> dict:
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
