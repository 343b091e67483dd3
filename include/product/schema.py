"""Tables of the product ETL (database ``belle_ai`` in production).

``products_staging`` is the DBA's raw feed, read-only for the pipeline. One row per product change:

==============  =================================================================================
id              primary key; with ``src_updated_at`` the keyset the pipeline reads in
brand_code      brand the SKU belongs to (SKUs repeat across brands)
sku             the brand's article number
name            display name
price           as the feed sends it: ``1299``, ``1,299.00``, ``¥1299.5`` (text)
currency        ISO 4217 code, e.g. ``CNY``
category        category path, e.g. ``女鞋/单鞋``
attributes      JSON object (sometimes JSON-encoded twice by the feed)
images          JSON array of URLs, or URLs separated by commas / newlines
status          ``on_sale``, ``off_shelf``, ...
is_active       ``1``/``0``, ``true``/``false``, ``是``/``否``, ...
src_updated_at  when the row last changed upstream, **UTC**
==============  =================================================================================

``products`` is keyed by ``(brand_code, sku)`` and carries the normalized fields plus
``data_version`` (hash of the business fields); ``product_change_log`` gets one row per insert or
update; ``product_etl_rejects`` keeps every staging row that could not be normalized.
"""

from __future__ import annotations

import sqlalchemy as sa

from include.common.rejects import rejects_table
from include.common.types import BigId, LongText

staging_metadata = sa.MetaData()
metadata = sa.MetaData()

products_staging = sa.Table(
    "products_staging",
    staging_metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("brand_code", sa.String(32)),
    sa.Column("sku", sa.String(64)),
    sa.Column("name", sa.String(255)),
    # A DBA's table may type these as what they hold: the normalizer reads those values too.
    sa.Column("price", sa.String(32), info={"shape_accepts": ("decimal", "integer", "float")}),
    sa.Column("currency", sa.String(8)),
    sa.Column("category", sa.String(128)),
    sa.Column("attributes", LongText, info={"shape_accepts": ("json", "jsonb")}),
    sa.Column("images", LongText, info={"shape_accepts": ("json", "jsonb")}),
    sa.Column("status", sa.String(32)),
    sa.Column("is_active", sa.String(8), info={"shape_accepts": ("boolean", "integer")}),
    sa.Column("src_updated_at", sa.DateTime, nullable=False),
    # The pipeline's keyset cursor.
    sa.Index("ix_products_staging_updated_id", "src_updated_at", "id"),
    mysql_charset="utf8mb4",
)

products = sa.Table(
    "products",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("brand_code", sa.String(32), nullable=False, server_default=""),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("name", sa.String(255)),
    sa.Column("price", sa.Numeric(12, 2)),
    sa.Column("currency", sa.String(3)),
    sa.Column("category", sa.String(128)),
    sa.Column("attributes", LongText),
    sa.Column("images", LongText),
    sa.Column("status", sa.String(32)),
    sa.Column("is_active", sa.Boolean),
    sa.Column("data_version", sa.String(64)),
    sa.Column("src_updated_at", sa.DateTime),
    sa.Column("etl_run_id", sa.String(250)),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
    sa.UniqueConstraint("brand_code", "sku", name="uq_products_brand_sku"),
    mysql_charset="utf8mb4",
)

product_change_log = sa.Table(
    "product_change_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("product_id", sa.BigInteger, nullable=False),
    sa.Column("brand_code", sa.String(32), nullable=False),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("action", sa.String(8), nullable=False, comment="insert | update"),
    sa.Column("old_version", sa.String(64)),
    sa.Column("new_version", sa.String(64), nullable=False),
    sa.Column("changed_fields", sa.Text, nullable=False, comment="JSON array of field names"),
    sa.Column("staging_id", sa.BigInteger, nullable=False),
    sa.Column("src_updated_at", sa.DateTime, nullable=False),
    sa.Column("etl_run_id", sa.String(250), nullable=False),
    sa.Column("changed_at", sa.DateTime, nullable=False, comment="UTC"),
    sa.Index("ix_product_change_log_key", "brand_code", "sku"),
    mysql_charset="utf8mb4",
)

# The same version of the same row is rejected once, however often it is read again.
product_etl_rejects = rejects_table(
    "product_etl_rejects",
    metadata,
    sa.Column("staging_id", sa.BigInteger, nullable=False),
    sa.Column("src_updated_at", sa.DateTime, nullable=False),
    sa.Column("brand_code", sa.String(32)),
    sa.Column("sku", sa.String(64)),
    unique=("staging_id", "src_updated_at"),
    unique_name="uq_product_rejects_row",
)
