"""
# chatbot_db_init

Creates or updates the WhatsApp chatbot's two databases: the original service's
`scripts/init_databases.py [--seed] [--skip-postgres]`, run from the trigger form.

**PostgreSQL** (connection `chatbot_postgres`): Alembic migrates to `target_revision` (default `head`).
Revision `002` is the guide's seed data (3 users, 2 sessions, 4 messages, 1 qualified lead): without
`seed`, a database below it stops at `001` (schema only); with `seed`, it gets at least `002`. A revision
below the current one downgrades (`001` from `002` removes exactly the seed rows).

**DuckDB** (connection `chatbot_duckdb`): `conversation_context`, `message_history`,
`message_embeddings` and the copy's watermark, versioned in `chatbot_schema_version`; re-running changes
nothing. The task runs in the one-slot `chatbot_duckdb` pool (DuckDB is single-writer); a file locked
by another process fails the attempt with a clear message and is retried.

**Params.** `skip_postgres`, `skip_duckdb` leave one database alone (`--skip-postgres`).

**Result.** `summary` returns `{postgres: {revision_before, revision_after, target, seeded},
duckdb: {path, applied, version, rows}}`, `"skipped"` for a skipped side. Runs only when triggered.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task

from include.chatbot.config import DUCKDB_POOL
from include.common.dag_defaults import default_args


@dag(
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["chatbot", "postgres", "duckdb"],
    default_args=default_args(retry_delay_minutes=1),
    params={
        "target_revision": Param(
            "head",
            type="string",
            minLength=1,
            title="PostgreSQL target revision",
            description="head, 001 (schema), 002 (seed data) or any later revision id.",
        ),
        "seed": Param(False, type="boolean", title="Seed test data", description="init_databases.py --seed"),
        "skip_postgres": Param(False, type="boolean", title="Skip PostgreSQL", description="--skip-postgres"),
        "skip_duckdb": Param(False, type="boolean", title="Skip DuckDB"),
    },
)
def chatbot_db_init():
    @task(multiple_outputs=False)
    def migrate_postgres(params=None) -> dict | None:
        if params["skip_postgres"]:
            return None
        from include.chatbot.tasks import migrate_postgres_task

        return migrate_postgres_task(params["target_revision"], params["seed"])

    @task(multiple_outputs=False, pool=DUCKDB_POOL)
    def init_duckdb(params=None) -> dict | None:
        if params["skip_duckdb"]:
            return None
        from include.chatbot.tasks import init_duckdb_task

        return init_duckdb_task()

    @task(multiple_outputs=False)
    def summary(postgres: dict | None, duckdb: dict | None) -> dict:
        from include.chatbot.tasks import db_init_summary

        return db_init_summary(postgres, duckdb)

    summary(migrate_postgres(), init_duckdb())


chatbot_db_init()
