"""Synthetic ``products_staging`` feeds: shoe products as an upstream system exports them.

Values come in the messy forms real feeds use (prices as ``1,299.00`` or ``¥1299``, attributes JSON
sometimes encoded twice, ``是``/``否`` booleans, padded strings), many rows share one
``src_updated_at`` (exports stamp whole batches), and a few rows are broken on purpose. Deterministic
for a seed, so tests know exactly what a correct load produces.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from decimal import Decimal

import sqlalchemy as sa

from include.product.schema import products_staging, staging_metadata

BRANDS = ["BL", "ST", "TT", "JP"]
CATEGORIES = ["女鞋/单鞋", "女鞋/靴子", "男鞋/休闲鞋", "运动/跑步鞋", "童鞋/学步鞋"]
COLORS = ["黑色", "白色", "米色", "酒红", "灰色"]
MATERIALS = ["牛皮", "羊皮", "网布", "合成革"]
NAMES = ["经典尖头高跟鞋", "复古乐福鞋", "轻便透气跑鞋", "真皮短靴", "厚底老爹鞋", "一脚蹬懒人鞋"]
BAD_ROWS = {  # column overrides that make a row unloadable, with the reject reason expected
    "missing_brand_code": {"brand_code": "  "},
    "missing_sku": {"sku": None},
    "bad_price": {"price": "价格待定"},
    "bad_attributes": {"attributes": '{"color": "黑色",'},
}


#: What each spelling of ``status`` and ``is_active`` in the feed means.
STATUS_MEANING = {"on_sale": "on_sale", "ON_SALE": "on_sale", "off_shelf": "off_shelf"}
ACTIVE_MEANING = {"1": True, "true": True, "是": True, "0": False, "否": False}


def staging_row(rng: random.Random, brand: str, number: int, at: dt.datetime) -> tuple[dict, dict]:
    """One staging row in the feed's messy spellings, and the product it stands for: the values a
    correct load stores in ``products`` (``attributes`` and ``images`` as Python values)."""
    price = rng.choice([299, 399, 599, 899, 1299, 1599]) + rng.choice([0, 0.5])
    attributes = {"color": rng.choice(COLORS), "material": rng.choice(MATERIALS), "sizes": [35, 36, 37, 38]}
    text = json.dumps(attributes, ensure_ascii=rng.random() < 0.5)
    brand_code = rng.choice([brand, brand.lower(), f" {brand} "])
    name = rng.choice(NAMES)
    price_text = rng.choice([f"{price:,.2f}", f"¥{price:g}", f"{price:g}"])
    category = rng.choice(CATEGORIES)
    attributes_text = json.dumps(text) if rng.random() < 0.2 else text  # some feeds encode twice
    images = [f"https://img.example.com/{brand}/{number}/{i}.jpg" for i in range(rng.randint(1, 3))]
    status = rng.choice(list(STATUS_MEANING))
    is_active = rng.choice(list(ACTIVE_MEANING))
    sku = f"{brand}{number:07d}"
    row = {
        "brand_code": brand_code,
        "sku": sku,
        "name": f" {name} ",
        "price": price_text,
        "currency": "CNY",
        "category": category,
        "attributes": attributes_text,
        "images": ",".join(images),
        "status": status,
        "is_active": is_active,
        "src_updated_at": at,
    }
    product = {
        "brand_code": brand,
        "sku": sku,
        "name": name,
        "price": Decimal(f"{price:.2f}"),
        "currency": "CNY",
        "category": category,
        "attributes": attributes,
        "images": images,
        "status": STATUS_MEANING[status],
        "is_active": ACTIVE_MEANING[is_active],
        "src_updated_at": at,
    }
    return row, product


def generate(
    count: int,
    *,
    start: dt.datetime,
    rows_per_timestamp: int = 500,
    bad_every: int = 0,
    seed: int = 3,
    truth: dict[tuple[str, str], dict] | None = None,
) -> Iterator[dict]:
    """``count`` rows of distinct products, stamped ``rows_per_timestamp`` at a time, one second
    apart from ``start``; every ``bad_every``-th row (if set) is broken in one of the BAD_ROWS ways.
    ``truth``, when given, receives each loadable row's product by ``(brand_code, sku)``."""
    rng = random.Random(seed)
    bad = list(BAD_ROWS.values())
    for n in range(count):
        brand = BRANDS[n % len(BRANDS)]
        row, product = staging_row(rng, brand, n, start + dt.timedelta(seconds=n // rows_per_timestamp))
        if bad_every and n % bad_every == bad_every - 1:
            row.update(bad[(n // bad_every) % len(bad)])
        elif truth is not None:
            truth[brand, product["sku"]] = product
        yield row


def changed_versions(engine: sa.Engine, share: float, at: dt.datetime, seed: int = 5) -> int:
    """Append a new version (new price) of ``share`` of the products, stamped ``at``; return how many."""
    rng = random.Random(seed)
    s = products_staging.c
    with engine.begin() as conn:
        latest = conn.execute(sa.select(*products_staging.columns).order_by(s.id)).all()
        picked = [r for r in latest if rng.random() < share]
        rows = [
            {
                **{k: v for k, v in r._mapping.items() if k != "id"},
                "price": f"{rng.randint(100, 2000)}.00",
                "src_updated_at": at,
            }
            for r in picked
        ]
        for start in range(0, len(rows), 5000):
            conn.execute(products_staging.insert(), rows[start : start + 5000])
    return len(rows)


def fill_staging(engine: sa.Engine, rows: Iterator[dict], batch: int = 5000) -> int:
    """Create ``products_staging`` if missing and insert ``rows``."""
    staging_metadata.create_all(engine, checkfirst=True)
    total, buffer = 0, []
    with engine.begin() as conn:
        for row in rows:
            buffer.append(row)
            if len(buffer) >= batch:
                conn.execute(products_staging.insert(), buffer)
                total, buffer = total + len(buffer), []
        if buffer:
            conn.execute(products_staging.insert(), buffer)
            total += len(buffer)
    return total
