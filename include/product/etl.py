"""products_staging -> products, one keyset batch per transaction.

Every batch reads the next ``limit`` staging rows after the watermark ``(src_updated_at, id)``,
normalizes them, writes the products whose ``data_version`` changed (new ones included) with one bulk
upsert, logs each change, records rejects, and moves the watermark, all in one transaction: a crash
loses at most the batch in flight and a resumed run starts exactly there. The watermark never passes
``now - safety_lag``, so a row committed late with a slightly earlier ``src_updated_at`` is still
read. Nothing here touches Airflow.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from include.common.rejects import clip_detail
from include.common.sql import insert_ignore, upsert
from include.common.watermark import START, Watermark, load_watermark, save_watermark
from include.product.normalize import NormalizeError, Product, normalize
from include.product.schema import product_change_log, product_etl_rejects, products, products_staging

log = logging.getLogger(__name__)

WATERMARK_NAME = "products_staging"
KEY = ("brand_code", "sku")
BUSINESS_COLUMNS = ("name", "price", "currency", "category", "attributes", "images", "status", "is_active")


@dataclass
class RunStats:
    """What a run did (or, in a dry run, would have done)."""

    batches: int = 0
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def add(self, other: RunStats) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def read_batch(conn: sa.Connection, after: Watermark, until: dt.datetime, limit: int) -> Sequence[sa.Row]:
    """The next ``limit`` staging rows strictly after ``after`` in (src_updated_at, id) order."""
    s = products_staging.c
    query = sa.select(products_staging).where(s.src_updated_at <= until)
    if after.at is not None:
        # Spelled out rather than as a row comparison, which MariaDB does not turn into an index range.
        query = query.where(
            sa.or_(s.src_updated_at > after.at, sa.and_(s.src_updated_at == after.at, s.id > after.id))
        )
    return conn.execute(query.order_by(s.src_updated_at, s.id).limit(limit)).all()


def _columns_of(product: Product, version: str, run_id: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "brand_code": product.brand_code,
        "sku": product.sku,
        "name": product.name,
        "price": product.price,
        "currency": product.currency,
        "category": product.category,
        "attributes": product.attributes_json,
        "images": product.images_json,
        "status": product.status,
        "is_active": product.is_active,
        "data_version": version,
        "src_updated_at": product.src_updated_at,
        "etl_run_id": run_id,
        "created_at": now,
        "updated_at": now,
    }


#: Keys looked up per query. MariaDB rewrites an IN list of 1,000 values or more (a key pair counts
#: two) into a subquery joined by scanning the whole (brand_code, sku) index
#: (in_predicate_conversion_threshold); below that, each pair is one exact range of the index.
LOOKUP_CHUNK = 499


def _lookup(conn: sa.Connection, columns: list, keys: list[tuple[str, str]]) -> dict[tuple[str, str], sa.Row]:
    """Rows of ``products`` for ``keys``: (brand_code, sku) IN (...) in chunks short enough for the
    index. Only exact pairs count: a case-insensitive collation also matches other spellings."""
    p = products.c
    found: dict[tuple[str, str], sa.Row] = {}
    wanted = set(keys)
    for start in range(0, len(keys), LOOKUP_CHUNK):
        chunk = keys[start : start + LOOKUP_CHUNK]
        rows = conn.execute(
            sa.select(p.brand_code, p.sku, *columns).where(sa.tuple_(p.brand_code, p.sku).in_(chunk))
        ).all()
        found.update({(r.brand_code, r.sku): r for r in rows if (r.brand_code, r.sku) in wanted})
    return found


def _stored(conn: sa.Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], sa.Row]:
    """The current version of the products of ``keys``."""
    p = products.c
    columns = [p.id, p.data_version, p.src_updated_at, *(p[c] for c in BUSINESS_COLUMNS)]
    return _lookup(conn, columns, keys)


def _is_older(product: Product, old: sa.Row) -> bool:
    """An older version never overwrites a newer one: replaying the feed from the start, or a row
    arriving late, leaves products as the newest version made them."""
    return old.src_updated_at is not None and product.src_updated_at < old.src_updated_at


def _changed_fields(old: sa.Row | None, new: dict[str, Any]) -> list[str]:
    if old is None:
        return [c for c in BUSINESS_COLUMNS if new[c] not in (None, "{}", "[]")]
    changed = []
    for column in BUSINESS_COLUMNS:
        before = getattr(old, column)
        if column == "is_active" and before is not None:
            before = bool(before)
        if before != new[column]:
            changed.append(column)
    return changed


def _upsert(conn: sa.Connection, writes: list[dict[str, Any]], changes: list) -> dict[tuple[str, str], int]:
    """Write the changed products in one upsert and return the id of each, for the change log.

    Where the database returns the ids from the upsert itself (``RETURNING``), no look-up follows it;
    elsewhere updated products keep the id already looked up and only the new ones are looked up."""
    # created_at is kept on update: only the columns that describe the new version are overwritten.
    update = [c for c in writes[0] if c not in ("brand_code", "sku", "created_at")] if writes else []
    p = products.c
    if conn.dialect.insert_executemany_returning:
        written = upsert(conn, products, writes, KEY, update, returning=(p.id, p.brand_code, p.sku))
        return {(row.brand_code, row.sku): row.id for row in written}
    upsert(conn, products, writes, KEY, update)
    new_keys = [product.key for product, old, *_ in changes if old is None]
    ids = {key: row.id for key, row in _lookup(conn, [p.id], new_keys).items()}
    ids.update({product.key: old.id for product, old, *_ in changes if old is not None})
    return ids


def apply_batch(conn: sa.Connection, rows: Sequence[sa.Row], run_id: str, write: bool) -> RunStats:
    """Normalize ``rows`` and, when ``write``, upsert what changed, log it and keep the rejects."""
    stats = RunStats(batches=1, read=len(rows))
    now = _utcnow()
    latest: dict[tuple[str, str], Product] = {}
    rejects = []
    for row in rows:
        try:
            product = normalize(row._mapping)
        except NormalizeError as exc:
            rejects.append(
                {
                    "staging_id": row.id,
                    "src_updated_at": row.src_updated_at,
                    "brand_code": (row.brand_code or "")[:32] or None,
                    "sku": (row.sku or "")[:64] or None,
                    "reason": str(exc.reason),
                    "detail": clip_detail(exc.detail),
                    "etl_run_id": run_id,
                    "rejected_at": now,
                }
            )
            continue
        latest[product.key] = product  # rows come in time order: the last version of a key wins
    stats.rejected = len(rejects)
    stored = _stored(conn, list(latest))
    writes, changes = [], []
    for key, product in latest.items():
        old = stored.get(key)
        version = product.data_version  # a hash of the stable JSON: computed once per product
        if old is not None and (old.data_version == version or _is_older(product, old)):
            stats.unchanged += 1
            continue
        columns = _columns_of(product, version, run_id, now)
        writes.append(columns)
        changes.append((product, old, _changed_fields(old, columns), version))
        if old is None:
            stats.inserted += 1
        else:
            stats.updated += 1
    if write:
        _write(conn, writes, changes, rejects, run_id, now)
    return stats


@functools.cache
def _fields_json(fields: tuple[str, ...]) -> str:
    """``changed_fields`` as the change log stores it: there are few distinct lists, each serialized once."""
    return json.dumps(list(fields))


def _write(conn, writes, changes, rejects, run_id: str, now: dt.datetime) -> None:
    ids = _upsert(conn, writes, changes)
    log_rows = [
        {
            "product_id": ids[product.key],
            "brand_code": product.brand_code,
            "sku": product.sku,
            "action": "insert" if old is None else "update",
            "old_version": old.data_version if old is not None else None,
            "new_version": version,
            "changed_fields": _fields_json(tuple(fields)),
            "staging_id": product.staging_id,
            "src_updated_at": product.src_updated_at,
            "etl_run_id": run_id,
            "changed_at": now,
        }
        for product, old, fields, version in changes
    ]
    if log_rows:
        conn.execute(product_change_log.insert(), log_rows)
    insert_ignore(conn, product_etl_rejects, rejects)


def current_watermark(engine: sa.Engine) -> Watermark:
    with engine.connect() as conn:
        return load_watermark(conn, WATERMARK_NAME)


@dataclass
class RunResult:
    stats: RunStats
    watermark_start: Watermark
    watermark_end: Watermark


def run_batches(
    engine: sa.Engine,
    run_id: str,
    *,
    start: Watermark | None = None,
    limit: int = 1000,
    resume: bool = True,
    dry_run: bool = False,
    max_batches: int = 1000,
    safety_lag: dt.timedelta = dt.timedelta(minutes=5),
    now: dt.datetime | None = None,
) -> RunResult:
    """Process up to ``max_batches`` batches of ``limit`` rows from ``start``: by default the durable
    watermark, or the very beginning when not ``resume``. A dry run reads and compares everything and
    writes nothing, not even the watermark; its counts compare each batch with ``products`` as it is."""
    until = (now or _utcnow()) - safety_lag
    if start is None:
        start = current_watermark(engine) if resume else START
    mark, stats = start, RunStats()
    while stats.batches < max_batches:
        with engine.begin() as conn:
            rows = read_batch(conn, mark, until, limit)
            if not rows:
                break
            stats.add(apply_batch(conn, rows, run_id, write=not dry_run))
            mark = Watermark(rows[-1].src_updated_at, rows[-1].id)
            if not dry_run:
                save_watermark(conn, WATERMARK_NAME, mark)
        log.info("batch %d: %d rows, watermark %s", stats.batches, len(rows), mark.to_xcom())
        if len(rows) < limit:
            break
    return RunResult(stats, start, mark)
