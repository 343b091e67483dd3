"""The expected table shapes the README documents are the ones the pipelines check."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.common.table_shape import expected_shape
from include.common.watermark import etl_watermark
from include.dialog.schema import (
    people_customer_dialog,
    prepared_conversation_rejects,
    prepared_conversations,
)
from include.product.schema import product_change_log, product_etl_rejects, products, products_staging

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("table", "pipeline", "writes"),
    [
        (people_customer_dialog, "dialog_etl", False),
        (prepared_conversations, "dialog_etl", True),
        (prepared_conversation_rejects, "dialog_etl", True),
        (products_staging, "product_etl", False),
        (products, "product_etl", True),
        (product_change_log, "product_etl", True),
        (product_etl_rejects, "product_etl", True),
        (etl_watermark, "product_etl", True),
    ],
    ids=lambda value: getattr(value, "name", None),
)
def test_readme_documents_each_checked_shape(table, pipeline, writes):
    row = f"| `{table.name}` | {pipeline} {'writes' if writes else 'reads'} | {expected_shape(table, writes=writes)} |"
    assert row in README.read_text(), row
