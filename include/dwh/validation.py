"""What a row must look like to be written to a DWH table, derived from the table's columns.

The rules are read off the SQLAlchemy columns (:func:`column_rules`), so a column added to
:mod:`include.dwh.schema` is validated the moment it exists: ``nullable=False`` makes a field
required, ``String(n)`` caps its length in characters (as VARCHAR(n) does on MySQL and PostgreSQL),
integer columns bound their range, ``info["json"]`` text columns take JSON objects.

Validation is strict on purpose: a string where a number belongs, an unknown field or an
unparseable timestamp is the caller's bug, reported with the row index and field name, never
coerced or dropped. Checked values come back converted for the database (timestamps as naive UTC
datetimes, or as the text SQLite stores where the writer hands timestamps over as text; JSON
objects as compact text) together with their size in bytes, which the batch writer uses to bound
its batches.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import operator
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from include.dwh.schema import SERVER_COLUMNS, writable_columns

Kind = Literal["string", "integer", "number", "boolean", "timestamp", "json"]

#: Bytes counted for a number, boolean or timestamp: its width as a bound parameter.
FIXED_VALUE_BYTES = 8
_INT_RANGES = {sa.BigInteger: (-(2**63), 2**63 - 1), sa.Integer: (-(2**31), 2**31 - 1)}
_SHOWN_CHARS = 40  # how much of a bad value an error message repeats
#: The Python types a decoded JSON value of each kind has (``bool`` is not ``int`` here: ``type`` is exact).
_ACCEPTED_TYPES: dict[Kind, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "timestamp": (str,),
    "json": (dict,),
}
_FIXED_KINDS = frozenset({"integer", "number", "boolean", "timestamp"})
#: What ``isoformat(" ")`` writes for a naive timestamp with microseconds.
_SQLITE_TIMESTAMP_TEXT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}"
).fullmatch
_MAX_SHAPES = 4096  # row shapes (types per column) remembered as valid; bounds the memory whatever the input
#: How JSON objects are written: ``json.dumps`` with these options, without building an encoder per value.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """What one writable column accepts. ``max_length`` counts characters; ``None``: unbounded."""

    name: str
    kind: Kind
    required: bool
    max_length: int | None = None
    min_value: int | None = None
    max_value: int | None = None


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in the input: ``row`` is the 0-based index in the request's ``data`` list."""

    row: int
    field: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "message": self.message}


class ValidationError(ValueError):
    """Rows that cannot be written; nothing was written.

    ``truncated``: validation stopped at the error limit, so rows after the last error were not checked.
    """

    def __init__(self, errors: Sequence[RowError], *, truncated: bool = False) -> None:
        self.errors = list(errors)
        self.truncated = truncated
        first = self.errors[0]
        where = f"row {first.row}" + (f", field {first.field!r}" if first.field else "")
        notes = []
        if more := len(self.errors) - 1:
            notes.append(f"{more} more error{'s' if more > 1 else ''}")
        if truncated:
            notes.append(f"rows after row {self.errors[-1].row} not checked")
        super().__init__(f"{where}: {first.message}" + (f" ({'; '.join(notes)})" if notes else ""))


class _InvalidValueError(ValueError):
    """A value a checker refuses; the message says why, without the field name."""


def _kind(column: sa.Column) -> Kind:
    column_type = column.type
    if column.info.get("json"):
        return "json"
    if isinstance(column_type, sa.Boolean):
        return "boolean"
    if isinstance(column_type, sa.Integer):
        return "integer"
    if isinstance(column_type, sa.Float):
        return "number"
    if isinstance(column_type, sa.DateTime):
        return "timestamp"
    if isinstance(column_type, sa.String):
        return "string"
    raise TypeError(f"column {column.table.name}.{column.name}: no validation rule for {column_type!r}")


def _rule(column: sa.Column) -> ColumnRule:
    kind = _kind(column)
    low = high = None
    if kind == "integer":
        low, high = next(r for t, r in _INT_RANGES.items() if isinstance(column.type, t))
    length = getattr(column.type, "length", None) if kind == "string" else None
    return ColumnRule(column.name, kind, not column.nullable, length, low, high)


