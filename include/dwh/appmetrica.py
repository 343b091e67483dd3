"""The AppMetrica Logs API client: check availability, fetch a saved export by polling until it is ready.

The Logs API has no export ids: an export *is* its URL and parameters. The first request queues it
(202 ``Wait for result``), identical requests poll it until the data comes (200), and more than three
queued requests per application are refused with 429. So this module names exports itself: an
*export definition* saved under an id says which resource, fields, application and period to ask for,
and :func:`fetch_export` turns it into one fixed request and polls it. The definitions, their format
and their validation live in :mod:`include.dwh.appmetrica_exports`.

Connection ``appmetrica_api``: ``password`` holds the OAuth token, ``host`` the base URL (default
https://api.appmetrica.yandex.net), ``extra`` ``application_id`` (and ``exports``, see :mod:`include.dwh.appmetrica_exports`). The token is sent as
``Authorization: OAuth <token>`` and appears in no message, log line or repr.

The client is async (httpx). Each public coroutine opens and closes its own HTTP client, so it runs
under ``asyncio.run(...)`` anywhere, a Flask worker thread included, with no loop shared between calls::

    settings = load_settings()
    definition = lookup_export("daily_events", load_definitions())  # include.dwh.appmetrica_exports
    result = asyncio.run(fetch_export(definition, settings, poll_interval=5, poll_timeout=300))
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from include.common.httputil import connection_base_url, retry_after_seconds
from include.dwh.appmetrica_exports import AppMetricaConfigError, ExportDefinition, positive_int
from include.dwh.config import APPMETRICA_CONN_ID

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.appmetrica.yandex.net"
STATUS_PATH = "/management/v1/logsapi/status"
POLL_INTERVAL_RANGE = (0.1, 60.0)
"""Seconds between two polls: faster only adds load, slower than a minute only adds latency."""
POLL_TIMEOUT_RANGE = (1.0, 3600.0)
"""Seconds a fetch may wait for its export in all."""
Row = dict[str, Any]


class AppMetricaError(Exception):
    """Anything the Logs API made impossible. Messages name the export and the status, never the token."""


class AppMetricaAuthError(AppMetricaError):
    """The API refused the OAuth token (401), or the token may not read the application (403)."""


class AppMetricaRequestError(AppMetricaError):
    """The API refused the export's parameters (400); the message carries the API's explanation."""


class AppMetricaUnavailableError(AppMetricaError):
    """The API failed (5xx, or no answer) for longer than the bounded retries allow."""


class ExportTimeoutError(AppMetricaError):
    """The export was not ready within ``poll_timeout``. The API keeps preparing it: asking for the
    same window again later polls that export instead of queueing another (a ``today`` period ends at
    the time of the fetch, so it asks for a new window each time)."""

    def __init__(self, message: str, *, export_id: str, polls: int, elapsed_s: float) -> None:
        super().__init__(message)
        self.export_id = export_id
        self.polls = polls
        self.elapsed_s = elapsed_s


@dataclass(frozen=True)
class AppMetricaSettings:
    """How to reach the API. ``repr`` leaves the token out."""

    token: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    application_id: int | None = None
    """For definitions that name none."""
    request_timeout_s: float = 120.0
    """Per HTTP request; a ready export of many rows takes a while to download."""
    server_retries: int = 3
    """Consecutive 5xx answers or transport failures tolerated before giving up."""
    backoff_cap_s: float = 60.0
    """No wait after a 429 or a 5xx is longer, not even one asked for by ``Retry-After``."""

    def __post_init__(self) -> None:
        if not self.token:
            raise AppMetricaConfigError("the AppMetrica OAuth token is empty")
        if self.request_timeout_s <= 0 or self.backoff_cap_s <= 0 or self.server_retries < 0:
            raise AppMetricaConfigError(
                "request_timeout_s and backoff_cap_s must be positive, server_retries not negative"
            )


# ---------------------------------------------------------------------------------------- settings


def settings_from(
    host: str | None,
    token: str | None,
    extra: Mapping[str, Any],
    port: int | None = None,
    schema: str | None = None,
) -> AppMetricaSettings:
    """Settings from a connection's fields (pure: no Airflow needed). The base URL is read as
    Airflow's HttpHook reads it (:func:`~include.common.httputil.connection_base_url`)."""
    application_id = extra.get("application_id")
    if application_id is not None and application_id != "":
        application_id = positive_int(application_id, f"{APPMETRICA_CONN_ID} extra application_id")
    else:
        application_id = None
    if not token:
        raise AppMetricaConfigError(
            f"{APPMETRICA_CONN_ID}: the OAuth token (the connection's password) is empty"
        )
    return AppMetricaSettings(
        token=token,
        base_url=connection_base_url(host, schema, port, default=DEFAULT_BASE_URL),
        application_id=application_id,
    )


