"""
# dialog_etl

Turns one Shanghai day of `people_customer_dialog` (one row per utterance, connection `dialog_src`,
only read) into `prepared_conversations` (one row per call, connection `dialog_dst`).

**Which databases.** `resolve_profile` reads the `AICO_HOST` Variable when the run starts: equal to
`AICO_HOST_TEST` the run uses `dialog_src_test` / `dialog_dst_test`, equal to `AICO_HOST_PROD` the
`_prod` pair, otherwise `dialog_src` / `dialog_dst` (README: AICO test and prod profiles). Its XCom
and the summary's log line say which profile and connections the run used.

**When.** Every day at 01:00 Asia/Shanghai, for the previous Shanghai day. The `target_date` param
(YYYY-MM-DD) picks another day. Manual and REST runs without it process the day before they start;
`airflow backfill create --from-date 2024-06-01 --to-date 2024-06-06` processes June 1 to June 5
(dates taken as UTC midnights, so the range is half-open like a data interval).

**How.** `find_groups` lists the day's group_codes; `load_group` runs once per group_code (the grid
shows `group_code=...`), at most as many at once as the `dialog_etl` pool has slots
(`ETL_MAX_WORKERS`, default 4); `summary` returns
`{target_date, groups_processed, conversations_total, inserted, skipped_existing}`.

**Rules.** `call_id` is unique in the target: a re-run, or two runs of the same day at once, insert
nothing twice (`skipped_existing` counts what was already there). A call belongs to the day and the
group of its first utterance; a call handed over to another group, or running past midnight, is loaded
once, by that owner, with all its utterances (up to 6 hours either side of the day). Utterances
without call_id or group_code, with empty content, or with undecodable text go to
`prepared_conversation_rejects` with their reason and run id; the rest of the load goes on.

**Pushdown.** When `dialog_src` and `dialog_dst` are one MariaDB/MySQL server reached with one login
(same host as written, port and user; the databases may differ), each `load_group` builds its
conversations and rejects on the server in `INSERT ... SELECT` statements, with the same rules and the
same resulting rows as the streaming path. A group holding data only Python handles exactly (bytes
that are not UTF-8, a speaker outside ASCII, call_ids the collation merges) is streamed instead. The
summary says which (`"path": "pushdown"` or `"streaming"`, and `streaming_fallbacks` with each
fallen-back group's reason); the `load_path` param `streaming` forces streaming.

**Existing tables.** `find_groups` first checks `people_customer_dialog` and any existing target
table against the columns the pipeline reads and writes; one that does not fit fails the task at once,
before anything is written, and its log names each problem and the expected shape (README: Existing
tables).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, TriggerRule, dag, task

from include.common.dag_defaults import default_args
from include.dialog.config import WORKER_POOL


@dag(
    schedule=CronTriggerTimetable(os.environ.get("DIALOG_ETL_CRON", "0 1 * * *"), timezone="Asia/Shanghai"),
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    doc_md=__doc__,
    tags=["dialog", "mysql"],
    default_args=default_args(retry_delay_minutes=2),
    params={
        "target_date": Param(
            None,
            type=["null", "string"],
            format="date",
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            title="Target date",
            description="Shanghai day to process (YYYY-MM-DD). Empty: the day before the run.",
        ),
        "load_path": Param(
            "auto",
            type="string",
            enum=["auto", "streaming"],
            title="Load path",
            description="auto: on the database server when source and target share it; streaming: always"
            " through the worker.",
        ),
    },
)
def dialog_etl():
    @task
    def resolve_target_date(params=None, dag_run=None) -> str:
        from include.dialog.days import day_to_process

        return day_to_process(params["target_date"], dag_run.logical_date, dag_run.run_after).isoformat()

    @task(multiple_outputs=False)
    def resolve_profile() -> dict:
        from include.dialog.profiles import profile_for_run

        return profile_for_run()

    @task
    def find_groups(target_date: str, profile: dict) -> list[str]:
        from include.dialog.tasks import find_groups_task

        return find_groups_task(profile["source_conn_id"], profile["target_conn_id"], target_date)

    @task(
        multiple_outputs=False,
        pool=WORKER_POOL,
        map_index_template="group_code={{ task.op_kwargs['group_code'] }}",
    )
    def load_group(target_date: str, profile: dict, group_code: str, run_id=None, params=None) -> dict:
        from include.dialog.tasks import load_group_task

        conns = profile["source_conn_id"], profile["target_conn_id"]
        return load_group_task(*conns, target_date, group_code, run_id, params["load_path"])

    @task
    def reject_unroutable(target_date: str, profile: dict, run_id=None) -> int:
        from include.dialog.tasks import reject_unroutable_task

        conns = profile["source_conn_id"], profile["target_conn_id"]
        return reject_unroutable_task(*conns, target_date, run_id)

    @task(multiple_outputs=False, trigger_rule=TriggerRule.NONE_FAILED)  # an empty day still gets a summary
    def summary(
        target_date: str, profile: dict, results: list[dict], rejected_unroutable: int, params=None
    ) -> dict:
        from include.dialog.tasks import summary_task

        conns = profile["source_conn_id"], profile["target_conn_id"]
        return summary_task(*conns, target_date, results[:], rejected_unroutable, params["load_path"])

    day = resolve_target_date()
    profile = resolve_profile()  # at run time: changing the AICO_HOST Variable switches the next run
    groups = find_groups(day, profile)
    loaded = load_group.partial(target_date=day, profile=profile).expand(group_code=groups)
    rejected = reject_unroutable(day, profile)
    groups >> rejected  # find_groups creates the target tables first
    summary(day, profile, loaded, rejected)


dialog_etl()
