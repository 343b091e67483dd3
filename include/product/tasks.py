"""Entry points the product_etl DAG calls: connection id and params in, XCom-friendly values out."""

from __future__ import annotations

import datetime as dt
import logging

from include.common.dag_defaults import fail_without_retry
from include.common.db import engine_for
from include.common.table_shape import TableShapeError
from include.common.watermark import START, Watermark
from include.product.etl import current_watermark, run_batches
from include.product.migrations import migrate

log = logging.getLogger(__name__)


def migrate_task(conn_id: str) -> list[str]:
    """Check the tables and bring the schema up to date (a no-op once it is). A table the migration
    cannot bring into shape fails the task at once: retrying cannot fix it."""
    with fail_without_retry(TableShapeError):
        return migrate(engine_for(conn_id))


def watermark_start_task(conn_id: str, resume: bool) -> dict:
    """Where this run starts: the durable watermark, or the beginning when not resuming."""
    return (current_watermark(engine_for(conn_id)) if resume else START).to_xcom()


def load_task(conn_id: str, run_id: str, watermark_start: dict, params: dict) -> dict:
    """Run the batches. A resuming run re-reads the durable watermark, so that a retry of this task
    continues after the batches its failed attempt already committed."""
    start = None if params["resume"] else Watermark.from_xcom(watermark_start)
    result = run_batches(
        engine_for(conn_id),
        run_id,
        start=start,
        limit=params["limit"],
        resume=params["resume"],
        dry_run=params["dry_run"],
        max_batches=params["max_batches"],
        safety_lag=dt.timedelta(seconds=params["safety_lag_seconds"]),
    )
    return {
        **vars(result.stats),
        "watermark_end": result.watermark_end.to_xcom(),
        "dry_run": params["dry_run"],
    }


def wrote_products(load: dict) -> bool:
    """Whether downstream consumers of products have anything new to see."""
    return not load["dry_run"] and load["inserted"] + load["updated"] > 0


def summary_task(watermark_start: dict, load: dict) -> dict:
    summary = {
        "batches": load["batches"],
        "read": load["read"],
        "inserted": load["inserted"],
        "updated": load["updated"],
        "unchanged": load["unchanged"],
        "rejected": load["rejected"],
        "watermark_start": watermark_start,
        "watermark_end": load["watermark_end"],
        "dry_run": load["dry_run"],
    }
    log.info("product_etl: %s", summary)
    return summary
