"""
# amplitude_export

Weekly: every source's Amplitude events of the last closed ISO week into S3 and the seven DWH tables
of `dwh_db` (`events_part`, `mobile_devices`, `permanent_user_properties`, `technical_data`,
`tmp_event_properties`, `tmp_user_properties`, `user_locations`).

**When.** Mondays 04:00 UTC: the ISO week closed at midnight and Amplitude's ~2 h export delay has
passed. One mapped branch per source (`web`, `mobile`; connections `amplitude_web`, `amplitude_mobile`).

**Per source.** Export the week (`GET /api/2/export`), merge it into `{year}_week_{week}.zip` and
store it at `amplitude/{source}/{period}/{year}_week_{week}.zip` in the `dwh_s3` bucket (`period` =
`2024-W06`, or `YYYYMMDD-YYYYMMDD` for another range), then replace that (source, period)'s rows in
each table, one transaction per table, through the DWH helper's batch writer. The load log
`dwh_export_loads` records which ids each load inserted, so a re-run doubles nothing and a failure
leaves the previous state. 404: the branch ends with `status: "no data"`. 400 (too large): the range
is exported day by day. 429 / 5xx / 504: retried with exponential backoff (`attempts`,
`backoff_seconds`), then by the task's own retries.

**Params.** `week` (`2024-W06`) or `start` / `end` (YYYYMMDD); neither: the last closed week.
`sources` (default both).

**Result.** `summary` returns `{sources: {source: {status, events, rows: {table: n}, bytes, key,
period, start, end, split_by_day}}, events, no_data}`. Mapping of export fields to tables:
`include/dwh/amplitude_split.py` and the README.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, task

from include.common.dag_defaults import default_args


@dag(
    schedule=CronTriggerTimetable("0 4 * * 1", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["dwh", "amplitude", "s3"],
    default_args=default_args(retry_delay_minutes=10),
    params={
        "week": Param(None, type=["null", "string"], title="ISO week", description="e.g. 2024-W06"),
        "start": Param(None, type=["null", "string"], title="Start day (YYYYMMDD)"),
        "end": Param(None, type=["null", "string"], title="End day (YYYYMMDD)"),
        "sources": Param(["web", "mobile"], type="array", title="Sources", items={"enum": ["web", "mobile"]}),
        "attempts": Param(4, type="integer", minimum=1, maximum=10, title="Export attempts (429/5xx)"),
        "backoff_seconds": Param(30.0, type="number", minimum=0, title="First backoff (s)"),
    },
)
def amplitude_export():
    @task
    def plan(params=None, logical_date=None, run_after=None) -> list[dict]:
        from include.dwh.export_tasks import amplitude_plan_task

        return amplitude_plan_task(params, logical_date or run_after)

    @task(multiple_outputs=False, map_index_template="{{ task.op_kwargs['job']['source'] }}")
    def export_source(job: dict, params=None) -> dict:
        from include.dwh.export_tasks import amplitude_source_task

        return amplitude_source_task(job, params)

    @task(multiple_outputs=False)
    def summary(results: list[dict]) -> dict:
        from include.dwh.export_tasks import export_summary_task

        return export_summary_task(results)

    summary(export_source.expand(job=plan()))


amplitude_export()
