"""Entry points the callio_etl DAG calls: plan, fetch per tenant, commit per table, report, summary.

Thin adapters: they read the configuration and open the warehouse of the Airflow connections, and turn
outcomes into Airflow's skip / fail signals; the work is :mod:`include.callio.plan` and
:mod:`include.callio.etl`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from include.callio import etl
from include.callio.config import WAREHOUSE_CONN_ID, load_config
from include.callio.plan import make_plan, now_ms, report_days
from include.callio.transform import business_date


def open_warehouse():
    from include.callio.warehouse import open_warehouse as open_from_connection

    return open_from_connection(WAREHOUSE_CONN_ID)


def plan_task(params: dict[str, Any], run_after: dt.datetime, run_type: str, staff_group_time: str) -> dict:
    """Jobs, tenants and each tenant's window; creates the warehouse tables on first use."""
    warehouse = open_warehouse()
    warehouse.ensure_schema()
    return make_plan(
        load_config(), params, run_after, run_type, staff_group_time, warehouse.checkpoints, now_ms()
    )


def fetch_task(job: str, plan: dict, tenant: str, run_id: str) -> dict:
    """Fetch one tenant's records for ``job`` and stage them; a failed login is logged and fails the task."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.callio.client import CallioClient
    from include.callio.types import CallioLoginError

    if job not in plan["jobs"]:
        raise AirflowSkipException(f"job {job} is not part of this run ({', '.join(plan['jobs'])})")
    config = load_config()
    warehouse = open_warehouse()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per page would drown the task log
    with CallioClient(config.account(tenant), config.api) as client:
        try:
            client.login()
        except CallioLoginError as exc:
            etl.log_login_failure(warehouse, job, tenant, run_id, exc)
            raise AirflowFailException(f"tenant {tenant}: {exc}") from None
        return etl.fetch_tenant(client, warehouse, job, plan, tenant, run_id)


def commit_task(job: str, plan: dict, fetched: list[dict | None], run_id: str) -> dict:
    """Merge what the tenants staged, once per table, then commit their checkpoints."""
    if job not in plan["jobs"]:
        return {"job": job, "ran": False, "tenants": {}}
    return etl.commit(open_warehouse(), job, plan, fetched, run_id)


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
    return etl.summarize(plan, commits, report)


def check_tenants_task(summary: dict) -> None:
    """Fail the run, visibly, when a tenant did not load (its own task failed earlier)."""
    from airflow.sdk.exceptions import AirflowFailException

    if summary["failed"]:
        detail = "; ".join(f"{job}: {', '.join(tenants)}" for job, tenants in summary["failed"].items())
        raise AirflowFailException(
            f"tenants not loaded ({detail}); the others were merged. See their fetch tasks and update_log "
            "(mode ERROR_LOGIN for a failed login)."
        )
