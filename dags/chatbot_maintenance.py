"""
# chatbot_maintenance

Every day at 03:00 UTC, the WhatsApp chatbot's housekeeping (the original guide's Backup/Restore,
Performance, Monitoring and LGPD sections), on `chatbot_postgres`, `chatbot_duckdb` and `chatbot_backups`.

1. **expire_sessions**: sessions past `expires_at` get `state = 'expired'`.
2. **retention** (LGPD): users who never consented and are older than `consent_grace_days`, or inactive
   for `retention_days`, are deleted (cascading) or anonymized (`retention_action`) in PostgreSQL, and
   their rows of the DuckDB copy deleted or redacted (embeddings removed) in the same task, before the
   PostgreSQL transaction commits. Re-running changes nothing more.
3. **vacuum_analyze**: `VACUUM ANALYZE` of the chatbot tables.
4. **backup**: `pg_dump --format=custom` and a consistent copy of the DuckDB file, uploaded to
   `chatbot/backups/<YYYYMMDDTHHMMSSZ>/{postgres.dump, chatbot.duckdb, manifest.json}`; only the newest
   `backup_keep` complete backups are kept. Restore: `make chatbot-restore ARGS="--latest --database
   NAME --duckdb FILE"` (README, chatbot_maintenance).
5. **report**: database and table sizes and row counts of both stores (XCom).

`dry_run` counts without changing anything and skips VACUUM and the backup. `as_of` (ISO date-time)
replaces the run's time as "now" for expiry and retention. Tasks opening the DuckDB file take the
`chatbot_duckdb` pool. `summary` returns `{sessions_expired, retention, vacuum, backup, report}`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from include.chatbot.config import DUCKDB_POOL
from include.common.dag_defaults import default_args


def _as_of(params: dict, dag_run) -> str:
    return params["as_of"] or dag_run.run_after.isoformat()


@dag(
    schedule="0 3 * * *",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["chatbot", "postgres", "duckdb", "maintenance", "lgpd"],
    default_args=default_args(retry_delay_minutes=5),
    params={
        "retention_action": Param(
            "anonymize",
            type="string",
            enum=["anonymize", "delete"],
            title="Retention action",
            description="What happens to users due for retention, in PostgreSQL and DuckDB alike.",
        ),
        "retention_days": Param(
            365,
            type="integer",
            minimum=1,
            title="Retention (days)",
            description="Inactive users older than this.",
        ),
        "consent_grace_days": Param(
            30,
            type="integer",
            minimum=0,
            title="Consent grace (days)",
            description="Users without consent whose account is older than this are due.",
        ),
        "backup_keep": Param(
            7, type="integer", minimum=1, title="Backups kept", description="Newest N kept."
        ),
        "dry_run": Param(False, type="boolean", title="Dry run", description="Count only; change nothing."),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="As of",
            description="'Now' for expiry and retention (default: the run's time).",
        ),
    },
)
def chatbot_maintenance():
    @task(multiple_outputs=False)
    def expire_sessions(params=None, dag_run=None) -> dict:
        from include.chatbot.maintenance_tasks import expire_sessions_task

        return expire_sessions_task(params["dry_run"], _as_of(params, dag_run))

    @task(multiple_outputs=False, pool=DUCKDB_POOL)
    def retention(params=None, dag_run=None) -> dict:
        from include.chatbot.maintenance_tasks import retention_task

        return retention_task(params, _as_of(params, dag_run))

    @task(multiple_outputs=False)
    def vacuum_analyze(params=None) -> dict:
        from include.chatbot.maintenance_tasks import vacuum_task

        return vacuum_task(params["dry_run"])

    @task(multiple_outputs=False, pool=DUCKDB_POOL)
    def backup(params=None, dag_run=None) -> dict:
        from include.chatbot.maintenance_tasks import backup_task

        return backup_task(dag_run.run_after.isoformat(), params["backup_keep"], params["dry_run"])

    @task(multiple_outputs=False, pool=DUCKDB_POOL)
    def report() -> dict:
        from include.chatbot.maintenance_tasks import report_task

        return report_task()

    @task(multiple_outputs=False)
    def summary(expired: dict, retained: dict, vacuumed: dict, backed_up: dict, reported: dict) -> dict:
        from include.chatbot.maintenance_tasks import maintenance_summary

        return maintenance_summary(expired, retained, vacuumed, backed_up, reported)

    expired = expire_sessions()
    retained = retention()
    vacuumed = vacuum_analyze()
    backed_up = backup()
    reported = report()
    expired >> retained >> vacuumed >> backed_up >> reported
    summary(expired, retained, vacuumed, backed_up, reported)


chatbot_maintenance()
