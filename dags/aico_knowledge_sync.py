"""
# aico_knowledge_sync

Pushes each scenario's knowledge items (`scenario_knowledge_items`) to its AICO knowledge base:
token -> pid and kb_id -> delete the documents uploaded last time -> upload the items -> put them online.

**Which databases and credentials.** `resolve_profile` reads the `AICO_HOST` Variable at run time:
equal to `AICO_HOST_TEST` it uses `dialog_dst_test`, equal to `AICO_HOST_PROD` `dialog_dst_prod`,
otherwise `dialog_dst` (its XCom says which). Per scenario, the AICO account, project and knowledge base
come from the `scenarios` row whose `aico_host` equals `AICO_HOST`, else `<code>_test` under TEST and
`<code>` under PROD; the items stay those of the scenario itself. The AICO base URL is the `aico_api`
connection (`{AICO_HOST}` in its host is replaced by the Variable).

**When.** Every hour, and by hand. Params: `scenario_ids` (ids or codes; empty: every scenario whose
items changed since its last successful sync) and `dry_run` (resolve everything, write nothing).

**Repairs itself.** A scenario whose items hash like its last successful sync is skipped (no AICO
call). Each step is logged in `aico_sync_log` and each uploaded document in `aico_documents` as it
happens: a run that stops part-way is finished by the next one (everything it uploaded is deleted and
uploaded again), so the knowledge base ends with one online document per item.

**Summary.** `{profile, source_conn_id, target_conn_id, dry_run, scenarios: {code: {profile,
config_row, items, uploaded, deleted, skipped, online}}}`.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, TriggerRule, dag, task

from include.common.dag_defaults import default_args


@dag(
    schedule=CronTriggerTimetable(os.environ.get("AICO_SYNC_CRON", "0 * * * *"), timezone="Asia/Shanghai"),
    start_date=pendulum.datetime(2024, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,  # two runs at once would both delete and upload the same scenario
    doc_md=__doc__,
    tags=["dialog", "aico"],
    default_args=default_args(retry_delay_minutes=1),
    params={
        "scenario_ids": Param(
            [],
            type="array",
            items={"type": ["integer", "string"]},
            title="Scenarios",
            description="Scenario ids or codes to sync. Empty: every scenario whose items changed.",
        ),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Make no AICO write call."),
    },
)
def aico_knowledge_sync():
    @task(multiple_outputs=False)
    def resolve_profile() -> dict:
        from include.dialog.profiles import profile_for_run

        return profile_for_run()

    @task(multiple_outputs=False)
    def plan(profile: dict, params=None, ti=None) -> list[dict]:
        from include.aico.tasks import plan_task

        planned = plan_task(profile, params["scenario_ids"])
        ti.xcom_push(key="unchanged", value=planned["unchanged"])  # skipped without a mapped task
        return planned["to_sync"]

    @task(
        multiple_outputs=False,
        max_active_tis_per_dagrun=4,
        map_index_template="scenario={{ task.op_kwargs['scenario']['code'] }}",
    )
    def sync_scenario(profile: dict, scenario: dict, params=None, run_id=None) -> dict:
        from include.aico.tasks import sync_task

        return sync_task(profile, scenario, run_id, bool(params["dry_run"]))

    @task(multiple_outputs=False, trigger_rule=TriggerRule.NONE_FAILED)
    def summary(profile: dict, to_sync: list, results: list[dict], params=None, ti=None) -> dict:
        from include.aico.tasks import summary_task

        unchanged = ti.xcom_pull(task_ids="plan", key="unchanged") or {}
        return summary_task(profile, to_sync, unchanged, results[:], bool(params["dry_run"]))

    profile = resolve_profile()
    planned = plan(profile)
    synced = sync_scenario.partial(profile=profile).expand(scenario=planned)
    summary(profile, planned, synced)


aico_knowledge_sync()