@functools.cache
def column_rules(table: sa.Table) -> Mapping[str, ColumnRule]:
    """The rules of ``table``'s writable columns, in table order."""
    return {column.name: _rule(column) for column in writable_columns(table)}


def _shown(value: str) -> str:
    return repr(value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "...")


def _utf8_size(text: str) -> int:
    """Encoded size; ``isascii`` is O(1) in CPython, so plain ASCII text is never re-encoded."""
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise _InvalidValueError(
            "contains an unpaired UTF-16 surrogate, which is not valid Unicode text"
        ) from None


def _string_checker(rule: ColumnRule) -> Callable[[Any], tuple[Any, int]]:
    max_length = rule.max_length

    def check(value: Any) -> tuple[Any, int]:
        if type(value) is not str:
            raise _InvalidValueError(f"expected a string, got {json_type_name(value)}")
        if max_length is not None and len(value) > max_length:
            raise _InvalidValueError(f"is {len(value)} characters long; at most {max_length} are allowed")
        if "\x00" in value:  # PostgreSQL refuses NUL in text; keep the tables portable
            raise _InvalidValueError("contains a NUL character")
        return value, _utf8_size(value)

    return check


def _integer_checker(rule: ColumnRule) -> Callable[[Any], tuple[Any, int]]:
    low, high = rule.min_value, rule.max_value

    def check(value: Any) -> tuple[Any, int]:
        if type(value) is not int:
            raise _InvalidValueError(f"expected an integer, got {json_type_name(value)}")
        if not low <= value <= high:
            raise _InvalidValueError(f"{value} is out of range [{low}, {high}]")
        return value, FIXED_VALUE_BYTES

    return check


