"""product_etl's batches on SQLite and real MariaDB: stored values, keyset, crash and resume, dry run,
rejects, change log, versions of one key in one batch, safety lag and the migration of a legacy
``products`` table."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from decimal import Decimal

import pytest
import sqlalchemy as sa

from include.common.db import engine_for
from include.common.table_shape import TableShapeError
from include.common.watermark import Watermark, ensure_watermark_table, load_watermark, save_watermark
from include.product.etl import WATERMARK_NAME, run_batches
from include.product.migrations import migrate
from include.product.schema import product_change_log, product_etl_rejects, products
from sandbox.worlds.product import BAD_ROWS, changed_versions, fill_staging, generate, staging_row

T0 = dt.datetime(2024, 1, 1)
LATER = dt.datetime(2024, 6, 1)  # "now" for the runs: every staging row is older than now - lag


@pytest.fixture(params=["sqlite", "mariadb"])
def engine(request):
    factory = request.getfixturevalue(f"{request.param}_conn")
    return engine_for(factory("product_db"))


def load_feed(engine, count=2500, per_timestamp=2500, bad_every=100):
    fill_staging(engine, generate(count, start=T0, rows_per_timestamp=per_timestamp, bad_every=bad_every))
    migrate(engine)


def run(engine, run_id="run", **kwargs):
    kwargs.setdefault("now", LATER)
    return run_batches(engine, run_id, **kwargs)


def state(engine):
    """Everything a run leaves behind, minus run ids and clock times."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(products.c.brand_code, products.c.sku, products.c.data_version, products.c.price)
        ).all()
        log = conn.execute(
            sa.select(product_change_log.c.sku, product_change_log.c.action, product_change_log.c.new_version)
        ).all()
        rejects = conn.execute(
            sa.select(product_etl_rejects.c.staging_id, product_etl_rejects.c.reason)
        ).all()
        mark = load_watermark(conn, WATERMARK_NAME)
    return sorted(rows), Counter(log), sorted(rejects), mark


