"""Rows checked straight from their JSON text, for the bodies of ``POST /dwh/<table>``.

A row's text is decoded by msgspec into a struct typed after the table's rules (type, required, the
length of strings, the range of integers, no unknown field), so a valid row is checked in C while it
is decoded; :meth:`RowValidator.convert <include.dwh.validation.RowValidator.convert>` does the rest
(timestamps, NUL, sizes, JSON objects as text). Decoding with the standard library and checking field
by field in Python took most of a write's time: about 3 and 7 µs a row of ``events_part``, against
1.5 µs for msgspec's decoding and checking.

The struct never accepts a row the validator refuses, and decodes what it accepts to the values the
standard library's decoder gives: msgspec is strict (no ``1.0`` for an integer, no ``0`` for a
boolean, no ``null`` for a required field) and refuses text JSON cannot hold the way Python's decoder
reads it (NaN, numbers beyond a double's range, unpaired surrogates). Whatever it refuses,
:meth:`JsonRows.check` returns ``None``; the caller then decodes the row with the standard library and
checks it field by field, which names every problem. So this changes how fast a write is, never its
outcome or its messages.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import msgspec

from include.dwh.validation import ColumnRule, Kind, RowValidator

_TYPES: dict[Kind, type] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "timestamp": str,  # parsed by the validator, as Python parses ISO 8601
    "json": dict,
}


def struct_field(rule: ColumnRule) -> tuple[str, Any] | tuple[str, Any, None]:
    """The struct field of one column: its JSON type, constrained as the validator constrains it
    (optional, defaulting to ``None``, unless the column is required)."""
    kind: Any = _TYPES[rule.kind]
    if rule.max_length is not None:
        kind = Annotated[kind, msgspec.Meta(max_length=rule.max_length)]
    elif rule.min_value is not None or rule.max_value is not None:
        kind = Annotated[kind, msgspec.Meta(ge=rule.min_value, le=rule.max_value)]
    name = str(rule.name)  # not SQLAlchemy's quoted_name: msgspec wants plain strings
    return (name, kind) if rule.required else (name, Optional[kind], None)  # noqa: UP045


class JsonRows:
    """Checks rows given as JSON text (:class:`msgspec.Raw`) against ``validator``'s table, with its
    conversions (``timestamps_as_text`` included)."""

    def __init__(self, validator: RowValidator) -> None:
        struct = msgspec.defstruct(
            "Row", [struct_field(rule) for rule in validator.rules], kw_only=True, forbid_unknown_fields=True
        )
        self._decode = msgspec.json.Decoder(struct).decode
        self._convert = validator.convert

    def check(self, raw: msgspec.Raw) -> tuple[list[Any], int] | None:
        """The row's values in column order and their size in bytes, as
        :meth:`RowValidator.check_values <include.dwh.validation.RowValidator.check_values>` gives
        them; ``None`` when the row is not valid (or not decoded the way Python decodes it)."""
        try:
            row = self._decode(raw)
        except (msgspec.MsgspecError, RecursionError):  # DecodeError, ValidationError; too deep
            return None
        return self._convert(list(msgspec.structs.astuple(row)))
