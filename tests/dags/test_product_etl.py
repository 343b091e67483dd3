"""product_etl end to end with dag.test() on the embedded SQLite default: dry run, load, re-run,
the summary's shape and the products Asset event."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from include.common.db import engine_for
from include.common.watermark import Watermark, ensure_watermark_table, load_watermark, save_watermark
from include.product.etl import WATERMARK_NAME
from include.product.schema import products
from sandbox.dagrun import load_dag, run_dag
from sandbox.worlds.product import fill_staging, generate

KNOWN_SKUS = ["BL0000000", "ST0000001", "TT0000502", "JP0001195"]


def asset_events(run_id: str) -> int:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.scalar(
            sa.select(sa.func.count())
            .select_from(AssetEvent)
            .where(AssetEvent.source_dag_id == "product_etl", AssetEvent.source_run_id == run_id)
        )


def test_dry_run_then_load_then_nothing_new(sqlite_conn):
    engine = engine_for(sqlite_conn("product_db"))
    truth: dict = {}
    fill_staging(
        engine,
        generate(1200, start=dt.datetime(2024, 1, 1), rows_per_timestamp=1200, bad_every=100, truth=truth),
    )

    dry = run_dag("product_etl", {"dry_run": True, "limit": 500})
    assert dry.state == "success", dry.task_states
    assert dry.summary == {
        "batches": 3,
        "read": 1200,
        "inserted": 1188,
        "updated": 0,
        "unchanged": 0,
        "rejected": 12,
        "watermark_start": {"at": None, "id": None},
        "watermark_end": {"at": "2024-01-01 00:00:00", "id": 1200},
        "dry_run": True,
    }
    assert dry.task_states["publish_products"] == "skipped" and asset_events(dry.run_id) == 0
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(products)) == 0

    load = run_dag("product_etl", {"limit": 500})
    assert load.summary["inserted"] == 1188 and load.summary["dry_run"] is False
    assert load.task_states["publish_products"] == "success" and asset_events(load.run_id) == 1
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(products)) == 1188
        known = conn.execute(sa.select(products).where(products.c.sku.in_(KNOWN_SKUS))).all()
    # A few known products hold the values the synthetic feed meant by its spellings.
    assert len(known) == len(KNOWN_SKUS)
    for row in known:
        product = truth[row.brand_code, row.sku]
        assert (row.name, row.price, row.category, row.status, row.is_active) == (
            product["name"],
            product["price"],
            product["category"],
            product["status"],
            product["is_active"],
        )
        assert (json.loads(row.attributes), json.loads(row.images)) == (
            product["attributes"],
            product["images"],
        )

    idle = run_dag("product_etl", {})
    assert idle.summary["read"] == 0 and idle.summary["watermark_start"] == load.summary["watermark_end"]
    assert idle.task_states["publish_products"] == "skipped" and idle.task_states["summary"] == "success"


@pytest.mark.parametrize(
    "conf", [{"limit": 0}, {"limit": "many"}, {"dry_run": "yes"}, {"safety_lag_seconds": -1}]
)
def test_params_are_validated_before_the_run_starts(conf, sqlite_conn):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        load_dag("product_etl").test(run_conf=conf)


def test_products_of_another_shape_fail_the_run_before_anything_is_written(sqlite_conn):
    """A products table the migration cannot bring into shape fails migrate_schema at once (no retry
    can fix it): products and the watermark stay as they were, and nothing is migrated or loaded."""
    engine = engine_for(sqlite_conn("product_db"))
    fill_staging(engine, generate(100, start=dt.datetime(2024, 1, 1), bad_every=0))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE products (id INTEGER PRIMARY KEY, sku VARCHAR(64) NOT NULL UNIQUE, price VARCHAR(32),"
            " warehouse VARCHAR(16) NOT NULL)"
        )
        conn.exec_driver_sql("INSERT INTO products (sku, price, warehouse) VALUES ('BL0000000', '1', 'W1')")
        ensure_watermark_table(conn)
        save_watermark(conn, WATERMARK_NAME, Watermark(dt.datetime(2023, 12, 31), 0))

    outcome = run_dag("product_etl", {})
    assert outcome.state == "failed"
    assert outcome.task_states["migrate_schema"] == "failed" and outcome.task_states["load"] != "success"
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT * FROM products").all() == [(1, "BL0000000", "1", "W1")]
        assert load_watermark(conn, WATERMARK_NAME) == Watermark(dt.datetime(2023, 12, 31), 0)
        assert set(sa.inspect(conn).get_table_names()) == {"products_staging", "products", "etl_watermark"}
