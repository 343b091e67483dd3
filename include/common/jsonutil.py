"""Stable JSON and content hashes.

Hashes decide whether a row changed (product ``data_version``, Callio ``row_hash``), so the same data
must always serialize to the same bytes: sorted keys, no insignificant whitespace, UTF-8 kept as is
(no ``\\uXXXX`` escapes), and numbers, dates and decimals rendered one way only.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return decimal_text(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=stable_json)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError(f"cannot serialize {type(value).__name__} to stable JSON")


def decimal_text(value: decimal.Decimal) -> str:
    """``Decimal('1.50')`` and ``Decimal('1.5')`` are one price: render both as ``'1.5'``."""
    if value == value.to_integral_value():
        return str(value.quantize(decimal.Decimal(1)))
    return format(value.normalize(), "f")


def _canonical(value: Any) -> Any:
    """Floats that are whole numbers become ints, so ``1.0`` and ``1`` hash alike."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def stable_json(value: Any) -> str:
    """Serialize ``value`` canonically (sorted keys, compact separators, UTF-8 characters kept)."""
    return json.dumps(
        _canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default
    )


def sha256_hex(text: str | bytes) -> str:
    """Hex SHA-256 of ``text`` (UTF-8 encoded when a str)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def content_hash(value: Any) -> str:
    """Hash of a value's stable JSON: equal data, equal hash, whatever its key order or formatting."""
    return sha256_hex(stable_json(value))
