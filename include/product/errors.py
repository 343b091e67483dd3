"""Why a ``products_staging`` row is not loaded: the reject reasons stored in reject logs, and the
error that carries one with a short human detail."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class RejectReason(StrEnum):
    """Why a staging row was not loaded. Values are stored as is in reject logs."""

    MISSING_BRAND_CODE = "missing_brand_code"
    MISSING_SKU = "missing_sku"
    MISSING_SRC_UPDATED_AT = "missing_src_updated_at"
    BAD_SRC_UPDATED_AT = "bad_src_updated_at"
    BAD_PRICE = "bad_price"
    BAD_CURRENCY = "bad_currency"
    BAD_ATTRIBUTES = "bad_attributes"
    BAD_IMAGES = "bad_images"
    BAD_BOOLEAN = "bad_boolean"


class NormalizeError(ValueError):
    """A staging row that cannot be normalized.

    ``reason`` is a :class:`RejectReason` (a ``str``); ``detail`` names the field and shows the
    offending value, cut to :data:`VALUE_PREVIEW_CHARS` characters so a huge value never floods logs.
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = RejectReason(reason)
        self.detail = detail


VALUE_PREVIEW_CHARS = 60
"""Longest shown value in :attr:`NormalizeError.detail`; with the field and problem, details stay
within 100 characters."""


def preview(value: Any, limit: int = VALUE_PREVIEW_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def reject(reason: RejectReason, field: str, problem: str, value: Any) -> NormalizeError:
    return NormalizeError(reason, f"{field} {problem}: {preview(value)}")


def as_str(value: Any) -> str:
    """Text from a driver value: bytes are UTF-8."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8")
    return str(value)