def stored_products(engine) -> dict[tuple[str, str], dict]:
    """``products`` by key, with JSON columns parsed and ``is_active`` as a bool (MariaDB stores 0/1)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(products)).all()
    stored = {}
    for row in rows:
        values = dict(row._mapping)
        values["attributes"] = json.loads(values["attributes"])
        values["images"] = json.loads(values["images"])
        values["is_active"] = None if values["is_active"] is None else bool(values["is_active"])
        stored[row.brand_code, row.sku] = values
    return stored


def test_stored_products_are_the_products_the_feed_describes(engine):
    """Each loaded product holds the values the synthetic feed meant by its messy spellings."""
    truth: dict = {}
    fill_staging(engine, generate(600, start=T0, rows_per_timestamp=100, bad_every=50, truth=truth))
    migrate(engine)
    result = run(engine, limit=250)
    assert (result.stats.inserted, result.stats.rejected) == (588, 12) and len(truth) == 588
    stored = stored_products(engine)
    assert set(stored) == set(truth)
    for key, product in truth.items():
        assert {column: stored[key][column] for column in product} == product, key


def test_the_last_version_of_a_key_in_a_batch_wins(engine):
    """Versions of one product read in one batch: the newest (by src_updated_at, then staging id) is
    stored and logged once; the older ones of the batch never reach products or the change log."""

    def version(number, at, **values):
        """Product ``number`` of brand BL (the same base row each time) with ``values`` changed."""
        row, _ = staging_row(random.Random(number), "BL", number, at)
        return {**row, **values}

    second = T0 + dt.timedelta(seconds=1)
    fill_staging(
        engine,
        iter(
            [
                version(1, T0, price="1,299.00", category="女鞋/单鞋", name="经典尖头高跟鞋"),
                version(2, T0, price="599"),
                version(1, second, price="¥1399", category="女鞋/靴子", name="真皮短靴"),
                version(3, second, price="899", category="男鞋/休闲鞋"),
                version(3, second, price="999.50", category="童鞋/学步鞋"),  # same stamp, later id
            ]
        ),
    )
    migrate(engine)
    first = run(engine, limit=100, run_id="first")
    assert (first.stats.batches, first.stats.read, first.stats.inserted) == (1, 5, 3)
    stored = stored_products(engine)
    assert {k: (v["price"], v["category"], v["name"]) for k, v in stored.items() if k[1] != "BL0000002"} == {
        ("BL", "BL0000001"): (Decimal("1399.00"), "女鞋/靴子", "真皮短靴"),
        ("BL", "BL0000003"): (Decimal("999.50"), "童鞋/学步鞋", stored["BL", "BL0000003"]["name"]),
    }
    assert (stored["BL", "BL0000001"]["src_updated_at"], stored["BL", "BL0000003"]["src_updated_at"]) == (
        second,
        second,
    )

    # An existing product with two newer versions in the next batch: one update, to the newest.
    later = T0 + dt.timedelta(seconds=2)
    fill_staging(
        engine,
        iter(
            [
                version(1, later, price="1,499.00", category="女鞋/靴子", name="真皮短靴"),
                version(
                    1,
                    later + dt.timedelta(seconds=1),
                    price="1,599.00",
                    category="女鞋/单鞋",
                    name="真皮短靴",
                ),
            ]
        ),
    )
    again = run(engine, limit=100, run_id="again")
    assert (again.stats.read, again.stats.inserted, again.stats.updated) == (2, 0, 1)
    product = stored_products(engine)["BL", "BL0000001"]
    assert (product["price"], product["category"]) == (Decimal("1599.00"), "女鞋/单鞋")
    with engine.connect() as conn:
        log = conn.execute(
            sa.select(
                product_change_log.c.etl_run_id,
                product_change_log.c.action,
                product_change_log.c.old_version,
                product_change_log.c.new_version,
                product_change_log.c.staging_id,
                product_change_log.c.changed_fields,
            )
            .where(product_change_log.c.sku == "BL0000001")
            .order_by(product_change_log.c.id)
        ).all()
    assert [(r.etl_run_id, r.action, r.staging_id) for r in log] == [
        ("first", "insert", 3),
        ("again", "update", 7),
    ]
    assert log[1].old_version == log[0].new_version and log[1].new_version == product["data_version"]
    assert json.loads(log[1].changed_fields) == ["price", "category"]


def test_rows_sharing_one_timestamp_all_arrive_across_batches(engine):
    load_feed(engine)
    result = run(engine, limit=1000)
    assert (result.stats.batches, result.stats.read) == (3, 2500)
    assert (result.stats.inserted, result.stats.rejected) == (2475, 25)
    rows, log, rejects, mark = state(engine)
    assert len(rows) == 2475 and len({(b, s) for b, s, _, _ in rows}) == 2475
    assert sum(log.values()) == 2475 and {action for _, action, _ in log} == {"insert"}
    assert mark == Watermark(T0, 2500) == result.watermark_end
    again = run(engine, limit=1000)
    assert (again.stats.read, again.watermark_start, again.watermark_end) == (0, mark, mark)


def test_failure_after_batch_k_then_resume_equals_an_uninterrupted_run(engine, request):
    load_feed(engine, count=4500, per_timestamp=700)
    watermark_writes = []

    def fail_in_batch_three(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT") and "etl_watermark" in statement:
            watermark_writes.append(statement)
            if len(watermark_writes) == 3:
                raise RuntimeError("connection lost while committing batch 3")

    sa.event.listen(engine, "before_cursor_execute", fail_in_batch_three)
    with pytest.raises(RuntimeError, match="batch 3"):
        run(engine, limit=1000, run_id="crashed")
    sa.event.remove(engine, "before_cursor_execute", fail_in_batch_three)
    rows, log, _, mark = state(engine)
    assert len(rows) == sum(log.values()) == 2000 - 20  # two batches committed, batch 3 rolled back
    assert mark.id == 2000

    resumed = run(engine, limit=1000, run_id="resumed")
    assert resumed.watermark_start == mark and resumed.stats.read == 2500

    # The same feed, loaded without interruption into a second database, ends in the same state.
    other = engine_for(
        request.getfixturevalue(f"{engine.dialect.name.replace('mysql', 'mariadb')}_conn")("other_db")
    )
    load_feed(other, count=4500, per_timestamp=700)
    run(other, limit=1000)
    assert state(engine) == state(other)


def test_dry_run_writes_nothing(engine):
    load_feed(engine)
    before = state(engine)
    result = run(engine, limit=1000, dry_run=True)
    assert (result.stats.read, result.stats.inserted, result.stats.rejected) == (2500, 2475, 25)
    assert result.watermark_end == Watermark(T0, 2500)
    assert state(engine) == before == ([], Counter(), [], Watermark(None, None))


def test_rejects_keep_reason_and_run_id_and_the_batch_goes_on(engine):
    load_feed(engine, count=800, per_timestamp=100, bad_every=50)
    result = run(engine, limit=300, run_id="with_rejects")
    assert result.stats.rejected == 16 and result.stats.inserted == 784
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(
                product_etl_rejects.c.reason, product_etl_rejects.c.etl_run_id, product_etl_rejects.c.detail
            )
        ).all()
    assert Counter(reason for reason, _, _ in found) == {reason: 4 for reason in BAD_ROWS}
    assert {run_id for _, run_id, _ in found} == {"with_rejects"}
    assert all(detail for _, _, detail in found)
    run(engine, limit=300, resume=False, run_id="again")  # re-reading the same rows rejects nothing twice
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(product_etl_rejects)) == 16


def test_changes_update_only_what_changed_and_log_it(engine):
    load_feed(engine, count=2000, per_timestamp=400, bad_every=0)
    run(engine, limit=1000)
    changed = changed_versions(engine, 0.05, T0 + dt.timedelta(days=1))
    result = run(engine, limit=1000, run_id="changes")
    assert result.stats.read == changed and result.stats.updated + result.stats.unchanged == changed
    assert result.stats.updated > 0.9 * changed  # a few new prices may equal the old ones
    with engine.connect() as conn:
        updates = conn.execute(
            sa.select(product_change_log).where(product_change_log.c.etl_run_id == "changes")
        ).all()
    assert len(updates) == result.stats.updated
    assert all(u.action == "update" and json.loads(u.changed_fields) == ["price"] for u in updates)
    assert all(u.old_version != u.new_version for u in updates)

    # Reprocessing everything from the start changes nothing and logs nothing: the old versions it
    # reads first are older than what products holds, and never overwrite it.
    full = run(engine, limit=1000, resume=False, run_id="replay")
    assert (full.stats.inserted, full.stats.updated) == (0, 0)
    with engine.connect() as conn:
        assert not conn.execute(
            sa.select(product_change_log).where(product_change_log.c.etl_run_id == "replay")
        ).all()


def test_watermark_stays_behind_the_safety_lag(engine):
    load_feed(engine, count=300, per_timestamp=100, bad_every=0)  # stamped T0, T0+1s, T0+2s
    result = run(engine, limit=1000, now=T0 + dt.timedelta(seconds=61), safety_lag=dt.timedelta(seconds=60))
    assert result.stats.read == 200 and result.watermark_end == Watermark(T0 + dt.timedelta(seconds=1), 200)
    # A row committed late with an earlier stamp than the last one read so far is still picked up.
    fill_staging(
        engine, iter([{**next(generate(1, start=T0 + dt.timedelta(seconds=1), seed=9)), "sku": "LATE1"}])
    )
    later = run(engine, limit=1000, now=LATER)
    assert later.stats.read == 101 and later.stats.inserted == 101


LEGACY_PK = {"mysql": "id INTEGER PRIMARY KEY AUTO_INCREMENT", "sqlite": "id INTEGER PRIMARY KEY"}


def test_migration_of_a_products_table_keyed_by_sku(engine):
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE products ({LEGACY_PK[engine.dialect.name]}, sku VARCHAR(64) NOT NULL UNIQUE,"
            " name VARCHAR(255), price NUMERIC(12, 2), stock INTEGER)"
        )
        conn.exec_driver_sql(
            "INSERT INTO products (sku, name, price, stock) VALUES ('BL0000000', 'old', 1, 5), ('LEGACY9', 'x', 2, 7)"
        )
    load_feed(engine, count=8, per_timestamp=8, bad_every=0)
    assert migrate(engine) == []  # load_feed migrated; a second call has nothing left to do
    with engine.connect() as conn:
        legacy = conn.exec_driver_sql("SELECT brand_code, sku, stock FROM products ORDER BY sku").all()
    assert legacy == [("BL", "BL0000000", 5), ("", "LEGACY9", 7)]  # brand from the feed; other columns kept

    result = run(engine, limit=100)
    assert (result.stats.inserted, result.stats.updated) == (7, 1)  # the legacy row is updated, not doubled
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(products)) == 9
        (stock,) = conn.exec_driver_sql("SELECT stock FROM products WHERE sku = 'BL0000000'").one()
    assert stock == 5


def table_rows(engine, table: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY id")]


def test_existing_tables_of_another_shape_fail_before_anything_is_written(engine):
    """A DBA's products with a text price and a NOT NULL column the pipeline does not fill cannot be
    migrated into shape: the run stops before the migration, naming both, and products, the watermark
    and the rest of the database stay as they were. A missing brand_code and key are no problem: the
    migration adds them."""
    fill_staging(engine, generate(50, start=T0, bad_every=0))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE products ({LEGACY_PK[engine.dialect.name]}, sku VARCHAR(64) NOT NULL UNIQUE,"
            " name VARCHAR(255), price VARCHAR(32), stock INTEGER NOT NULL)"
        )
        conn.exec_driver_sql(
            "INSERT INTO products (sku, name, price, stock) VALUES ('BL0000000', 'old', '1', 5)"
        )
        ensure_watermark_table(conn)
        save_watermark(conn, WATERMARK_NAME, Watermark(T0 - dt.timedelta(days=1), 0))
    products_before, watermark_before = table_rows(engine, "products"), table_rows(engine, "etl_watermark")
    tables_before = set(sa.inspect(engine).get_table_names())

    with pytest.raises(TableShapeError) as caught:
        migrate(engine)
    message = str(caught.value)
    problems = message.split("products:\n")[1].split("\n  expected:")[0].splitlines()
    assert problems == [
        "  - price is VARCHAR(32): expected decimal(12,2)",
        "  - extra column stock is NOT NULL without a default: the pipeline's inserts leave it out",
    ]
    assert "nothing was written" in message and "products_staging" not in message

    assert table_rows(engine, "products") == products_before
    assert table_rows(engine, "etl_watermark") == watermark_before
    assert set(sa.inspect(engine).get_table_names()) == tables_before  # no schema version, no change log


def test_a_staging_table_without_the_columns_read_fails_naming_them(engine):
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE products_staging ({LEGACY_PK[engine.dialect.name]}, brand_code VARCHAR(32),"
            " sku VARCHAR(64), name VARCHAR(255), price DECIMAL(12, 2), currency VARCHAR(8),"
            " category VARCHAR(128), attributes TEXT, images TEXT, status VARCHAR(32), is_active VARCHAR(8),"
            " updated_at DATETIME NOT NULL)"
        )
    with pytest.raises(TableShapeError) as caught:
        migrate(engine)
    problems = str(caught.value).split("products_staging:\n")[1].split("\n  expected:")[0].splitlines()
    assert problems == ["  - missing column src_updated_at (datetime)"]  # a DECIMAL price reads fine
    assert set(sa.inspect(engine).get_table_names()) == {"products_staging"}


def test_without_returning_the_change_log_names_the_same_products(engine, monkeypatch):
    """Where the database cannot return the written rows' ids from the upsert (MySQL), the new products'
    ids are looked up after writing them: the change log points at the same rows either way."""
    # No rejects: SQLite writes those with RETURNING too.
    load_feed(engine, count=600, per_timestamp=100, bad_every=0)
    with engine.connect():
        pass  # the dialect learns what the server supports on its first connection
    monkeypatch.setattr(engine.dialect, "insert_executemany_returning", False)
    first = run(engine, limit=250)
    changed_versions(engine, 0.1, T0 + dt.timedelta(days=1))
    second = run(engine, limit=250)
    assert (first.stats.inserted, second.stats.inserted) == (600, 0) and second.stats.updated > 0
    with engine.connect() as conn:
        ids = {
            (b, s): i
            for i, b, s in conn.execute(sa.select(products.c.id, products.c.brand_code, products.c.sku))
        }
        logged = conn.execute(
            sa.select(
                product_change_log.c.product_id, product_change_log.c.brand_code, product_change_log.c.sku
            )
        ).all()
    assert len(logged) == 600 + second.stats.updated
    assert all(ids[brand, sku] == product_id for product_id, brand, sku in logged)
