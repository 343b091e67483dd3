"""Versioned, re-runnable schema of the product ETL (the plan's ``sql/schema.sql``), for MySQL/MariaDB,
PostgreSQL and the SQLite default.

Each step looks at the live schema before changing it, so it is safe on a database in any state, and
is recorded in ``product_schema_version`` so that later runs skip it. The steps bring an existing
``products`` table keyed by ``sku`` alone to the ``(brand_code, sku)`` key without losing its rows or
its other columns.

Before any step, every table the pipeline reads or writes is checked against its model
(:mod:`include.common.table_shape`), allowing for what the pending steps will add, so a table they
cannot bring into shape (a column of another type, a NOT NULL column the pipeline does not fill, no
generated ``id``) stops the run before anything, the migration included, was written.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from include.common.table_shape import check_tables, unique_keys
from include.common.watermark import ensure_watermark_table, etl_watermark
from include.product.schema import product_change_log, product_etl_rejects, products, products_staging

log = logging.getLogger(__name__)

version_table = sa.Table(
    "product_schema_version",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("applied_at", sa.DateTime, nullable=False),
)

KEY_COLUMNS = ["brand_code", "sku"]


def _ops(conn: sa.Connection) -> Operations:
    return Operations(MigrationContext.configure(conn))


def _columns(conn: sa.Connection, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def step_products_table(conn: sa.Connection) -> None:
    """Create ``products``, or add the columns an existing one lacks (``brand_code`` defaults to '')."""
    if not sa.inspect(conn).has_table("products"):
        products.create(conn)
        return
    existing = _columns(conn, "products")
    ops = _ops(conn)
    for column in products.columns:
        if column.name in existing:
            continue
        default = column.server_default.arg if column.server_default is not None else None
        ops.add_column(
            "products",
            sa.Column(column.name, column.type, nullable=column.name != "brand_code", server_default=default),
        )
        log.info("products: added column %s", column.name)


def step_brand_sku_key(conn: sa.Connection) -> None:
    """Backfill brand_code of legacy rows, then replace a unique key on ``sku`` by (brand_code, sku).

    A legacy row gets the brand its SKU has in the staging feed when that brand is unambiguous, so the
    feed's next version of the product updates it instead of creating a twin; other legacy rows keep
    brand_code '' and stay unique by SKU within that empty brand.
    """
    if sa.inspect(conn).has_table("products_staging"):
        # SKUs match byte for byte; on MySQL that also spares comparing two tables' collations.
        same_sku = (
            "BINARY TRIM(s.sku) = BINARY products.sku"
            if conn.dialect.name == "mysql"
            else "TRIM(s.sku) = products.sku"
        )
        conn.execute(
            sa.text(
                "UPDATE products SET brand_code = COALESCE(("
                "  SELECT MIN(UPPER(TRIM(s.brand_code))) FROM products_staging s"
                f"  WHERE {same_sku} AND TRIM(COALESCE(s.brand_code, '')) <> ''"
                "  HAVING COUNT(DISTINCT UPPER(TRIM(s.brand_code))) = 1), '')"
                " WHERE brand_code = '' AND EXISTS ("
                f"  SELECT 1 FROM products_staging s WHERE {same_sku}"
                "  AND TRIM(COALESCE(s.brand_code, '')) <> '')"
            )
        )
    keys = unique_keys(conn, "products")
    sku_only = [(name, kind) for name, columns, kind in keys if columns == ["sku"]]
    has_key = any(columns == KEY_COLUMNS for _, columns, _ in keys)
    if conn.dialect.name == "sqlite" and any(kind == "constraint" for _, kind in sku_only):
        _rebuild_sqlite_without_sku_key(conn)
    else:
        ops = _ops(conn)
        for name, kind in sku_only:
            if kind == "index" or conn.dialect.name == "mysql":
                ops.drop_index(name, table_name="products")
            else:
                ops.drop_constraint(name, "products", type_="unique")
            log.info("products: dropped unique key %s on sku", name)
    if not has_key:
        # A unique index, not a constraint: it is created the same way on all three databases.
        _ops(conn).create_index("uq_products_brand_sku", "products", KEY_COLUMNS, unique=True)


def _rebuild_sqlite_without_sku_key(conn: sa.Connection) -> None:
    """SQLite cannot drop a UNIQUE written into CREATE TABLE: copy the table through Alembic's batch
    mode, which rebuilds it from reflection (columns, primary key, named indexes) and so leaves that
    unreflected UNIQUE behind."""
    with _ops(conn).batch_alter_table("products", recreate="always"):
        pass


def step_etl_tables(conn: sa.Connection) -> None:
    """The change log, the rejects and the shared watermark table."""
    product_change_log.create(conn, checkfirst=True)
    product_etl_rejects.create(conn, checkfirst=True)
    ensure_watermark_table(conn)


STEPS: list[tuple[int, str, Callable[[sa.Connection], None]]] = [
    (1, "products table and columns", step_products_table),
    (2, "key (brand_code, sku)", step_brand_sku_key),
    (3, "change log, rejects, watermark", step_etl_tables),
]


def check_schema(engine: sa.Engine, pending: set[int]) -> None:
    """Raise :class:`~include.common.table_shape.TableShapeError` unless the staging feed can be read
    and the existing tables can take the pipeline's rows once the ``pending`` steps have run."""
    may_add = {"products": [c.name for c in products.columns if c.name != "id"]} if 1 in pending else {}
    may_add_keys = {"products": [tuple(KEY_COLUMNS)]} if 2 in pending else {}
    check_tables(
        engine,
        "product_etl",
        reads=[products_staging],
        writes=[products, product_change_log, product_etl_rejects, etl_watermark],
        may_add=may_add,
        may_add_keys=may_add_keys,
    )


def migrate(engine: sa.Engine) -> list[str]:
    """Check the tables, then apply the steps not yet recorded; return the names of those applied now."""
    with engine.connect() as conn:
        recorded = sa.inspect(conn).has_table(version_table.name)
        done = set(conn.scalars(sa.select(version_table.c.version))) if recorded else set()
    check_schema(engine, {version for version, _, _ in STEPS if version not in done})
    with engine.begin() as conn:
        version_table.create(conn, checkfirst=True)
    applied = []
    for version, name, step in STEPS:
        if version in done:
            continue
        with engine.begin() as conn:
            step(conn)
            conn.execute(
                version_table.insert().values(
                    version=version, name=name, applied_at=dt.datetime.now(dt.UTC).replace(tzinfo=None)
                )
            )
        applied.append(name)
        log.info("product schema: applied %d %s", version, name)
    return applied
