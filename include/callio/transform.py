"""Callio API records -> warehouse rows (:mod:`include.callio.schema`). Pure functions, no I/O.

The API is loose about shapes: a reference such as a customer's ``user`` or a call's ``fromUser`` comes
as an object, as that object serialized to JSON, as a Python ``repr`` (``"{'_id': 'a1'}"``, written by
a Python client upstream), JSON-encoded twice, or as a bare id; times come as numbers or numeric text.
Every accepted spelling maps to one value here, so that ``row_hash`` only changes when the record
really changed and the MERGE on ``row_hash`` rewrites only those rows.

A record that cannot be loaded at all (no ``_id``, no usable time for the table's partition column)
raises :class:`RecordError`; :func:`transform_all` turns those into ``rejects`` rows and keeps going.
Anything else that is odd (an unreadable optional time, a garbled reference) becomes ``None`` in that
column: one bad field does not cost the whole record.

Customers arrive by the million, so the common case (objects and integers straight from JSON) takes
the shortest path through every function.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from include.callio import schema
from include.common.jsonutil import content_hash, sha256_hex, stable_json

Record = Mapping[str, Any]
Row = dict[str, Any]

MAX_DECODES = 3
"""How many times :func:`safe_eval` decodes a text at most: a payload JSON-encoded twice needs 2."""

REJECT_PAYLOAD_CHARS = 2_000
"""Longest ``rejects.payload``: enough to see what was wrong, small enough for a table of rejects."""

BUSINESS_UTC_OFFSET_MS = 7 * 3_600_000
"""Asia/Ho_Chi_Minh (:data:`schema.BUSINESS_TZ`) is UTC+7 all year, without daylight saving, since
1975-06-13 (tzdata). A constant offset makes the business day of an instant plain integer arithmetic
(:func:`business_date`), exact for every time since then: all Callio data."""

CUSTOM_FIELD_VALUE_KEYS = ("val", "value", "values", "text", "name")
"""Where a custom field keeps its value, by field type; the first key that is present and not null
holds it."""

_MS_PER_DAY = 86_400_000
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)
_LITERAL_WORDS: dict[str, Any] = {
    "null": None,
    "None": None,
    "true": True,
    "True": True,
    "false": False,
    "False": False,
}
_STRUCTURED_OPENERS = frozenset("{[\"'")
_UNDECODABLE = object()
_FLAT_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
""":func:`~include.common.jsonutil.stable_json` of an object of text, integers and nulls."""


class RecordError(ValueError):
    """A record that cannot become a row. ``reason`` is short and fixed per cause (no values in it),
    so rejects can be counted by reason; the record itself goes to ``rejects.payload``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- payloads ----------------------------------------------------------------------------------------


def safe_eval(value: Any) -> Any:
    """Decode a payload that may be serialized, without ever executing it.

    Objects and lists (and every non-text value) are returned as they are. A text that looks structured
    (it starts with ``{``, ``[`` or a quote) is read as JSON, else as a Python literal
    (:func:`ast.literal_eval`, which evaluates no code), and decoded again while the result is itself
    text, up to :data:`MAX_DECODES` times. ``null``/``None``, ``true``/``True`` and ``false``/``False``
    are the corresponding values. Any other text, and text that fails to decode, is returned trimmed:
    numeric text stays text, because ids and phone numbers are numeric text whose leading zeros matter.
    Blank text is ``None``. Never raises.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    for _ in range(MAX_DECODES):
        if not text:
            return None
        if text in _LITERAL_WORDS:
            return _LITERAL_WORDS[text]
        if text[0] not in _STRUCTURED_OPENERS:
            return text
        decoded = _decode(text)
        if decoded is _UNDECODABLE:
            return text
        if not isinstance(decoded, str):
            return decoded
        text = decoded.strip()
    return text or None


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _UNDECODABLE


def _text(value: Any) -> str | None:
    """A STRING column's value: text trimmed and NFC-normalized, so a name typed with decomposed
    Vietnamese diacritics equals (and hashes like) the precomposed spelling; other values as their
    stable JSON (``5``, ``true``, ``{"a":1}``). Blank is ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value.strip()) or None
    try:
        return stable_json(value)
    except (TypeError, ValueError):  # what only a Python literal can hold, e.g. a complex number
        return str(value)