def _check_number(value: Any) -> tuple[Any, int]:
    if type(value) is not float and type(value) is not int:
        raise _InvalidValueError(f"expected a number, got {json_type_name(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise _InvalidValueError("is too large for a double-precision number") from None
    if not math.isfinite(number):
        raise _InvalidValueError("expected a finite number")
    return number, FIXED_VALUE_BYTES


def _check_boolean(value: Any) -> tuple[Any, int]:
    if type(value) is not bool:
        raise _InvalidValueError(f"expected true or false, got {json_type_name(value)}")
    return value, FIXED_VALUE_BYTES


def _check_timestamp(value: Any) -> tuple[Any, int]:
    """ISO 8601 text, as Amplitude exports it (``2024-02-01 10:00:00.123456``); an offset converts to UTC."""
    if type(value) is not str:
        raise _InvalidValueError(f"expected an ISO 8601 timestamp string, got {json_type_name(value)}")
    try:
        timestamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _InvalidValueError(f"{_shown(value)} is not an ISO 8601 timestamp") from None
    if timestamp.tzinfo is not None:
        try:
            timestamp = timestamp.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is in year 0 in UTC
            raise _InvalidValueError(
                f"{_shown(value)} is outside the years 1 to 9999 once converted to UTC"
            ) from None
    return timestamp, FIXED_VALUE_BYTES


def _check_timestamp_text(value: Any) -> tuple[Any, int]:
    """:func:`_check_timestamp`, the timestamp as the text SQLite stores (see :func:`sqlite_timestamp`)."""
    timestamp, size = _check_timestamp(value)
    return sqlite_timestamp(value, timestamp), size


def sqlite_timestamp(value: str, timestamp: dt.datetime) -> str:
    """``timestamp`` (parsed from ``value``, naive UTC) as the text SQLite stores: ``isoformat(" ")``, which
    the sqlite3 module's adapter wrote and SQLAlchemy reads back. ``value`` itself when it already is
    that text, which its pattern proves (it parsed, so the date is a real one), and which costs less to
    prove than ``isoformat`` costs (eight times the parse). ``isoformat`` leaves out a zero fraction."""
    if timestamp.microsecond and _SQLITE_TIMESTAMP_TEXT(value):
        return value
    return timestamp.isoformat(" ")


def _check_json(value: Any) -> tuple[Any, int]:
    if type(value) is not dict:
        raise _InvalidValueError(f"expected a JSON object, got {json_type_name(value)}")
    try:
        text = _encode_json(value)
    except ValueError:
        raise _InvalidValueError("contains NaN or Infinity, which JSON cannot represent") from None
    except RecursionError:  # a value parsed just below the interpreter's limit, written a few calls deeper
        raise _InvalidValueError("nests arrays or objects too deeply") from None
    return text, _utf8_size(text)


_CHECKERS: dict[Kind, Callable[[ColumnRule], Callable[[Any], tuple[Any, int]]]] = {
    "string": _string_checker,
    "integer": _integer_checker,
    "number": lambda _rule: _check_number,
    "boolean": lambda _rule: _check_boolean,
    "timestamp": lambda _rule: _check_timestamp,
    "json": lambda _rule: _check_json,
}


def json_type_name(value: Any) -> str:
    """How a decoded JSON value is named in error messages: ``null``, ``a number``, ``an array``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class RowValidator:
    """Checks rows for one table and converts them into database parameters.

    Built once per write; :meth:`check` runs once per row, so the per-column checkers are resolved
    up front and the hot loop does one dictionary lookup and one call per field. ``table``: the table,
    or the rules of the values to check, by name. ``timestamps_as_text``: timestamps come back as the
    text SQLite stores (:func:`sqlite_timestamp`) instead of datetimes.
    """

    def __init__(
        self, table: sa.Table | Mapping[str, ColumnRule], *, timestamps_as_text: bool = False
    ) -> None:
        rules = column_rules(table) if isinstance(table, sa.Table) else table
        self.columns: tuple[str, ...] = tuple(rules)
        self._required = tuple(name for name, rule in rules.items() if rule.required)
        self._checkers = {name: _CHECKERS[rule.kind](rule) for name, rule in rules.items()}
        if timestamps_as_text:
            self._checkers.update(
                (name, _check_timestamp_text) for name, rule in rules.items() if rule.kind == "timestamp"
            )
        self._timestamps_as_text = timestamps_as_text
        self._rules = tuple(rules.values())
        self._allowed = frozenset(self.columns)
        self._shapes: set[tuple[type, ...]] = set()
        kinds = [rule.kind for rule in self._rules]
        self._strings = tuple(
            (i, rule.max_length or sys.maxsize) for i, rule in enumerate(self._rules) if rule.kind == "string"
        )
        self._integers = tuple(
            (i, rule.min_value, rule.max_value)
            for i, rule in enumerate(self._rules)
            if rule.kind == "integer"
        )
        self._numbers = tuple(i for i, kind in enumerate(kinds) if kind == "number")
        self._timestamps = tuple(i for i, kind in enumerate(kinds) if kind == "timestamp")
        self._jsons = tuple(i for i, kind in enumerate(kinds) if kind == "json")
        fixed = [i for i, kind in enumerate(kinds) if kind in _FIXED_KINDS]
        self._fixed_bytes = FIXED_VALUE_BYTES * len(fixed)
        self._fixed_of = _picker(fixed)
        self._texts_of = _picker([i for i, kind in enumerate(kinds) if kind in ("string", "json")])

    @property
    def rules(self) -> tuple[ColumnRule, ...]:
        """The rules of the table's writable columns, in :attr:`columns` order."""
        return self._rules

    def check(self, index: int, row: Any) -> tuple[dict[str, Any], int]:
        """Return the row's values for every writable column (``None`` when absent) and their size in
        bytes; raise :class:`ValidationError` listing every problem of the row."""
        values, size = self.check_values(index, row)
        return dict(zip(self.columns, values, strict=True)), size

    def check_values(self, index: int, row: Any) -> tuple[list[Any], int]:
        """:meth:`check`, the values as a list in :attr:`columns` order."""
        if type(row) is dict and self._allowed.issuperset(row):
            valid = self._check_valid(list(map(row.get, self.columns)))
            if valid is not None:
                return valid
        if type(row) is not dict:
            raise ValidationError(
                [RowError(index, None, f"expected a JSON object, got {json_type_name(row)}")]
            )
        values: dict[str, Any] = dict.fromkeys(self.columns)
        size = 0
        errors: list[RowError] = []
        checkers = self._checkers
        for name, value in row.items():
            checker = checkers.get(name)
            if checker is None:
                why = (
                    "is set when the row is written"
                    if name in SERVER_COLUMNS
                    else "is not a column of this table"
                )
                errors.append(RowError(index, name, why))
            elif value is not None:
                try:
                    values[name], value_size = checker(value)
                except _InvalidValueError as exc:
                    errors.append(RowError(index, name, str(exc)))
                else:
                    size += value_size
        for name in self._required:
            if row.get(name) is None:
                errors.append(RowError(index, name, "is required"))
        if errors:
            raise ValidationError(errors)
        return list(values.values()), size

    def _valid_shape(self, shape: tuple[type, ...]) -> bool:
        """Whether a row whose values have the types ``shape`` can be valid: required values present,
        each of its column's JSON type. Remembered."""
        for rule, value_type in zip(self._rules, shape, strict=True):
            if value_type is type(None):
                if rule.required:
                    return False
            elif value_type not in _ACCEPTED_TYPES[rule.kind]:
                return False
        if len(self._shapes) < _MAX_SHAPES:
            self._shapes.add(shape)
        return True

    def _check_valid(self, values: list[Any]) -> tuple[list[Any], int] | None:
        """:meth:`check_values` for a valid row, in one pass without a call per value, given the row's
        decoded values in :attr:`columns` order (``None`` for absent ones): the types of all its values
        are checked at once against the row shapes seen before, then :meth:`convert`. ``None`` when
        anything is off; the field by field checks then name every problem. Accepts exactly what they
        accept, with equal values."""
        shape = tuple(map(type, values))
        if shape not in self._shapes and not self._valid_shape(shape):
            return None
        for i, max_length in self._strings:
            if (value := values[i]) is not None and len(value) > max_length:
                return None
        for i, low, high in self._integers:
            if (value := values[i]) is not None and not low <= value <= high:
                return None
        for i in self._numbers:
            if (value := values[i]) is not None:
                try:
                    number = float(value)
                except OverflowError:
                    return None
                if not math.isfinite(number):
                    return None
                values[i] = number
        return self.convert(values)

    def convert(self, values: list[Any]) -> tuple[list[Any], int] | None:
        """The row's values converted for the database (in place) and their size in bytes, given values
        in :attr:`columns` order that are of their columns' types (numbers as finite floats), present
        where required, within their lengths and ranges: :meth:`convert_objects`, then
        :meth:`measure`. ``None`` when any value is not valid after all."""
        return self.measure(values) if self.convert_objects(values) else None

    def convert_objects(self, values: list[Any]) -> bool:
        """The timestamps (ISO 8601 text) and JSON objects among ``values`` converted for the database,
        in place; ``False`` when one cannot be (the values are then left half converted)."""
        try:
            for i in self._timestamps:
                if (value := values[i]) is not None:
                    timestamp = dt.datetime.fromisoformat(value)
                    if timestamp.tzinfo is not None:
                        timestamp = timestamp.astimezone(dt.UTC).replace(tzinfo=None)
                    values[i] = sqlite_timestamp(value, timestamp) if self._timestamps_as_text else timestamp
            for i in self._jsons:
                if (value := values[i]) is not None:
                    values[i] = _encode_json(value)
        except (ValueError, OverflowError, RecursionError):
            return False
        return True

    def measure(self, values: list[Any]) -> tuple[list[Any], int] | None:
        """``values``, converted for the database, and their size in bytes: the text of all the row's
        strings is checked for NUL and measured in one piece. ``None`` when a text holds NUL or is not
        valid Unicode (an unpaired surrogate)."""
        size = self._fixed_bytes - FIXED_VALUE_BYTES * self._fixed_of(values).count(None)
        text = "".join(filter(None, self._texts_of(values)))
        if "\x00" in text:
            return None
        try:
            size += len(text) if text.isascii() else len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return None
        return values, size


def _picker(indices: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """A function returning the items at ``indices`` of a sequence, as a tuple (however many)."""
    if len(indices) > 1:
        return operator.itemgetter(*indices)
    return lambda values: tuple(values[i] for i in indices)
