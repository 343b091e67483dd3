"""The JSON-bearing columns of ``products_staging``: ``attributes`` (an object) and ``images`` (a list
of URLs), read whatever their encoding, and their compact JSON as ``products`` stores it and
``data_version`` hashes it. Pure functions, no database."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from include.common.jsonutil import stable_json
from include.product.errors import NormalizeError, RejectReason
from include.product.errors import as_str as _as_str
from include.product.errors import reject as _reject

MAX_JSON_DECODES = 3
"""How many times an attribute/image text is JSON-decoded at most (see :func:`parse_attributes`)."""

_IMAGE_SEPARATORS = re.compile(r"[,，\r\n]+")
#: stable_json's spelling of strings (UTF-8 kept), bools and null, by the json module's own C encoder.
_JSON_STRING = json.encoder.encode_basestring
_JSON_CONSTANTS = {None: "null", True: "true", False: "false"}
#: stable_json without its float canonicalizing, for JSON text shown to hold no float (see below).
_SORTED_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
#: Where a float (or NaN/Infinity) would sit in compact JSON: after ``[``, ``:`` or ``,``, a number
#: with a point or an exponent. Text inside strings may match too; that only costs the slow path.
_FLOAT_TOKEN = re.compile(r"[\[:,]-?(?:[0-9]+[.eE]|Infinity|NaN)")
#: Brackets (an upper bound of the nesting depth) far below any recursion limit.
_SURELY_SHALLOW = 64


def json_scalar(value: str | bool | None) -> str:
    return _JSON_STRING(value) if isinstance(value, str) else _JSON_CONSTANTS[value]


def json_array(items: tuple[str, ...]) -> str:
    return f"[{','.join(map(_JSON_STRING, items))}]"


# --- attributes --------------------------------------------------------------------------------------


def parse_attributes(value: Any) -> dict[str, Any]:
    """The attributes object; ``{}`` when there are none.

    Text is JSON-decoded, and decoded again while the result is still a string (up to
    :data:`MAX_JSON_DECODES` times): some upstream feeds JSON-encode a value that already is JSON
    text, delivering ``"{\\"color\\": \\"红\\"}"`` in quotes. Both spellings are the same attributes
    and must give the same ``data_version``. Values keep their JSON types; strings (keys and values)
    are NFC-normalized. JSON ``null`` means no attributes, like an empty column.
    """
    return attributes_and_json(value)[0]


def attributes_and_json(value: Any) -> tuple[dict[str, Any], str]:
    """The attributes and their stable JSON, which checking them has to produce anyway."""
    if value is None:
        return {}, "{}"
    decoded = _decode_json(value, "attributes", RejectReason.BAD_ATTRIBUTES)
    if decoded is None:
        return {}, "{}"
    if not isinstance(decoded, Mapping):
        raise _reject(RejectReason.BAD_ATTRIBUTES, "attributes", "is not an object", value)
    try:
        if isinstance(value, str | bytes | bytearray):
            # Decoded from text, so only JSON types with str keys: when its sorted serialization holds
            # no float (stable_json would turn 1.0 into 1), is NFC as a whole (then so is every string
            # in it, keys included, as ASCII quotes separate them) and is surely shallow (the walk
            # below refuses what nests too deep for it), it already is the stable JSON of the NFC
            # attributes, and the walk would change nothing.
            text = _SORTED_COMPACT.encode(decoded)
            if (
                text.count("{") + text.count("[") <= _SURELY_SHALLOW
                and _FLOAT_TOKEN.search(text) is None
                and unicodedata.is_normalized("NFC", text)
            ):
                return decoded, text
        attributes = _nfc_json(decoded, value)
        text = stable_json(attributes)
    except NormalizeError:
        raise
    except (TypeError, ValueError, RecursionError):
        raise _reject(RejectReason.BAD_ATTRIBUTES, "attributes", "is not JSON data", value) from None
    return attributes, text


def _decode_json(value: Any, field: str, reason: RejectReason) -> Any:
    """Decode JSON text, repeatedly while the result is again JSON text. Non-text passes through.

    Empty text decodes to ``None``. ``NaN``/``Infinity`` are refused: they are not JSON.
    """
    current = value
    for _ in range(MAX_JSON_DECODES):
        if not isinstance(current, str | bytes | bytearray):
            return current
        text = _as_str(current).strip()
        if not text:
            return None
        try:
            current = _DECODER.decode(text)
        except (ValueError, RecursionError):
            raise _reject(reason, field, "is not valid JSON", value) from None
    if isinstance(current, str):
        raise _reject(reason, field, "is JSON-encoded too often", value)
    return current


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _nfc_json(value: Any, raw: Any) -> Any:
    """NFC every string (keys and values), recursively; reject keys that collide afterwards."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _reject(RejectReason.BAD_ATTRIBUTES, "attributes", "holds NaN/Infinity", raw)
    if isinstance(value, list | tuple):
        return [_nfc_json(item, raw) for item in value]
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            name = unicodedata.normalize("NFC", _as_str(key))
            if name in result:
                raise _reject(RejectReason.BAD_ATTRIBUTES, "attributes", "has a duplicate key", name)
            result[name] = _nfc_json(item, raw)
        return result
    return value


# --- images ------------------------------------------------------------------------------------------


def parse_images(value: Any) -> tuple[str, ...]:
    """Image URLs in feed order (the first is the main image), trimmed, without blanks or repeats.

    Accepts a list, a JSON array text (also when JSON-encoded once more, like attributes) or plain
    text with one URL per comma (also ``，``) or line. Items must be strings. Text that looks like JSON
    (``[``, ``{``, a quote, ``null``) must be valid JSON: splitting broken JSON on commas would load
    fragments of it as URLs.
    """
    if value is None:
        return ()
    items = _image_items(value)
    if not all(isinstance(item, str) for item in items):
        raise _reject(RejectReason.BAD_IMAGES, "images", "holds a non-string", value)
    cleaned = (unicodedata.normalize("NFC", item).strip() for item in items)
    return tuple(dict.fromkeys(url for url in cleaned if url))


def _image_items(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if not isinstance(value, str | bytes | bytearray):
        raise _reject(RejectReason.BAD_IMAGES, "images", "is not a list or text", value)
    text = _as_str(value).strip()
    if not (text.startswith(("[", "{", '"')) or text == "null"):
        return _IMAGE_SEPARATORS.split(text)
    decoded = _decode_json(text, "images", RejectReason.BAD_IMAGES)
    if decoded is None:
        return []
    if not isinstance(decoded, list):
        raise _reject(RejectReason.BAD_IMAGES, "images", "is not a JSON array", value)
    return decoded
