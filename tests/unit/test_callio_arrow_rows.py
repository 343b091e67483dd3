"""Warehouse rows built into Arrow from buffers: the same arrays pyarrow's own converter makes, and clear
errors for values of the wrong type. That staging never imports pandas is tested through the DuckDB
warehouse (``tests/integration/test_callio_warehouse_duckdb.py``)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from include.callio.schema import Table
from include.callio.warehouse.arrow_rows import arrow_schema, record_batches

TABLE = Table(
    "sample",
    (
        ("name", "STRING"),
        ("count", "INT64"),
        ("day", "DATE"),
        ("at", "TIMESTAMP"),
        ("note", "STRING"),
        ("tenant", "STRING"),
    ),
    description="rows of every column type",
)
UTC7 = dt.timezone(dt.timedelta(hours=7))
TEXTS = ["", "plain", "Nguyễn Văn Ánh", "日本語", "emoji 🎉 and ü", "tab\tand\nnewline", "nul\x00inside"]


def sample_rows(n: int) -> list[dict]:
    """``n`` rows that mix NULLs, missing and extra keys, text of 1 to 4 bytes a character, naive
    and aware timestamps, and dates given as datetimes."""
    rows = []
    for i in range(n):
        row = {
            "name": TEXTS[i % len(TEXTS)] + str(i),
            "count": None if i % 5 == 0 else (i - n // 2) * 1_000_003,
            "day": dt.date(2024, 1, 1) + dt.timedelta(days=i % 400),
            "at": dt.datetime(2024, 3, 1, 12, 30, 15, i % 1_000_000, tzinfo=UTC7 if i % 2 else None),
            "note": TEXTS[i % 3] if i % 4 else None,
            "unknown": object(),
        }
        if i % 7 == 0:
            row["day"] = dt.datetime(2024, 2, 29, 23, 59)
        if i % 11 == 0:
            del row["at"]
        rows.append(row)
    return rows


def converted_by_pyarrow(rows: list[dict], fixed: dict) -> pa.Table:
    """The reference: pyarrow's converter of Python objects, one struct array for all rows."""
    rows = [{**row, **fixed} for row in rows]
    return pa.Table.from_struct_array(pa.array(rows, pa.struct(arrow_schema(TABLE))))


@pytest.mark.parametrize(("n", "size"), [(1, 10), (57, 10), (200, 64), (3, 3)])
def test_batches_hold_the_arrays_pyarrow_converts(n, size):
    rows = sample_rows(n)
    batches = list(record_batches(TABLE, rows, {"tenant": "Tâm"}, size=size))
    assert [b.num_rows for b in batches] == [min(size, n - start) for start in range(0, n, size)]
    built = pa.Table.from_batches(batches)
    built.validate(full=True)
    assert built.schema == arrow_schema(TABLE)
    expected = converted_by_pyarrow(rows, {"tenant": "Tâm"})
    for name in built.column_names:
        assert built.column(name).to_pylist() == expected.column(name).to_pylist(), name
    assert built.equals(expected)


def test_all_null_and_all_present_columns_and_no_rows():
    rows = [{"name": None, "count": 1, "day": None, "at": None, "note": None} for _ in range(20)]
    built = pa.Table.from_batches(list(record_batches(TABLE, rows, size=8)))
    built.validate(full=True)
    assert built.equals(converted_by_pyarrow(rows, {}))
    assert [built.column(n).null_count for n in built.column_names] == [20, 0, 20, 20, 20, 20]
    assert list(record_batches(TABLE, [])) == []


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("name", 12, r"sample\.name \(STRING\): .*expected str instance, int found"),
        ("count", 1.5, r"sample\.count \(INT64\): .*float"),
        ("count", "7", r"sample\.count \(INT64\)"),
        ("count", 2**63, r"sample\.count \(INT64\)"),
        ("day", "2024-01-01", r"sample\.day \(DATE\)"),
        ("at", dt.date(2024, 1, 1), r"sample\.at \(TIMESTAMP\): expected a datetime, got date"),
        ("note", "\ud800", r"sample\.note \(STRING\): .*surrogates"),
    ],
)
def test_a_value_of_the_wrong_type_is_an_error_naming_its_column(column, value, message):
    rows = sample_rows(30)
    rows[23][column] = value
    with pytest.raises(ValueError, match=message):
        list(record_batches(TABLE, rows, size=10))
