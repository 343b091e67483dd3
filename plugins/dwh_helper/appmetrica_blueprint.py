"""``/appmetrica/...``: the AppMetrica Logs API (connection ``appmetrica_api``), as the DWH Helper served it.

* ``GET /appmetrica/ping`` -> ``{"available", "status", "latency_ms", "base_url"}``: 200 when the
  Logs API is enabled for the token, 503 with the same body (``available`` false) when AppMetrica
  says it is disabled.
* ``GET /appmetrica/fetch-export?export_id=&poll_interval=&poll_timeout=&fresh=false`` -> 200
  ``{"export_id", "resource", "format", "date_since", "date_until", "rows", "count", "polls",
  "elapsed_s"}``. ``export_id`` names a saved export definition (Variable ``appmetrica_exports`` or
  the connection's extra ``exports``, see :mod:`include.dwh.appmetrica`); the request waits while the
  export is prepared, polling every ``poll_interval`` seconds (0.1-60, default Variable
  ``appmetrica_poll_interval_seconds``, 5) for at most ``poll_timeout`` seconds (1-3600, default
  Variable ``appmetrica_poll_timeout_seconds``, 300). ``fresh=true`` asks for a new file instead of
  one AppMetrica prepared in the last 24 hours.

Errors answer ``{"error", "detail"}``: 400 for a missing or invalid parameter (named), 404 for an
unknown ``export_id``; 502 when AppMetrica refused our token or the export's parameters, or answered
something unreadable (the caller cannot fix it; the detail says what AppMetrica said); 503 when
AppMetrica cannot be reached or keeps failing, or the deployment's connection or definitions are
unusable; 504, with ``export_id``, ``polls`` and ``elapsed_s`` added, when the export was not ready
within ``poll_timeout`` (AppMetrica keeps preparing it: the same request later picks it up).

The client is async; a view runs in a worker thread with no event loop, so each call gets its own
``asyncio.run``. A fetch holds its worker thread for up to ``poll_timeout``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import BadRequest

from dwh_helper.http_io import json_response, register_upstream_errors, required_arg
from dwh_helper.openapi_parts import errors, json_content, query, ref, seconds
from dwh_helper.services import Settings, services
from include.dwh.appmetrica import (
    POLL_INTERVAL_RANGE,
    POLL_TIMEOUT_RANGE,
    AppMetricaAuthError,
    AppMetricaError,
    AppMetricaRequestError,
    AppMetricaUnavailableError,
    ExportTimeoutError,
    fetch_export,
    ping,
    validate_polling,
)
from include.dwh.appmetrica_exports import AppMetricaConfigError, UnknownExportError, lookup_export

appmetrica = Blueprint("appmetrica", __name__, url_prefix="/appmetrica")

#: Status of each failure, the most specific class first (looked up along the exception's MRO).
ERROR_STATUS: dict[type[Exception], int] = {
    UnknownExportError: 404,
    ExportTimeoutError: 504,
    AppMetricaAuthError: 502,
    AppMetricaRequestError: 502,
    AppMetricaUnavailableError: 503,
    AppMetricaConfigError: 503,
    AppMetricaError: 502,
}
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _timeout_details(exc: Exception) -> dict[str, Any]:
    """A timed-out export says how long it was polled, so the caller can choose a longer timeout."""
    if isinstance(exc, ExportTimeoutError):
        return {"export_id": exc.export_id, "polls": exc.polls, "elapsed_s": exc.elapsed_s}
    return {}


register_upstream_errors(appmetrica, ERROR_STATUS, "AppMetrica", _timeout_details)


@appmetrica.get("/ping")
def ping_logs_api() -> Response:
    status = asyncio.run(ping(services().appmetrica().settings))
    return json_response(status, 200 if status["available"] else 503)


@appmetrica.get("/fetch-export")
def fetch() -> Response:
    export_id = required_arg("export_id")
    settings = services().settings
    poll_interval = _seconds("poll_interval", settings.appmetrica_poll_interval_seconds)
    poll_timeout = _seconds("poll_timeout", settings.appmetrica_poll_timeout_seconds)
    try:
        validate_polling(poll_interval, poll_timeout)
    except AppMetricaConfigError as exc:
        raise BadRequest(f"Query parameter {exc}.") from None
    fresh = _flag("fresh")
    access = services().appmetrica()
    definition = lookup_export(export_id, access.definitions())
    result = asyncio.run(
        fetch_export(
            definition, access.settings, poll_interval=poll_interval, poll_timeout=poll_timeout, fresh=fresh
        )
    )
    return json_response(result)


def _seconds(name: str, default: float) -> float:
    raw = request.args.get(name, "")
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise BadRequest(f"Query parameter {name!r} must be a number of seconds, got {raw!r}.") from None


def _flag(name: str) -> bool:
    raw = request.args.get(name, "")
    if raw.lower() in _TRUE:
        return True
    if not raw or raw.lower() in _FALSE:
        return False
    raise BadRequest(f"Query parameter {name!r} must be true or false, got {raw!r}.")


# ------------------------------------------------------------------------------------------ OpenAPI


def openapi_paths(settings: Settings) -> dict[str, Any]:
    return {
        "/appmetrica/ping": {
            "get": {
                "tags": ["appmetrica"],
                "operationId": "appmetricaPing",
                "summary": "Whether the Logs API is available to the configured token",
                "responses": {
                    "200": json_content("The Logs API is enabled.", ref("AppMetricaPing")),
                    **errors("Unauthorized", "BadGateway"),
                    "503": json_content(
                        "AppMetrica says the Logs API is disabled (the status, `available` false), or it "
                        "cannot be reached, or the connection is not configured (an error).",
                        {"anyOf": [ref("AppMetricaPing"), ref("Error")]},
                    ),
                },
            }
        },
        "/appmetrica/fetch-export": {
            "get": {
                "tags": ["appmetrica"],
                "operationId": "appmetricaFetchExport",
                "summary": "Fetch a saved export, polling until AppMetrica has prepared it",
                "description": (
                    "Export definitions are saved under an id in the Airflow Variable "
                    "`appmetrica_exports` or the `appmetrica_api` connection's extra `exports`."
                ),
                "parameters": [
                    query(
                        "export_id",
                        {"type": "string", "minLength": 1},
                        "The saved export's id.",
                        required=True,
                    ),
                    query(
                        "poll_interval",
                        seconds(POLL_INTERVAL_RANGE, settings.appmetrica_poll_interval_seconds),
                        "Seconds between polls.",
                    ),
                    query(
                        "poll_timeout",
                        seconds(POLL_TIMEOUT_RANGE, settings.appmetrica_poll_timeout_seconds),
                        "Seconds to wait for the export in all.",
                    ),
                    query(
                        "fresh",
                        {"type": "boolean", "default": False},
                        "Ask for a new file instead of one AppMetrica prepared in the last 24 hours.",
                    ),
                ],
                "responses": {
                    "200": json_content("The export's rows.", ref("AppMetricaExport")),
                    **errors("BadRequest", "Unauthorized", "NotFound", "BadGateway", "ServiceUnavailable"),
                    "504": json_content(
                        "The export was not ready within `poll_timeout`; AppMetrica keeps preparing it, so "
                        "asking again later polls the same export.",
                        ref("ExportTimeout"),
                    ),
                },
            }
        },
    }
