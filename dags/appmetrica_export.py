"""
# appmetrica_export

Daily: the previous day of each configured AppMetrica Logs API resource into S3 (raw) and the DWH
tables of `dwh_db` it maps to (`events` -> `events_part`, `tmp_event_properties`, `user_locations`;
`installations` -> `mobile_devices`; other resources are stored only). Connection `appmetrica_api`
(password: OAuth token, extra `application_id`), bucket of `dwh_s3`.

**Waiting holds no worker.** AppMetrica prepares an export for minutes, answering 202. `export` asks
once, then defers to a trigger that polls in the triggerer (the task instance is `deferred` meanwhile),
and resumes to download the ready file once, streamed, to
`appmetrica/{resource}/{day}/{resource}_{day}.json`. The task runs in the pool `appmetrica_logs_api`
(3 slots, deferred tasks counted: `airflow_settings.yaml`), so at most three exports are queued per
application, AppMetrica's limit.

**Re-runnable.** `load` replaces the (resource, day)'s rows in each table, one transaction per table,
through the load log `dwh_export_loads`: a re-run doubles nothing; a failure leaves the previous load.

**Params.** `day` (YYYY-MM-DD; default the day before the run's logical date), `resources`
(resource -> fields), `poll_interval_seconds`, `timeout_seconds`.

**Result.** `summary` returns `{sources: {resource: {key, bytes, rows: {table: n}, ...}}, events}`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, task

from include.common.dag_defaults import default_args
from include.dwh.appmetrica_operator import AppMetricaExportOperator
from include.dwh.config import APPMETRICA_POOL

DEVICE = ["appmetrica_device_id", "profile_id", "os_name", "os_version", "device_manufacturer", "device_model",
          "device_type", "device_locale", "app_version_name", "country_iso_code", "city", "operator_name",
          "google_aid", "ios_ifa"]  # fmt: skip
DEFAULT_RESOURCES = {
    "events": ["event_name", "event_datetime", "event_json", "session_id", *DEVICE],
    "installations": ["install_datetime", "tracker_name", *DEVICE],
    "sessions_starts": ["session_start_datetime", "session_id", *DEVICE],
}


@dag(
    schedule=CronTriggerTimetable("30 3 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["dwh", "appmetrica", "s3"],
    default_args=default_args(retry_delay_minutes=10),
    params={
        "day": Param(
            None, type=["null", "string"], title="Day (YYYY-MM-DD)", description="Default: yesterday"
        ),
        "resources": Param(DEFAULT_RESOURCES, type="object", title="Resources and their fields"),
        "poll_interval_seconds": Param(30.0, type="number", minimum=0.05, title="Poll interval (s)"),
        "timeout_seconds": Param(10800.0, type="number", minimum=1, title="Give up waiting after (s)"),
    },
)
def appmetrica_export():
    @task
    def plan(params=None, logical_date=None, run_after=None) -> list[dict]:
        from include.dwh.export_tasks import appmetrica_plan_task

        return appmetrica_plan_task(params, logical_date or run_after)

    @task(multiple_outputs=False)
    def load(stored: dict) -> dict:
        from include.dwh.export_tasks import appmetrica_load_task

        return appmetrica_load_task(stored)

    @task(multiple_outputs=False)
    def summary(results: list[dict]) -> dict:
        from include.dwh.export_tasks import export_summary_task

        return export_summary_task(results)

    exported = AppMetricaExportOperator.partial(
        task_id="export",
        pool=APPMETRICA_POOL,
        poll_interval="{{ params.poll_interval_seconds }}",
        timeout_s="{{ params.timeout_seconds }}",
    ).expand(job=plan())
    summary(load.expand(stored=exported.output))


appmetrica_export()
