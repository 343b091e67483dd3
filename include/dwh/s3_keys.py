"""Object keys of the DWH bucket and the errors of its operations (see :mod:`include.dwh.s3`).

Each :class:`S3Error` subclass carries the HTTP status the DWH helper plugin answers with, so the
plugin's ``/s3`` blueprint maps errors without knowing S3.

Keys are checked by :func:`validate_key` before any request: non-empty, at most 1024 bytes of UTF-8 (S3's
limit), no control characters, no backslash, no leading ``/`` and no ``.`` or ``..`` segment. The last
four are stricter than S3 on purpose: control characters break XML listings and log lines, and the
others turn into paths outside their folder, or into other keys, as soon as a tool maps keys onto a
file system or normalises them as URL paths. Everything else (spaces, non-ASCII text, ``#``, ``%``,
``?``, ``+``, empty segments as in ``a//b``) is allowed; boto3 encodes it.
"""

from __future__ import annotations

import unicodedata
from typing import ClassVar

MAX_KEY_BYTES = 1024


class S3Error(Exception):
    """An S3 operation could not be done; ``status`` is the HTTP status the plugin answers with."""

    status: ClassVar[int] = 500


class InvalidArgumentError(S3Error):
    """The request itself is wrong (a parameter out of range, a bad continuation token)."""

    status = 400


class InvalidKeyError(InvalidArgumentError):
    """The key (or prefix) breaks the rules of :func:`validate_key`."""


class InvalidRangeError(InvalidArgumentError):
    """A patch offset lies beyond the end of the object (appending is ``offset == size``)."""

    status = 416


class NotFoundError(S3Error):
    """The object does not exist."""

    status = 404


class ConflictError(S3Error):
    """Another writer changed the object while this operation ran; nothing was written."""

    status = 409


class StorageError(S3Error):
    """The store failed or refused: unreachable, bad credentials, missing bucket, internal error."""

    status = 502


def validate_key(key: str) -> str:
    """Return ``key`` if it is a usable object key, else raise :class:`InvalidKeyError` saying why."""
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("key must be a non-empty string")
    _check_name(key, "key", whole_segments=True)
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start a key (empty lists the whole bucket), else raise :class:`InvalidKeyError`.

    Its last segment may be a partial name, so a trailing ``.`` or ``..`` is allowed (``reports/.`` is a
    prefix of ``reports/.hidden``).
    """
    if not isinstance(prefix, str):
        raise InvalidKeyError("prefix must be a string")
    if prefix:
        _check_name(prefix, "prefix", whole_segments=False)
    return prefix


def _check_name(value: str, field: str, *, whole_segments: bool) -> None:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKeyError(f"{field} is not valid Unicode text (it holds a lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(f"{field} is {size} bytes long in UTF-8; S3 allows at most {MAX_KEY_BYTES}")
    control = next((char for char in value if unicodedata.category(char) == "Cc"), None)
    if control is not None:
        raise InvalidKeyError(f"{field} contains the control character U+{ord(control):04X}")
    if "\\" in value:
        raise InvalidKeyError(f"{field} contains a backslash; separate folders with '/'")
    if value.startswith("/"):
        raise InvalidKeyError(f"{field} must not start with '/'")
    segments = value.split("/")
    if not whole_segments:
        segments = segments[:-1]
    if any(segment in (".", "..") for segment in segments):
        raise InvalidKeyError(f"{field} must not contain '.' or '..' path segments")
