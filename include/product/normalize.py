"""Turning one raw ``products_staging`` row into a clean :class:`Product`. Pure functions, no database.

The staging feed is prepared by hand and by several upstream exports, so one field arrives in many
spellings: prices as ``"1,299.00"`` or ``"¥1299.5"``, booleans as ``"Y"`` or ``"是"``, attributes as a
dict, as JSON text or as JSON text that was JSON-encoded once more. :func:`normalize` maps every
accepted spelling to one value, so that :attr:`Product.data_version` (a hash of the business fields)
only changes when the product really changed, and ``products`` is only written then.

A row that cannot be read safely raises :class:`NormalizeError` with a short reason code (one of
:class:`RejectReason`) and a human ``detail`` naming the field and the offending value, shortened so
it fits a reject log column. Guessing is avoided wherever a wrong guess would corrupt data: a price
such as ``"12,99"`` (decimal comma or a mistyped thousands group) is rejected rather than read as 1299.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any

from include.common.jsonutil import decimal_text, sha256_hex, stable_json

# NormalizeError and RejectReason are part of this module's interface: callers catch and read them here.
from include.product.errors import NormalizeError as NormalizeError
from include.product.errors import RejectReason
from include.product.errors import as_str as _as_str
from include.product.errors import reject as _reject
from include.product.json_fields import attributes_and_json, json_array, json_scalar, parse_images

MAX_PRICE_INTEGER_DIGITS = 10
"""``products.price`` is ``DECIMAL(12,2)``: 10 digits before the point, 2 after."""

CURRENCY_SYMBOLS = "¥￥$€£"
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "on", "1", "是"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "off", "0", "否"})

_WHITESPACE_RUN = re.compile(r"\s+")  # Unicode-aware: tabs, newlines, U+3000 full-width space, NBSP
_PLAIN_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_GROUPED_NUMBER = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_CENTS = Decimal("0.01")
_WIDE_CONTEXT = Context(prec=MAX_PRICE_INTEGER_DIGITS + 30)


@dataclass(frozen=True, slots=True)
class Product:
    """One normalized product, ready to upsert into ``products`` by ``(brand_code, sku)``."""

    brand_code: str
    sku: str
    name: str | None
    price: Decimal | None
    currency: str | None
    category: str | None
    attributes: dict[str, Any]
    images: tuple[str, ...]
    status: str | None
    is_active: bool | None
    src_updated_at: dt.datetime
    staging_id: int

    @property
    def key(self) -> tuple[str, str]:
        """The upsert key of ``products``."""
        return self.brand_code, self.sku

    #: ``attributes`` and ``images`` as JSON when :func:`normalize` already serialized them (it must,
    #: to check the attributes), so each text is made once a row and serves both the written column
    #: and ``data_version``; left out of equality, as they only mirror the values.
    attributes_text: str = field(default="", compare=False, repr=False)
    images_text: str = field(default="", compare=False, repr=False)

    @property
    def attributes_json(self) -> str:
        """Attributes as stable JSON: sorted keys, compact, UTF-8 kept."""
        return self.attributes_text or stable_json(self.attributes)

    @property
    def images_json(self) -> str:
        """Images as a compact JSON array, UTF-8 kept. Order is kept: the first image is the main one."""
        return self.images_text or json_array(self.images)

    def business_fields(self) -> dict[str, Any]:
        """The fields whose change is a new version of the product.

        The key, the staging id and timestamps are left out: re-exporting an unchanged product (new
        ``src_updated_at``, new staging id) must not count as a change.
        """
        return {
            "name": self.name,
            "price": self.price,
            "currency": self.currency,
            "category": self.category,
            "attributes": self.attributes,
            "images": list(self.images),
            "status": self.status,
            "is_active": self.is_active,
        }

    @property
    def data_version(self) -> str:
        """SHA-256 hex of the stable JSON of :meth:`business_fields`.

        Spelled out from the already serialized attributes and images, in the sorted key order that
        :func:`~include.common.jsonutil.stable_json` gives, so the same bytes are hashed without
        serializing the attributes a second time (a third of normalizing a row)."""
        price = None if self.price is None else decimal_text(self.price)
        enc = json_scalar
        text = (
            f'{{"attributes":{self.attributes_json},"category":{enc(self.category)},'
            f'"currency":{enc(self.currency)},"images":{self.images_json},'
            f'"is_active":{enc(self.is_active)},"name":{enc(self.name)},"price":{enc(price)},'
            f'"status":{enc(self.status)}}}'
        )
        return sha256_hex(text)


def normalize(row: Mapping[str, Any]) -> Product:
    """Normalize one ``products_staging`` row (column name -> raw driver value).

    Raises :class:`NormalizeError` for a row that must not be loaded.
    """
    attributes, attributes_text = attributes_and_json(row.get("attributes"))
    images = parse_images(row.get("images"))
    return Product(
        brand_code=parse_brand_code(row.get("brand_code")),
        sku=parse_sku(row.get("sku")),
        name=clean_text(row.get("name"), collapse=True),
        price=parse_price(row.get("price")),
        currency=parse_currency(row.get("currency")),
        category=clean_text(row.get("category"), collapse=True),
        attributes=attributes,
        images=images,
        status=parse_status(row.get("status")),
        is_active=parse_bool(row.get("is_active")),
        src_updated_at=parse_src_updated_at(row.get("src_updated_at")),
        staging_id=row.get("id"),
        attributes_text=attributes_text,
        images_text=json_array(images),
    )


# --- text --------------------------------------------------------------------------------------------


def clean_text(value: Any, *, collapse: bool = False) -> str | None:
    """Text in one spelling: NFC, trimmed, and with ``collapse`` every whitespace run as one space.

    NFC makes a decomposed ``"e\\u0301"`` and a precomposed ``"é"`` the same string, so a feed that
    switches between them does not look like a rename. Empty text is ``None``.
    """
    if value is None:
        return None
    text = unicodedata.normalize("NFC", _as_str(value)).strip()
    if collapse:
        text = _WHITESPACE_RUN.sub(" ", text)
    return text or None


def parse_brand_code(value: Any) -> str:
    """Brand codes are case-insensitive upstream; upper case is their one spelling here."""
    text = clean_text(value)
    if text is None:
        raise _reject(RejectReason.MISSING_BRAND_CODE, "brand_code", "is empty", value)
    return text.upper()


def parse_sku(value: Any) -> str:
    """SKUs keep their case: some brands use upper and lower case as different SKUs."""
    text = clean_text(value)
    if text is None:
        raise _reject(RejectReason.MISSING_SKU, "sku", "is empty", value)
    return text


def parse_status(value: Any) -> str | None:
    text = clean_text(value, collapse=True)
    return text.lower() if text is not None else None


def parse_currency(value: Any) -> str | None:
    """An ISO-4217-shaped code (three letters A-Z, upper-cased) or ``None``."""
    text = clean_text(value)
    if text is None:
        return None
    code = text.upper()
    if not _CURRENCY_CODE.fullmatch(code):
        raise _reject(RejectReason.BAD_CURRENCY, "currency", "is not 3 letters", value)
    return code


# --- price -------------------------------------------------------------------------------------------


def parse_price(value: Any) -> Decimal | None:
    """The price as an exact ``Decimal`` with 2 places, or ``None`` when there is none.

    Prices are money: they are never computed through binary floats, which cannot hold ``0.1`` or
    ``1299.99`` exactly and would make equal prices hash differently. A float delivered by a driver
    is read from its shortest ``repr`` (``0.1`` -> ``Decimal("0.1")``). Values that need more than 2
    decimal places (``"1.005"``) are rejected, not rounded: rounding would invent a price.
    """
    if value is None:
        return None
    amount = _price_decimal(value)
    if amount is None:
        return None
    return _checked_cents(amount, value)


def _price_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        raise _reject(RejectReason.BAD_PRICE, "price", "is a boolean", value)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _reject(RejectReason.BAD_PRICE, "price", "is not finite", value)
        return Decimal(repr(value))
    return _price_from_text(value)


def _price_from_text(value: Any) -> Decimal | None:
    """Reads ``"1299"``, ``"1,299.00"``, ``"¥ 1299.5"``, full-width digits included (NFKC).

    Commas are only accepted as proper thousands groups: ``"12,99"`` is ambiguous and rejected.
    """
    text = unicodedata.normalize("NFKC", _as_str(value)).strip()
    if not text:
        return None
    if text[0] in CURRENCY_SYMBOLS:
        text = text[1:].strip()
    if text.startswith("-"):
        raise _reject(RejectReason.BAD_PRICE, "price", "is negative", value)
    if _PLAIN_NUMBER.fullmatch(text):
        return Decimal(text)
    if _GROUPED_NUMBER.fullmatch(text):
        return Decimal(text.replace(",", ""))
    raise _reject(RejectReason.BAD_PRICE, "price", "is not a number", value)


def _checked_cents(amount: Decimal, raw: Any) -> Decimal:
    if not amount.is_finite():
        raise _reject(RejectReason.BAD_PRICE, "price", "is not finite", raw)
    if amount.is_zero():
        return Decimal("0.00")  # also turns -0 into 0
    if amount < 0:
        raise _reject(RejectReason.BAD_PRICE, "price", "is negative", raw)
    if amount.adjusted() >= MAX_PRICE_INTEGER_DIGITS:
        raise _reject(RejectReason.BAD_PRICE, "price", "is too large", raw)
    cents = amount.quantize(_CENTS, context=_WIDE_CONTEXT)
    if cents != amount:
        raise _reject(RejectReason.BAD_PRICE, "price", "has over 2 decimals", raw)
    return cents


# --- booleans and timestamps ------------------------------------------------------------------------


def parse_bool(value: Any) -> bool | None:
    """``is_active`` from any of the feed's spellings; ``None`` when empty.

    Unknown words are rejected instead of read as false: a typo must not deactivate a product.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value in (0, 1):
            return bool(value)
        raise _reject(RejectReason.BAD_BOOLEAN, "is_active", "is not 0/1", value)
    if not isinstance(value, str | bytes | bytearray):
        raise _reject(RejectReason.BAD_BOOLEAN, "is_active", "is not a boolean", value)
    word = unicodedata.normalize("NFKC", _as_str(value)).strip().lower()
    if not word:
        return None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _reject(RejectReason.BAD_BOOLEAN, "is_active", "is not a boolean", value)


def parse_src_updated_at(value: Any) -> dt.datetime:
    """Required: the load cursor (watermark) advances along it."""
    if value is None:
        raise _reject(RejectReason.MISSING_SRC_UPDATED_AT, "src_updated_at", "is empty", value)
    if not isinstance(value, dt.datetime):
        raise _reject(RejectReason.BAD_SRC_UPDATED_AT, "src_updated_at", "is not a datetime", value)
    return value
