"""The request and response helpers every DWH helper blueprint shares: query parameters that answer
400 naming themselves (:func:`int_arg`, :func:`required_arg`), bodies read within the configured limit
(:func:`read_body`, :func:`body_limit`), JSON answers in the caller's field order
(:func:`json_response`), and upstream API errors mapped to statuses (:func:`register_upstream_errors`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable, Generator, Mapping
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_input_stream

from dwh_helper.services import services

log = logging.getLogger(__name__)

_READ_CHUNK_BYTES = 1024 * 1024
MAX_OFFSET = 2**63 - 1  # the largest row offset a database takes (a 64-bit integer)
_DIGITS = re.compile(r"[0-9]+")


def int_arg(name: str, default: int | None, *, minimum: int, maximum: int | None = None) -> int:
    """The integer query parameter ``name`` (required when ``default`` is None); 400 naming it."""
    raw = request.args.get(name, "")
    if not raw:
        if default is None:
            raise BadRequest(f"Query parameter {name!r} is required.")
        return default
    value = int(raw) if _DIGITS.fullmatch(raw) else None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise BadRequest(f"Query parameter {name!r} must be an integer {bounds}, got {raw!r}.")
    return value


def required_arg(name: str) -> str:
    """The query parameter ``name``; 400 naming it when it is missing or empty."""
    value = request.args.get(name, "")
    if not value:
        raise BadRequest(f"Query parameter {name!r} is required.")
    return value


def register_upstream_errors(
    blueprint: Blueprint,
    statuses: Mapping[type[Exception], int],
    upstream: str,
    details: Callable[[Exception], Mapping[str, Any]] = lambda exc: {},
) -> None:
    """Answer each exception class of an upstream API's client with its status in ``statuses`` (the
    most specific class listed along the exception's MRO wins) as ``{"error", "detail", **details}``;
    server-side failures are logged with ``upstream`` named."""

    def answer(exc: Exception) -> Response:
        status = next(statuses[cls] for cls in type(exc).__mro__ if cls in statuses)
        if status >= 500:
            log.warning("DWH helper: %s: %s", upstream, exc)
        return json_response({"error": HTTP_STATUS_CODES[status], "detail": str(exc), **details(exc)}, status)

    for error_class in statuses:
        blueprint.register_error_handler(error_class, answer)


def json_response(body: Mapping[str, Any], status: int = 200) -> Response:
    """A JSON response with keys in the order given (fields in the order a caller asked for them),
    whatever JSON settings the host app has."""
    return current_app.response_class(
        json.dumps(body, ensure_ascii=False), status, mimetype="application/json"
    )


def read_body() -> bytes:
    """The current request's body; 413 when it is larger than ``settings.max_request_bytes``.

    Use this rather than ``request.get_data()``: for a body without ``Content-Length`` (chunked
    transfer), Werkzeug stops reading at ``max_content_length`` without an error, and the view would
    get a truncated body. (A declared ``Content-Length`` over the limit is refused before any view.)
    """
    if request.content_length is not None:  # checked against the limit before the view ran
        return request.get_data(cache=False)
    limit = services().settings.max_request_bytes
    stream = get_input_stream(request.environ, max_content_length=limit + 1)  # one byte tells "too large"
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(_READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def body_limit() -> Generator[None]:
    """Around Werkzeug's form parsing: it refuses a body without ``Content-Length`` once the body grows
    past the limit (``dwh_helper.app.limit_request_body`` sets it up), with a message that names no
    number; answer 413 naming the limit instead."""
    try:
        yield
    except RequestEntityTooLarge:
        raise _too_large(services().settings.max_request_bytes) from None


def _too_large(limit: int) -> RequestEntityTooLarge:
    return RequestEntityTooLarge(f"The body is larger than the {limit} bytes accepted.")
