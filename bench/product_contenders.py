"""The three contenders of :mod:`bench.product_etl`, each run in a fresh worker process: ours
(:func:`include.product.etl.run_batches`), the plan's per-record baseline and the limit (one bulk upsert
of rows normalized beforehand), plus the preparation of the limit's input, which also times
normalizing on its own."""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import Sequence

import sqlalchemy as sa

from bench.common import MARIADB_URL, peak_rss_mb
from include.common.watermark import Watermark, load_watermark
from include.product.etl import (
    BUSINESS_COLUMNS,
    WATERMARK_NAME,
    _changed_fields,
    _columns_of,
    read_batch,
    run_batches,
)
from include.product.normalize import NormalizeError, normalize
from include.product.schema import products_staging

BATCH = 1000
FIRST_AT = dt.datetime(2024, 6, 1)
NOW = FIRST_AT + dt.timedelta(days=2)  # after every row: with no safety lag, all rows are due
EPOCH = dt.datetime(1970, 1, 1)  # the plan's first watermark


@functools.cache
def _engine(db: str) -> sa.Engine:
    """One engine per worker, as one task process holds one."""
    return sa.create_engine(MARIADB_URL.format(db=db))


def warm(db: str) -> float:
    """Import everything and open the connection, so that the timed run starts from a ready worker."""
    with _engine(db).connect():
        pass
    return peak_rss_mb()


def ours(db: str, limit: int) -> float:
    run_batches(_engine(db), "bench", limit=limit, max_batches=10**9, safety_lag=dt.timedelta(0), now=NOW)
    return peak_rss_mb()


STAGING_COLUMNS = ", ".join(c.name for c in products_staging.columns)
PLAN_CURSOR = (
    f"SELECT {STAGING_COLUMNS} FROM products_staging"
    " WHERE src_updated_at <= %s AND (src_updated_at > %s OR (src_updated_at = %s AND id > %s))"
    " ORDER BY src_updated_at, id LIMIT %s"
)
UPDATED_COLUMNS = (*BUSINESS_COLUMNS, "data_version", "src_updated_at", "etl_run_id", "updated_at")
PRODUCT_COLUMNS = ("brand_code", "sku", *UPDATED_COLUMNS, "created_at")
LOG_COLUMNS = (
    "product_id", "brand_code", "sku", "action", "old_version", "new_version", "changed_fields", "staging_id",
    "src_updated_at", "etl_run_id", "changed_at",
)  # fmt: skip
REJECT_COLUMNS = (
    "staging_id", "src_updated_at", "brand_code", "sku", "reason", "detail", "etl_run_id", "rejected_at"
)  # fmt: skip
LOOK_UP = (
    f"SELECT id, data_version, {', '.join(BUSINESS_COLUMNS)} FROM products WHERE brand_code = %s AND sku = %s"
)
UPDATE = f"UPDATE products SET {', '.join(f'{c} = %s' for c in UPDATED_COLUMNS)} WHERE id = %s"
SAVE_MARK = (
    "INSERT INTO etl_watermark (table_name, last_processed_at, last_processed_id, updated_at)"
    " VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE last_processed_at = VALUES(last_processed_at),"
    " last_processed_id = VALUES(last_processed_id), updated_at = VALUES(updated_at)"
)


def _insert_sql(table: str, columns: Sequence[str], prefix: str = "INSERT") -> str:
    return f"{prefix} INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"


INSERT_PRODUCT = _insert_sql("products", PRODUCT_COLUMNS)
INSERT_LOG = _insert_sql("product_change_log", LOG_COLUMNS)
INSERT_REJECT = _insert_sql("product_etl_rejects", REJECT_COLUMNS, "INSERT IGNORE")


def baseline(db: str, max_rows: int) -> float:
    """The plan's worker: batches from the watermark, then one round trip per step of every record."""
    engine = _engine(db)
    with engine.connect() as conn:
        mark = load_watermark(conn, WATERMARK_NAME)
    at, last_id, done = mark.at or EPOCH, mark.id or 0, 0
    while done < max_rows:
        size = min(BATCH, max_rows - done)
        with engine.begin() as conn:
            rows = conn.exec_driver_sql(PLAN_CURSOR, (NOW, at, at, last_id, size)).all()
            if not rows:
                break
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            for row in rows:
                _process_record(conn, row, now)
            at, last_id, done = rows[-1].src_updated_at, rows[-1].id, done + len(rows)
            conn.exec_driver_sql(SAVE_MARK, (WATERMARK_NAME, at, last_id, now))
        if len(rows) < size:
            break
    return peak_rss_mb()