def _id_text(value: Any) -> str | None:
    """An id is text or an integer; anything else (a float, a boolean, an object) is no id."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _reference(value: Any) -> Mapping[str, Any]:
    """A reference to another object (user, group) in any of its spellings, as an object.

    A list (staff may belong to several groups) stands for its first element; a bare id becomes
    ``{"_id": id}``. Text that still looks like an object or a list after :func:`safe_eval` is garbled
    JSON, not an id, and refers to nothing.
    """
    value = safe_eval(value)
    if isinstance(value, list | tuple):
        value = safe_eval(value[0]) if value else None
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value[0] in "{[":
        return {}
    ref_id = _id_text(value)
    return {"_id": ref_id} if ref_id is not None else {}


def _reference_id(value: Any) -> str | None:
    return _id_text(_reference(value).get("_id"))


def custom_field_value(custom_fields: Any) -> str | None:
    """``customField_0_val``: the value of the first custom field, as text.

    ``custom_fields`` is a list of ``{key, val | value | values | text | name}`` objects, the list or
    its elements possibly serialized (:func:`safe_eval`). The value is read from the first of
    :data:`CUSTOM_FIELD_VALUE_KEYS` that is present and not null; a field explicitly set to ``""``
    is empty rather than falling through to another key. A list value (a multiple choice) is its
    non-blank elements joined with ``", "``.
    """
    fields = safe_eval(custom_fields)
    if not isinstance(fields, list | tuple) or not fields:
        return None
    field = safe_eval(fields[0])
    if not isinstance(field, Mapping):
        return None
    value = next((field[key] for key in CUSTOM_FIELD_VALUE_KEYS if field.get(key) is not None), None)
    value = safe_eval(value)
    if isinstance(value, list | tuple):
        return ", ".join(text for text in map(_text, value) if text is not None) or None
    return _text(value)


# --- numbers and times -------------------------------------------------------------------------------------------


def to_int(value: Any) -> int | None:
    """An INT64 column's value from an integer, a float (fraction dropped) or numeric text; else
    ``None``. Booleans are not numbers here, and neither is a number beyond INT64, which would fail
    the whole load job rather than the one row."""
    if isinstance(value, str):
        value = _number_in(value)
    if isinstance(value, float):
        value = int(value) if math.isfinite(value) else None
    if type(value) is not int:
        return None
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _number_in(text: str) -> int | float | None:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def epoch_ms(value: Any) -> int | None:
    """An epoch-millisecond time as ``int``, or ``None`` when it is missing or unreadable.

    The API sends integers; numbers in text and floats are accepted too, and so are ISO 8601 texts
    (``2024-06-01T10:00:00Z``), read as UTC when they carry no offset, as servers write them. Zero and
    negative values are kept as sent (the column holds what the API said); :func:`business_date`
    gives them no day.
    """
    ms = to_int(value)
    if ms is not None or not isinstance(value, str):
        return ms
    try:
        instant = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.UTC)
    return (instant - _EPOCH_UTC) // _ONE_MS


def business_date(ms: int | None) -> dt.date | None:
    """The calendar day in Asia/Ho_Chi_Minh of an epoch-ms time; ``None`` for no time (``None``, zero,
    negative) or one beyond year 9999.

    Shifting by the constant +7 h (:data:`BUSINESS_UTC_OFFSET_MS`) and counting whole days is exact
    because the zone has no daylight saving; it takes about 0.1 µs (less than half a ``zoneinfo``
    conversion) and does not depend on the time zone database installed on the worker.
    """
    if ms is None or ms <= 0:
        return None
    try:
        return dt.date.fromordinal(_EPOCH_ORDINAL + (ms + BUSINESS_UTC_OFFSET_MS) // _MS_PER_DAY)
    except (ValueError, OverflowError):
        return None


def _partition_time(record: Record, field: str) -> tuple[int, dt.date]:
    """The time a table is partitioned by, and its day; a record without one cannot be loaded."""
    value = record.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RecordError(f"missing {field}")
    ms = epoch_ms(value)
    day = business_date(ms)
    if ms is None or day is None:
        raise RecordError(f"{field} is not a time")
    return ms, day


# --- rows --------------------------------------------------------------------------------------------


def row_hash(row: Mapping[str, Any]) -> str:
    """SHA-256 hex of the stable JSON (:mod:`include.common.jsonutil`) of a row's columns except
    ``row_hash`` itself: :func:`~include.common.jsonutil.content_hash` of them.

    Stable JSON makes the hash independent of key order, of ``1`` versus ``1.0`` and of how the source
    escaped its characters; dates are rendered ISO (``2024-06-01``). Rows of this module hold only
    text, integers, dates and nulls; for those the same JSON is produced directly, in half the time of
    the general canonicalization, which matters at a million customers per run.
    """
    values: dict[str, Any] = {}
    for name, value in row.items():
        kind = type(value)
        if kind is dt.date:
            value = value.isoformat()
        elif not (kind is str or kind is int or value is None):
            return content_hash({key: item for key, item in row.items() if key != "row_hash"})
        values[name] = value
    values.pop("row_hash", None)
    return sha256_hex(_FLAT_JSON(values))


def _record_id(record: Any) -> str:
    if not isinstance(record, Mapping):
        raise RecordError("record is not an object")
    record_id = _id_text(record.get("_id"))
    if record_id is None:
        raise RecordError("missing _id")
    return record_id


def customer_row(record: Record, tenant: str) -> Row:
    """A ``customer`` row. Raises :class:`RecordError` without ``_id`` or a usable ``updateTime``
    (the partition column ``NgayUpdate`` is its day)."""
    record_id = _record_id(record)
    update_time, update_day = _partition_time(record, "updateTime")
    assigned_time = epoch_ms(record.get("assignedTime"))
    user = _reference(record.get("user"))
    row: Row = {
        "_id": record_id,
        "assignedTime": assigned_time,
        "createTime": epoch_ms(record.get("createTime")),
        "updateTime": update_time,
        "name": _text(record.get("name")),
        "phone": _text(record.get("phone")),
        "user_id": _id_text(user.get("_id")),
        "user_name": _text(user.get("name")),
        "user_group_id": _reference_id(user.get("group")),
        "tenant": tenant,
        "row_hash": None,
        "customField_0_val": custom_field_value(record.get("customFields")),
        "NgayUpdate": update_day,
        "NgayAssign": business_date(assigned_time),
    }
    row["row_hash"] = row_hash(row)
    return row


def call_row(record: Record, tenant: str) -> Row:
    """A ``call_log`` row. Raises :class:`RecordError` without ``_id`` or a usable ``createTime``
    (the partition column ``NgayTao`` is its day)."""
    record_id = _record_id(record)
    create_time, create_day = _partition_time(record, "createTime")
    from_user = _reference(record.get("fromUser"))
    row: Row = {
        "_id": record_id,
        "chargeTime": epoch_ms(record.get("chargeTime")),
        "createTime": create_time,
        "direction": _text(record.get("direction")),
        "fromNumber": _text(record.get("fromNumber")),
        "toNumber": _text(record.get("toNumber")),
        "startTime": epoch_ms(record.get("startTime")),
        "endTime": epoch_ms(record.get("endTime")),
        "duration": to_int(record.get("duration")),
        "billDuration": to_int(record.get("billDuration")),
        "hangupCause": _text(record.get("hangupCause")),
        "answerTime": epoch_ms(record.get("answerTime")),
        "fromUser__id": _id_text(from_user.get("_id")),
        "fromUser__name": _text(from_user.get("name")),
        "fromGroup__id": _reference_id(record.get("fromGroup")),
        "tenant": tenant,
        "row_hash": None,
        "NgayTao": create_day,
    }
    row["row_hash"] = row_hash(row)
    return row


def staff_row(record: Record, tenant: str) -> Row:
    """A ``staff`` row (a Callio user); ``group_id`` is the first group when there are several.
    Raises :class:`RecordError` without ``_id`` or ``name``: staff rows are merged on (tenant, name)."""
    staff_id = _record_id(record)
    name = _text(record.get("name"))
    if name is None:
        raise RecordError("missing name")
    row: Row = {
        "_id": staff_id,
        "email": _text(record.get("email")),
        "name": name,
        "updateTime": epoch_ms(record.get("updateTime")),
        "createTime": epoch_ms(record.get("createTime")),
        "group_id": _reference_id(record.get("group")),
        "tenant": tenant,
        "row_hash": None,
    }
    row["row_hash"] = row_hash(row)
    return row


def group_row(record: Record, tenant: str) -> Row:
    """A ``group`` row. Raises :class:`RecordError` without ``_id``."""
    row: Row = {
        "group_id": _record_id(record),
        "name": _text(record.get("name")),
        "tenant": tenant,
        "row_hash": None,
    }
    row["row_hash"] = row_hash(row)
    return row


RowFn = Callable[[Record, str], Row]

TABLE_OF_ROW_FN: dict[RowFn, str] = {
    customer_row: schema.CUSTOMER.name,
    call_row: schema.CALL_LOG.name,
    staff_row: schema.STAFF.name,
    group_row: schema.GROUP.name,
}
"""The table each row function fills: the ``table_name`` of its rejects."""


def transform_all(records: Iterable[Any], tenant: str, row_fn: RowFn) -> tuple[list[Row], list[Row]]:
    """Rows for ``records`` and, for those raising :class:`RecordError`, ``rejects`` rows without
    ``run_id`` and ``rejected_at`` (the loader adds them).

    Only :class:`RecordError` is caught: any other exception is a defect here, and must stop the load
    rather than quietly reject every record.
    """
    table_name = TABLE_OF_ROW_FN[row_fn]
    rows: list[Row] = []
    rejects: list[Row] = []
    for record in records:
        try:
            rows.append(row_fn(record, tenant))
        except RecordError as error:
            rejects.append(
                {
                    "table_name": table_name,
                    "tenant": tenant,
                    "record_id": _id_text(record.get("_id")) if isinstance(record, Mapping) else None,
                    "reason": error.reason,
                    "payload": _payload(record),
                }
            )
    return rows, rejects


def _payload(record: Any) -> str:
    try:
        text = stable_json(record)
    except (TypeError, ValueError):
        text = repr(record)
    return text[:REJECT_PAYLOAD_CHARS]
