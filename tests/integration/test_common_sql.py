"""insert_ignore, upsert and the watermark store on SQLite, MariaDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import sqlalchemy as sa

from include.common.db import engine_for
from include.common.sql import insert_ignore, upsert
from include.common.watermark import START, Watermark, ensure_watermark_table, load_watermark, save_watermark

meta = sa.MetaData()
items = sa.Table(
    "items",
    meta,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("code", sa.String(32), nullable=False, unique=True),
    sa.Column("name", sa.String(64)),
    sa.Column("price", sa.Numeric(12, 2)),
    sa.Column("active", sa.Boolean),
)


def _engine(factory):
    engine = engine_for(factory("common_db"))
    meta.create_all(engine)
    return engine


def _rows(engine):
    with engine.connect() as conn:
        return {r.code: (r.name, r.price) for r in conn.execute(sa.select(items))}


def test_insert_ignore_counts_only_new_rows(any_db_conn):
    engine = _engine(any_db_conn)
    with engine.begin() as conn:
        assert insert_ignore(conn, items, [{"code": "a", "name": "甲"}, {"code": "b", "name": "乙"}]) == 2
    with engine.begin() as conn:
        batch = [{"code": c, "name": f"new {c}"} for c in ("a", "b", "c", "d")]
        assert insert_ignore(conn, items, batch) == 2
        assert insert_ignore(conn, items, []) == 0
    rows = _rows(engine)
    assert rows["a"][0] == "甲" and rows["d"][0] == "new d" and len(rows) == 4


def test_insert_ignore_is_race_free(any_db_conn):
    """Two writers inserting the same keys at once: every key exists once, inserted counts add up."""
    engine = _engine(any_db_conn)
    counts: list[int] = []
    rows = [{"code": f"k{i}", "name": "x"} for i in range(500)]

    def writer():
        for start in range(0, 500, 50):
            with engine.begin() as conn:
                counts.append(insert_ignore(conn, items, rows[start : start + 50]))

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 500
    assert len(_rows(engine)) == 500


def test_upsert_inserts_then_updates_selected_columns(any_db_conn):
    engine = _engine(any_db_conn)
    with engine.begin() as conn:
        upsert(conn, items, [{"code": "a", "name": "one", "price": 1}], key=["code"])
        upsert(
            conn,
            items,
            [{"code": "a", "name": "two", "price": 2}, {"code": "b", "name": "bee", "price": 3}],
            key=["code"],
            update=["price"],
        )
    rows = _rows(engine)
    assert rows["a"] == ("one", 2) and rows["b"] == ("bee", 3)


def test_upsert_returns_every_written_row_across_statements(any_db_conn):
    """``returning`` gives each row inserted or updated, whatever the number of statements the rows
    take (MariaDB: pages of ``RETURNING_PAGE_ROWS`` built by the helper); values go through their
    columns' types (a boolean, a decimal) either way."""
    engine = _engine(any_db_conn)
    first = [
        {"code": f"c{i:04d}", "name": "n", "price": Decimal("1.50"), "active": i % 2 == 0}
        for i in range(2_500)
    ]
    with engine.begin() as conn:
        inserted = upsert(conn, items, first, key=["code"], returning=(items.c.id, items.c.code))
    ids = {row.code: row.id for row in inserted}
    assert len(inserted) == 2_500 and len(set(ids.values())) == 2_500

    again = [
        {"code": f"c{i:04d}", "name": "m", "price": Decimal("2.25"), "active": None}
        for i in range(1_300, 2_800)
    ]
    with engine.begin() as conn:
        written = upsert(
            conn, items, again, key=["code"], update=["price", "active"], returning=(items.c.id, items.c.code)
        )

    assert len(written) == 1_500
    assert all(row.id == ids[row.code] for row in written if row.code in ids)  # updated rows keep their ids
    with engine.connect() as conn:
        stored = {r.code: (r.name, r.price, r.active) for r in conn.execute(sa.select(items))}
    assert len(stored) == 2_800
    assert stored["c0000"] == ("n", Decimal("1.50"), True) and stored["c0001"] == (
        "n",
        Decimal("1.50"),
        False,
    )
    assert stored["c1300"] == ("n", Decimal("2.25"), None) and stored["c2799"] == ("m", Decimal("2.25"), None)


def test_watermark_round_trip_inside_the_callers_transaction(any_db_conn):
    engine = _engine(any_db_conn)
    with engine.begin() as conn:
        ensure_watermark_table(conn)
        assert load_watermark(conn, "products_staging") == START
        save_watermark(conn, "products_staging", Watermark(dt.datetime(2024, 6, 1, 8, 0, 1), 42))
    try:
        with engine.begin() as conn:
            save_watermark(conn, "products_staging", Watermark(dt.datetime(2024, 6, 2), 99))
            raise RuntimeError("batch failed")
    except RuntimeError:
        pass
    with engine.connect() as conn:
        mark = load_watermark(conn, "products_staging")
    assert mark == Watermark(dt.datetime(2024, 6, 1, 8, 0, 1), 42)  # the failed batch did not move it
    assert mark.to_xcom() == {"at": "2024-06-01 08:00:01", "id": 42}