def load_settings(conn_id: str = APPMETRICA_CONN_ID) -> AppMetricaSettings:
    """Read the connection (at run time) and register the token with Airflow's secrets masker."""
    from airflow.sdk import BaseHook
    from airflow.sdk.log import mask_secret

    conn = BaseHook.get_connection(conn_id)
    if conn.password:
        mask_secret(conn.password)
    return settings_from(conn.host, conn.password, conn.extra_dejson or {}, conn.port, conn.schema)


def validate_polling(poll_interval: float, poll_timeout: float) -> None:
    """Refuse polling parameters outside :data:`POLL_INTERVAL_RANGE` / :data:`POLL_TIMEOUT_RANGE`."""
    for name, value, (low, high) in (
        ("poll_interval", poll_interval, POLL_INTERVAL_RANGE),
        ("poll_timeout", poll_timeout, POLL_TIMEOUT_RANGE),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise AppMetricaConfigError(f"{name} must be a number of seconds")
        if not low <= value <= high:
            raise AppMetricaConfigError(f"{name} must be between {low:g} and {high:g} seconds, got {value:g}")


# ------------------------------------------------------------------------------------------ client


async def ping(settings: AppMetricaSettings) -> dict[str, Any]:
    """Whether the Logs API is available to this token, and how long the answer took.

    Returns ``{"available", "status", "latency_ms", "base_url"}``. Raises
    :class:`AppMetricaAuthError` when the token is refused and :class:`AppMetricaUnavailableError` when the
    API cannot be reached or fails; there are no retries, a ping reports the present."""
    async with _client(settings) as http:
        started = time.perf_counter()
        try:
            response = await http.get(STATUS_PATH)
        except httpx.TransportError as exc:
            raise AppMetricaUnavailableError(
                f"AppMetrica at {settings.base_url}: {type(exc).__name__}"
            ) from None
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
    if response.status_code in (401, 403):
        raise_for_refusal(response, "the Logs API status")
    if response.status_code != 200:
        raise AppMetricaUnavailableError(f"AppMetrica Logs API status: HTTP {response.status_code}")
    try:
        status = response.json()["logs_api_availability_status"]
    except (ValueError, KeyError, TypeError):
        raise AppMetricaError("AppMetrica Logs API status: the answer has no availability status") from None
    return {
        "available": status == "enabled",
        "status": status,
        "latency_ms": latency_ms,
        "base_url": settings.base_url,
    }


async def fetch_export(
    definition: ExportDefinition,
    settings: AppMetricaSettings,
    *,
    poll_interval: float,
    poll_timeout: float,
    fresh: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Ask for the export and poll it until its data comes; return the rows.

    202: wait ``poll_interval`` and ask again. 429 (too many exports queued for the application): wait
    as ``Retry-After`` says, or exponentially longer from ``poll_interval`` up to
    ``settings.backoff_cap_s``, and ask again. 5xx or no answer: the same backoff, at most
    ``settings.server_retries`` times in a row. All of it within ``poll_timeout`` seconds, else
    :class:`ExportTimeoutError`. ``fresh`` asks the API for a new file instead of one prepared earlier (until
    the API accepts the export; polls never send it, or each poll would restart the export).

    Returns ``{"export_id", "resource", "format", "date_since", "date_until", "rows", "count",
    "polls", "elapsed_s"}``; ``polls`` counts the requests sent, the last one included. Rows are dicts
    of the requested fields (CSV values are strings; JSON values as the API sent them).
    """
    validate_polling(poll_interval, poll_timeout)
    params = definition.params(settings.application_id, now)
    export_id = definition.export_id
    started = time.monotonic()
    polls = 0
    log.info(
        "AppMetrica export %s: %s %s..%s",
        export_id,
        definition.path,
        params["date_since"],
        params["date_until"],
    )
    try:
        async with asyncio.timeout(poll_timeout), _client(settings) as http:
            throttled = failures = 0
            while True:
                polls += 1
                try:
                    response = await http.get(
                        definition.path,
                        params=params,
                        headers={"Cache-Control": "no-cache"} if fresh else None,
                    )
                except httpx.TransportError as exc:
                    status, last, retry_after = None, type(exc).__name__, None
                else:
                    status = response.status_code
                    if status == 200:
                        rows = _rows(response, definition)
                        break
                    if status == 202:  # queued or still preparing: the export exists now
                        fresh = False
                        throttled = failures = 0
                        await asyncio.sleep(poll_interval)
                        continue
                    raise_for_refusal(response, f"export {export_id!r}")
                    last, retry_after = (
                        f"HTTP {status}",
                        retry_after_seconds(
                            response.headers.get("Retry-After") if response is not None else None
                        ),
                    )
                if status == 429:
                    throttled += 1
                    wait = _backoff(retry_after, poll_interval, throttled, settings.backoff_cap_s)
                else:
                    failures += 1
                    if failures > settings.server_retries:
                        raise AppMetricaUnavailableError(
                            f"AppMetrica export {export_id!r} failed {failures} times in a row; last: {last}"
                        )
                    wait = _backoff(retry_after, poll_interval, failures, settings.backoff_cap_s)
                remaining = poll_timeout - (time.monotonic() - started)
                if wait > remaining:
                    raise ExportTimeoutError(
                        f"AppMetrica export {export_id!r}: after {last} the next try is due in {wait:g} s, "
                        f"past poll_timeout={poll_timeout:g} s",
                        export_id=export_id,
                        polls=polls,
                        elapsed_s=round(time.monotonic() - started, 3),
                    )
                log.warning("AppMetrica export %s: %s; asking again in %.2f s", export_id, last, wait)
                await asyncio.sleep(wait)
    except TimeoutError:
        elapsed = round(time.monotonic() - started, 3)
        raise ExportTimeoutError(
            f"AppMetrica export {export_id!r} was not ready within poll_timeout={poll_timeout:g} s "
            f"({polls} requests); the API keeps preparing it, fetch it again later",
            export_id=export_id,
            polls=polls,
            elapsed_s=elapsed,
        ) from None
    elapsed = round(time.monotonic() - started, 3)
    log.info("AppMetrica export %s: %d rows after %d requests, %.1f s", export_id, len(rows), polls, elapsed)
    return {
        "export_id": export_id,
        "resource": definition.resource,
        "format": definition.export_format,
        "date_since": params["date_since"],
        "date_until": params["date_until"],
        "rows": rows,
        "count": len(rows),
        "polls": polls,
        "elapsed_s": elapsed,
    }


def _client(settings: AppMetricaSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=settings.base_url,
        timeout=httpx.Timeout(settings.request_timeout_s),
        headers={"Authorization": f"OAuth {settings.token}", "Accept": "application/json, text/csv"},
    )


def raise_for_refusal(response: httpx.Response, what: str) -> None:
    """Raise for the answers that asking again cannot change: every 4xx but 429, and 3xx."""
    status = response.status_code
    if status == 401:
        raise AppMetricaAuthError(f"AppMetrica refused the OAuth token for {what} (HTTP 401)")
    if status == 403:
        raise AppMetricaAuthError(f"AppMetrica denied access for {what} (HTTP 403): {_api_message(response)}")
    if status == 400:
        raise AppMetricaRequestError(f"AppMetrica refused {what}: {_api_message(response)}")
    if status < 500 and status != 429:
        raise AppMetricaError(f"AppMetrica {what}: unexpected HTTP {status}")


def _backoff(retry_after: float | None, poll_interval: float, attempt: int, cap: float) -> float:
    """Seconds before asking again: ``Retry-After`` when given, else doubling from ``poll_interval``;
    never below ``poll_interval`` (``Retry-After: 0`` must not spin), never above ``cap``."""
    wait = retry_after if retry_after is not None else poll_interval * 2 ** min(attempt - 1, 30)
    return min(cap, max(poll_interval, wait))


def _api_message(response: httpx.Response) -> str:
    """The API's explanation of an error: its JSON ``message``, else the start of the body."""
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else response.text[:300]


def _rows(response: httpx.Response, definition: ExportDefinition) -> list[Row]:
    where = f"AppMetrica export {definition.export_id!r}"
    if definition.export_format == "csv":
        text = response.content.decode("utf-8-sig")
        return list(csv.DictReader(io.StringIO(text, newline="")))
    try:
        data = response.json()["data"]
    except (ValueError, KeyError, TypeError):
        raise AppMetricaError(f"{where}: the answer is not a JSON object with a data list") from None
    if not isinstance(data, list):
        raise AppMetricaError(f"{where}: data is not a list")
    return data