def _process_record(conn: sa.Connection, row: sa.Row, now: dt.datetime) -> None:
    """Normalize, look up, compare, write, log: the plan's ``process_record``, with the same
    normalization and changed-field list as ours so that only the database access differs."""
    try:
        product = normalize(row._mapping)
    except NormalizeError as exc:
        brand, sku = (row.brand_code or "")[:32] or None, (row.sku or "")[:64] or None
        reject = (row.id, row.src_updated_at, brand, sku, str(exc.reason), exc.detail[:255], "baseline", now)
        conn.exec_driver_sql(INSERT_REJECT, reject)
        return
    old = conn.exec_driver_sql(LOOK_UP, product.key).first()
    if old is not None and old.data_version == product.data_version:
        return
    columns = _columns_of(product, product.data_version, "baseline", now)
    if old is None:
        product_id = conn.exec_driver_sql(
            INSERT_PRODUCT, tuple(columns[c] for c in PRODUCT_COLUMNS)
        ).lastrowid
    else:
        product_id = old.id
        conn.exec_driver_sql(UPDATE, (*(columns[c] for c in UPDATED_COLUMNS), old.id))
    log_entry = (
        product_id,
        product.brand_code,
        product.sku,
        "insert" if old is None else "update",
        old.data_version if old is not None else None,
        product.data_version,
        json.dumps(_changed_fields(old, columns)),
        product.staging_id,
        product.src_updated_at,
        "baseline",
        now,
    )
    conn.exec_driver_sql(INSERT_LOG, log_entry)


LIMIT_UPSERT = (
    INSERT_PRODUCT + " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c} = VALUES({c})" for c in UPDATED_COLUMNS)
)


def limit(db: str) -> float:
    """Write already-normalized rows blindly: read ``products_ready`` in batches of 1000 and send each
    as one multi-row ``INSERT ... ON DUPLICATE KEY UPDATE`` (mysqlclient's ``executemany`` folds the
    rows into one statement). Normalizing is left out: it is measured on its own (:func:`prepare`)."""
    engine = _engine(db)
    last = 0
    while True:
        with engine.begin() as conn:
            rows = conn.exec_driver_sql(READY_BATCH, (last, BATCH)).all()
            if not rows:
                break
            conn.exec_driver_sql(LIMIT_UPSERT, [tuple(row)[1:] for row in rows])
        last = rows[-1][0]
        if len(rows) < BATCH:
            break
    return peak_rss_mb()


READY_BATCH = (
    f"SELECT id, {', '.join(PRODUCT_COLUMNS)} FROM products_ready WHERE id > %s ORDER BY id LIMIT %s"
)


def prepare(engine: sa.Engine) -> float:
    """Normalize the rows a run will process (from the stored watermark) into ``products_ready``, the
    limit's input; return the seconds spent in normalizing alone (``normalize`` and the columns
    ours writes), which is what a client pays on top of the limit's writes."""
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS products_ready")
        conn.exec_driver_sql("CREATE TABLE products_ready LIKE products")
        mark = load_watermark(conn, WATERMARK_NAME)
    spent = 0.0
    while True:
        with engine.begin() as conn:
            rows = read_batch(conn, mark, NOW, BATCH)
            if not rows:
                break
            start = time.perf_counter()
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            values = [v for v in (_product_values(row, now) for row in rows) if v is not None]
            spent += time.perf_counter() - start
            if values:
                conn.exec_driver_sql(_insert_sql("products_ready", PRODUCT_COLUMNS), values)
        mark = Watermark(rows[-1].src_updated_at, rows[-1].id)
        if len(rows) < BATCH:
            break
    return spent


def _product_values(row: sa.Row, now: dt.datetime) -> tuple | None:
    try:
        product = normalize(row._mapping)
    except NormalizeError:
        return None
    columns = _columns_of(product, product.data_version, "limit", now)
    return tuple(columns[c] for c in PRODUCT_COLUMNS)
