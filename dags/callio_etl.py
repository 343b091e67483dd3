"""
# callio_etl

Loads the Callio call-center API (connection `callio_api`, one account per tenant) into the warehouse
(connection `callio_warehouse`: embedded DuckDB, or BigQuery dataset `dev_callio`).

**When.** Customers and calls at 02:30, 04:00, 06:00, 08:00 and 11:00 UTC (09:30 to 18:00 in Vietnam,
UTC+7); staff and groups once a day, in the 02:30 run. Both come from the DAG processor's environment:
`CALLIO_RUN_TIMES_UTC` and `CALLIO_STAFF_GROUP_TIME_UTC` (the old `SCHEDULER_*` keys).

**Param `job`.** `auto`: every job in a run started by hand (trigger form, CLI, REST API), as the old
`--mode once` did; in scheduled runs what the schedule says. Or `all`, `customer`, `call`, `staffgroup`
(the old `--job ...`). **Params `from` / `to`** re-fetch an explicit window (a backfill) and leave the
checkpoints where they are: a date (its midnight, UTC), a date-time in UTC, or one with its offset.

**Per tenant** (mapped tasks, the grid shows `tenant=...`): read the checkpoint from `update_log`, fetch
newest-first from it minus `overlap_ms` (or the last `days_to_fetch_if_empty` days when there is none),
in time slices that split when the API refuses deep paging, stage the rows. Each task's XCom shows the
window it covered. **Once per table**, after all tenants: MERGE customers (newest `updateTime` wins, an
unchanged `row_hash` is left alone), append new calls (deduplicated on `_id`), merge staff on
(tenant, name), replace groups; only then are the new checkpoints written to `update_log`. Finally
`fact_staff_daily_PK` is refreshed for the days the run touched, whichever jobs ran.

**Failures.** A tenant whose login fails gets an `ERROR_LOGIN` row in `update_log` and a failed task;
the other tenants still load and merge, and the run ends failed at `check_tenants`, which names the
tenants that did not load. `summary` returns what each table received per tenant.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import MultipleCronTriggerTimetable, Param, TriggerRule, dag, task

from include.callio.params import TIME_FORMS, TIME_SCHEMA
from include.callio.schedule import crons, schedule_times
from include.common.dag_defaults import default_args

RUN_TIMES, STAFF_GROUP_TIME = schedule_times()
TENANT_LABEL = "tenant={{ task.op_kwargs['tenant'] }}"
#: The task that commits each job; the summary reads their XComs.
COMMIT_TASKS = {"customer": "merge_customers", "call": "append_calls", "staffgroup": "merge_staffgroup"}


@dag(
    schedule=MultipleCronTriggerTimetable(*crons(RUN_TIMES), timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["callio", "bigquery", "duckdb"],
    default_args=default_args(retry_delay_minutes=2),
    params={
        "job": Param(
            "auto",
            type="string",
            enum=["auto", "all", "customer", "call", "staffgroup"],
            title="Job",
            description="auto: every job when run by hand (this form, the CLI, the REST API); in scheduled "
            f"runs customers and calls, plus staff and groups in the {STAFF_GROUP_TIME} UTC run.",
        ),
        "from": Param(
            None,
            title="Backfill from",
            description=f"Re-fetch from this time: {TIME_FORMS}. The checkpoints do not move.",
            **TIME_SCHEMA,
        ),
        "to": Param(
            None,
            title="Backfill to",
            description="End of the backfill window, in the same forms (default: now).",
            **TIME_SCHEMA,
        ),
    },
)
def callio_etl():
    @task(multiple_outputs=False)
    def plan(params=None, dag_run=None) -> dict:
        from include.callio.tasks import plan_task

        return plan_task(params, dag_run.run_after, dag_run.run_type, STAFF_GROUP_TIME)

    @task
    def tenants(run: dict) -> list[str]:
        return run["tenants"]

    @task(multiple_outputs=False, map_index_template=TENANT_LABEL)
    def fetch_customers(run: dict, tenant: str, run_id=None) -> dict:
        from include.callio.tasks import fetch_task

        return fetch_task("customer", run, tenant, run_id)

    @task(multiple_outputs=False, map_index_template=TENANT_LABEL)
    def fetch_calls(run: dict, tenant: str, run_id=None) -> dict:
        from include.callio.tasks import fetch_task

        return fetch_task("call", run, tenant, run_id)

    @task(multiple_outputs=False, map_index_template=TENANT_LABEL)
    def fetch_staffgroup(run: dict, tenant: str, run_id=None) -> dict:
        from include.callio.tasks import fetch_task

        return fetch_task("staffgroup", run, tenant, run_id)

    # ALL_DONE: the tenants that fetched are merged even when another tenant failed.
    @task(multiple_outputs=False, trigger_rule=TriggerRule.ALL_DONE)
    def merge_customers(run: dict, fetched: list[dict], run_id=None) -> dict:
        from include.callio.tasks import commit_task

        return commit_task("customer", run, fetched[:], run_id)

    @task(multiple_outputs=False, trigger_rule=TriggerRule.ALL_DONE)
    def append_calls(run: dict, fetched: list[dict], run_id=None) -> dict:
        from include.callio.tasks import commit_task

        return commit_task("call", run, fetched[:], run_id)

    @task(multiple_outputs=False, trigger_rule=TriggerRule.ALL_DONE)
    def merge_staffgroup(run: dict, fetched: list[dict], run_id=None) -> dict:
        from include.callio.tasks import commit_task

        return commit_task("staffgroup", run, fetched[:], run_id)

    # ALL_DONE: the report and the summary follow every run, whichever of its jobs succeeded.
    @task(multiple_outputs=False, trigger_rule=TriggerRule.ALL_DONE)
    def refresh_report(run: dict) -> dict:
        from include.callio.tasks import report_task

        return report_task(run)

    @task(multiple_outputs=False, trigger_rule=TriggerRule.ALL_DONE)
    def summary(run: dict, ti=None) -> dict:
        from include.callio.tasks import summary_task

        commits = {job: ti.xcom_pull(task_ids=task_id) for job, task_id in COMMIT_TASKS.items()}
        return summary_task(run, commits, ti.xcom_pull(task_ids="refresh_report"))

    @task
    def check_tenants(result: dict) -> None:
        from include.callio.tasks import check_tenants_task

        check_tenants_task(result)

    run = plan()
    each = tenants(run)
    commits = [
        merge_customers(run, fetch_customers.partial(run=run).expand(tenant=each)),
        append_calls(run, fetch_calls.partial(run=run).expand(tenant=each)),
        merge_staffgroup(run, fetch_staffgroup.partial(run=run).expand(tenant=each)),
    ]
    report = refresh_report(run)
    result = summary(run)
    commits >> report >> result
    check_tenants(result)


callio_etl()
