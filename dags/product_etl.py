"""
# product_etl

Upserts `products_staging` (the DBA's raw feed, only read) into `products`, keyed by
`(brand_code, sku)`, in database `product_db` (`belle_ai` in production).

**When.** Every 15 minutes, one run at a time. A run takes up to `max_batches` batches of `limit`
staging rows in `(src_updated_at, id)` order from the watermark in `etl_watermark`, so a backlog is
worked off over consecutive runs.

**Per batch, in one transaction:** normalize each row (trimmed strings, exact prices, booleans,
attributes JSON whatever its encoding, stable serialization); hash the business fields into
`data_version`; insert new products, update those whose version changed, leave the rest untouched;
one `product_change_log` row per insert or update (old and new version, changed fields, run id);
unloadable rows into `product_etl_rejects` with their reason; then move the watermark. A failed run
loses at most its batch in flight, and the next one resumes exactly there. The watermark never passes
`now - safety_lag_seconds`, so rows committed late with an earlier `src_updated_at` are still read.

**Params.** `resume=false` reprocesses from the beginning (unchanged products stay untouched);
`dry_run=true` computes and reports everything and writes nothing, not even the watermark.

**Result.** `summary` returns `{batches, read, inserted, updated, unchanged, rejected,
watermark_start, watermark_end, dry_run}`; when products changed, `publish_products` updates the Asset
`belle_ai.products` that downstream DAGs can schedule on. The schema migrates itself first
(`migrate_schema`, versioned and re-runnable; it also converts a `products` table keyed by `sku`).

**Existing tables.** Before migrating, `migrate_schema` checks `products_staging` and every existing
table the pipeline writes; one the migration cannot bring into shape (a column of another type, a NOT
NULL column the pipeline does not fill) fails the task at once, before anything is written, and its
log names each problem and the expected shape (README: Existing tables).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, TriggerRule, dag, task

from include.common.dag_defaults import default_args
from include.product.assets import PRODUCTS

CONN_ID = "product_db"


@dag(
    schedule=CronTriggerTimetable("*/15 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["product", "mysql"],
    default_args=default_args(retry_delay_minutes=1),
    params={
        "limit": Param(1000, type="integer", minimum=1, maximum=100_000, title="Batch size"),
        "resume": Param(
            True, type="boolean", title="Resume from the watermark", description="Off: from the start."
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Compute and report; write nothing."
        ),
        "max_batches": Param(1000, type="integer", minimum=1, title="Batches per run at most"),
        "safety_lag_seconds": Param(
            300,
            type="integer",
            minimum=0,
            title="Safety lag (s)",
            description="Rows newer than now minus this wait for a later run.",
        ),
    },
)
def product_etl():
    @task
    def migrate_schema() -> list[str]:
        from include.product.tasks import migrate_task

        return migrate_task(CONN_ID)

    @task(multiple_outputs=False)
    def watermark_start(params=None) -> dict:
        from include.product.tasks import watermark_start_task

        return watermark_start_task(CONN_ID, params["resume"])

    @task(multiple_outputs=False)
    def load(start: dict, params=None, run_id=None) -> dict:
        from include.product.tasks import load_task

        return load_task(CONN_ID, run_id, start, params)

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def products_changed(result: dict) -> bool:
        from include.product.tasks import wrote_products

        return wrote_products(result)

    @task(outlets=[PRODUCTS])
    def publish_products() -> None:
        """Succeeding is the point: it records an event of the products Asset."""

    @task(multiple_outputs=False, trigger_rule=TriggerRule.NONE_FAILED)
    def summary(start: dict, result: dict) -> dict:
        from include.product.tasks import summary_task

        return summary_task(start, result)

    start = watermark_start()
    migrate_schema() >> start
    result = load(start)
    published = products_changed(result) >> publish_products()
    published >> summary(start, result)


product_etl()
