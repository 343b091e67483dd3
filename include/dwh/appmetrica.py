"""The AppMetrica Logs API client: check availability, fetch a saved export by polling until it is ready.

The Logs API has no export ids: an export *is* its URL and parameters. The first request queues it
(202 ``Wait for result``), identical requests poll it until the data comes (200), and more than three
queued requests per application are refused with 429. So this module names exports itself: an
*export definition* saved under an id says which resource, fields, application and period to ask for,
and :func:`fetch_export` turns it into one fixed request and polls it.

Export definitions are a JSON object keyed by export id, kept in the Airflow Variable
``appmetrica_exports`` and/or in the ``exports`` key of the ``appmetrica_api`` connection's extra (the
Variable's entries win on the same id)::

    {
      "daily_events": {
        "resource": "events",                          # /logs/v1/export/<resource>.<format>
        "fields": ["event_name", "event_datetime", "appmetrica_device_id"],
        "period": "yesterday",                         # or "today", "last_7_days", "last_<N>_days"
        "timezone": "Europe/Moscow",                   # for a period: whose midnight (default UTC)
        "format": "json",                              # or "csv" (default json)
        "application_id": 1234567,                     # default: the connection's extra application_id
        "date_dimension": "receive",                   # optional: default | receive
        "limit": 100000,                               # optional
        "filters": {"event_name": "purchase"}          # optional: field = value
      },
      "launch_week": {"resource": "installations", "fields": ["install_datetime"],
                      "date_since": "2024-02-01", "date_until": "2024-02-07 12:00:00"}
    }

A definition has either a ``period`` or absolute ``date_since`` and ``date_until`` (``yyyy-mm-dd``,
meaning the whole day, or ``yyyy-mm-dd hh:mm:ss``). ``last_<N>_days`` is the N whole days before today.
A relative period is resolved once per fetch, so every poll repeats exactly the same request.

Connection ``appmetrica_api``: ``password`` holds the OAuth token, ``host`` the base URL (default
https://api.appmetrica.yandex.net), ``extra`` ``application_id`` (and ``exports``). The token is sent as
``Authorization: OAuth <token>`` and appears in no message, log line or repr.

The client is async (httpx). Each public coroutine opens and closes its own HTTP client, so it runs
under ``asyncio.run(...)`` anywhere, a Flask worker thread included, with no loop shared between calls::

    settings = load_settings()
    definition = lookup_export("daily_events", load_definitions())
    result = asyncio.run(fetch_export(definition, settings, poll_interval=5, poll_timeout=300))
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from include.common.httputil import connection_base_url, retry_after_seconds
from include.dwh.config import APPMETRICA_CONN_ID, APPMETRICA_EXPORTS_VARIABLE

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.appmetrica.yandex.net"
STATUS_PATH = "/management/v1/logsapi/status"
POLL_INTERVAL_RANGE = (0.1, 60.0)
"""Seconds between two polls: faster only adds load, slower than a minute only adds latency."""
POLL_TIMEOUT_RANGE = (1.0, 3600.0)
"""Seconds a fetch may wait for its export in all."""
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FORMATS = ("json", "csv")
DATE_DIMENSIONS = ("default", "receive")
REQUEST_PARAMS = frozenset(
    {"application_id", "date_since", "date_until", "fields", "date_dimension", "limit", "use_utf8_bom"}
)
"""Query parameters of an export request that are not field filters."""
DEFINITION_KEYS = frozenset(
    {
        "resource",
        "fields",
        "format",
        "application_id",
        "period",
        "date_since",
        "date_until",
        "timezone",
        "date_dimension",
        "limit",
        "filters",
    }
)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LAST_DAYS = re.compile(r"^last_(\d+)_days$")

Row = dict[str, Any]


class AppMetricaError(Exception):
    """Anything the Logs API made impossible. Messages name the export and the status, never the token."""


class AppMetricaAuthError(AppMetricaError):
    """The API refused the OAuth token (401), or the token may not read the application (403)."""


class AppMetricaRequestError(AppMetricaError):
    """The API refused the export's parameters (400); the message carries the API's explanation."""


class AppMetricaUnavailable(AppMetricaError):
    """The API failed (5xx, or no answer) for longer than the bounded retries allow."""


class ExportTimeout(AppMetricaError):
    """The export was not ready within ``poll_timeout``. The API keeps preparing it: asking for the
    same window again later polls that export instead of queueing another (a ``today`` period ends at
    the time of the fetch, so it asks for a new window each time)."""

    def __init__(self, message: str, *, export_id: str, polls: int, elapsed_s: float) -> None:
        super().__init__(message)
        self.export_id = export_id
        self.polls = polls
        self.elapsed_s = elapsed_s


class AppMetricaConfigError(ValueError):
    """An export definition, a connection or a polling parameter that cannot be used; the message
    names the field."""


class UnknownExport(LookupError):
    """No export definition has this id."""


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


@dataclass(frozen=True)
class ExportDefinition:
    """A saved export: what to ask the Logs API for. Build it with :func:`parse_definition`."""

    export_id: str
    resource: str
    fields: tuple[str, ...]
    export_format: str = "json"
    application_id: int | None = None
    period: str | None = None
    date_since: str | None = None
    date_until: str | None = None
    timezone: str = "UTC"
    date_dimension: str | None = None
    limit: int | None = None
    filters: tuple[tuple[str, str], ...] = ()

    @property
    def path(self) -> str:
        return f"/logs/v1/export/{self.resource}.{self.export_format}"

    def window(self, now: dt.datetime | None = None) -> tuple[str, str]:
        """``(date_since, date_until)`` as the API takes them; a period is resolved against ``now``
        (default: the current time) in the definition's time zone."""
        if self.period is None:
            assert self.date_since is not None and self.date_until is not None
            return _absolute(self.date_since, start=True), _absolute(self.date_until, start=False)
        local = (now or dt.datetime.now(dt.UTC)).astimezone(ZoneInfo(self.timezone)).replace(tzinfo=None)
        today = dt.datetime.combine(local.date(), dt.time())
        if self.period == "today":
            since, until = today, local.replace(microsecond=0)
        elif self.period == "yesterday":
            since, until = today - dt.timedelta(days=1), today - dt.timedelta(seconds=1)
        else:
            since, until = today - dt.timedelta(days=_last_days(self.period)), today - dt.timedelta(seconds=1)
        return since.strftime(DATETIME_FORMAT), until.strftime(DATETIME_FORMAT)

    def params(self, application_id: int | None, now: dt.datetime | None = None) -> dict[str, str]:
        """The query string of the export request, for ``application_id`` unless the definition names
        its own application."""
        app = self.application_id or application_id
        if app is None:
            raise AppMetricaConfigError(
                f"export {self.export_id!r} names no application_id and the {APPMETRICA_CONN_ID} connection's "
                "extra has none either"
            )
        since, until = self.window(now)
        params = {
            "application_id": str(app),
            "date_since": since,
            "date_until": until,
            "fields": ",".join(self.fields),
        }
        if self.date_dimension is not None:
            params["date_dimension"] = self.date_dimension
        if self.limit is not None:
            params["limit"] = str(self.limit)
        return params | dict(self.filters)


# ------------------------------------------------------------------------------------- definitions


def parse_definition(export_id: str, raw: Mapping[str, Any]) -> ExportDefinition:
    """Validate one saved definition (see the module docstring for the format)."""
    where = f"export {export_id!r}"
    if not isinstance(raw, Mapping):
        raise AppMetricaConfigError(f"{where} must be a JSON object")
    unknown = sorted(set(raw) - DEFINITION_KEYS)
    if unknown:
        raise AppMetricaConfigError(
            f"{where}: unknown keys {unknown}; expected some of {sorted(DEFINITION_KEYS)}"
        )
    resource = raw.get("resource")
    if not isinstance(resource, str) or not _NAME.match(resource):
        raise AppMetricaConfigError(f"{where}: resource must be a Logs API resource name such as 'events'")
    fields = raw.get("fields")
    if isinstance(fields, str):
        fields = [name.strip() for name in fields.split(",")]
    if (
        not isinstance(fields, list)
        or not fields
        or not all(isinstance(f, str) and _NAME.match(f) for f in fields)
    ):
        raise AppMetricaConfigError(f"{where}: fields must be a non-empty list of field names")
    export_format = raw.get("format", "json")
    if export_format not in FORMATS:
        raise AppMetricaConfigError(f"{where}: format must be one of {FORMATS}")
    application_id = raw.get("application_id")
    if application_id is not None:
        application_id = _positive_int(application_id, f"{where}: application_id")
    limit = raw.get("limit")
    if limit is not None:
        limit = _positive_int(limit, f"{where}: limit")
    date_dimension = raw.get("date_dimension")
    if date_dimension is not None and date_dimension not in DATE_DIMENSIONS:
        raise AppMetricaConfigError(f"{where}: date_dimension must be one of {DATE_DIMENSIONS}")
    timezone = raw.get("timezone", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, TypeError, ValueError):
        raise AppMetricaConfigError(
            f"{where}: timezone must be an IANA name such as 'Europe/Moscow'"
        ) from None
    filters = raw.get("filters") or {}
    if not isinstance(filters, Mapping) or not all(
        isinstance(k, str) and _NAME.match(k) and isinstance(v, str | int | float) and not isinstance(v, bool)
        for k, v in filters.items()
    ):
        raise AppMetricaConfigError(f"{where}: filters must map field names to strings or numbers")
    reserved = sorted(set(filters) & REQUEST_PARAMS)
    if reserved:
        raise AppMetricaConfigError(f"{where}: filters cannot set the request parameters {reserved}")
    period, since, until = raw.get("period"), raw.get("date_since"), raw.get("date_until")
    if period is not None:
        if since is not None or until is not None:
            raise AppMetricaConfigError(f"{where}: give either period or date_since/date_until, not both")
        if period not in ("today", "yesterday") and not 1 <= _last_days(period) <= 366:
            raise AppMetricaConfigError(
                f"{where}: period must be today, yesterday or last_<N>_days, N <= 366"
            )
    else:
        if since is None or until is None:
            raise AppMetricaConfigError(f"{where}: give a period or both date_since and date_until")
        try:
            first, last = _absolute(since, start=True), _absolute(until, start=False)
        except (TypeError, ValueError):
            raise AppMetricaConfigError(
                f"{where}: date_since and date_until must be yyyy-mm-dd or yyyy-mm-dd hh:mm:ss"
            ) from None
        if first > last:
            raise AppMetricaConfigError(f"{where}: date_since is later than date_until")
    return ExportDefinition(
        export_id=export_id,
        resource=resource,
        fields=tuple(fields),
        export_format=export_format,
        application_id=application_id,
        period=period,
        date_since=since,
        date_until=until,
        timezone=timezone,
        date_dimension=date_dimension,
        limit=limit,
        filters=tuple(sorted((name, str(value)) for name, value in filters.items())),
    )


def parse_definitions(raw: Mapping[str, Any] | str | None, source: str) -> dict[str, ExportDefinition]:
    """Validate a JSON object (or its text) of definitions keyed by export id; ``source`` names where
    it came from in error messages."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise AppMetricaConfigError(f"{source}: not valid JSON (line {exc.lineno})") from None
    if not isinstance(raw, Mapping):
        raise AppMetricaConfigError(f"{source}: must be a JSON object keyed by export id")
    definitions = {}
    for export_id, item in raw.items():
        try:
            definitions[str(export_id)] = parse_definition(str(export_id), item)
        except AppMetricaConfigError as exc:
            raise AppMetricaConfigError(f"{source}: {exc}") from None
    return definitions


def lookup_export(
    export_id: str, definitions: Mapping[str, ExportDefinition | Mapping[str, Any]]
) -> ExportDefinition:
    """The definition saved as ``export_id``. ``definitions`` may hold parsed definitions or raw JSON
    objects (validated here), so callers and tests can pass a plain dict."""
    item = definitions.get(export_id)
    if item is None:
        known = ", ".join(sorted(definitions)) or "none"
        raise UnknownExport(f"no AppMetrica export is defined with id {export_id!r} (defined: {known})")
    return item if isinstance(item, ExportDefinition) else parse_definition(export_id, item)


def load_definitions(
    conn_id: str = APPMETRICA_CONN_ID, variable: str = APPMETRICA_EXPORTS_VARIABLE
) -> dict[str, ExportDefinition]:
    """The definitions saved in the connection's extra ``exports`` and in the Variable ``variable``,
    the Variable's winning on the same id. Reads Airflow: call it at run time, never at parse time."""
    from airflow.sdk import BaseHook, Variable

    extra = BaseHook.get_connection(conn_id).extra_dejson or {}
    definitions = parse_definitions(extra.get("exports"), f"{conn_id} extra exports")
    return definitions | parse_definitions(Variable.get(variable, default=None), f"Variable {variable}")


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
        application_id = _positive_int(application_id, f"{APPMETRICA_CONN_ID} extra application_id")
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
    :class:`AppMetricaAuthError` when the token is refused and :class:`AppMetricaUnavailable` when the
    API cannot be reached or fails; there are no retries, a ping reports the present."""
    async with _client(settings) as http:
        started = time.perf_counter()
        try:
            response = await http.get(STATUS_PATH)
        except httpx.TransportError as exc:
            raise AppMetricaUnavailable(f"AppMetrica at {settings.base_url}: {type(exc).__name__}") from None
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
    if response.status_code in (401, 403):
        _raise_for_refusal(response, "the Logs API status")
    if response.status_code != 200:
        raise AppMetricaUnavailable(f"AppMetrica Logs API status: HTTP {response.status_code}")
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
    :class:`ExportTimeout`. ``fresh`` asks the API for a new file instead of one prepared earlier (until
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
                    _raise_for_refusal(response, f"export {export_id!r}")
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
                        raise AppMetricaUnavailable(
                            f"AppMetrica export {export_id!r} failed {failures} times in a row; last: {last}"
                        )
                    wait = _backoff(retry_after, poll_interval, failures, settings.backoff_cap_s)
                remaining = poll_timeout - (time.monotonic() - started)
                if wait > remaining:
                    raise ExportTimeout(
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
        raise ExportTimeout(
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


def _raise_for_refusal(response: httpx.Response, what: str) -> None:
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


def _absolute(value: str, *, start: bool) -> str:
    """``yyyy-mm-dd`` (the day's first or last second) or ``yyyy-mm-dd hh:mm:ss``, checked."""
    if not isinstance(value, str):
        raise TypeError("a date must be text")
    if len(value) == 10:
        day = dt.date.fromisoformat(value)
        return f"{day.isoformat()} {'00:00:00' if start else '23:59:59'}"
    return dt.datetime.strptime(value, DATETIME_FORMAT).strftime(DATETIME_FORMAT)


def _last_days(period: Any) -> int:
    """N of ``last_<N>_days``; 0 for anything else."""
    match = _LAST_DAYS.match(period) if isinstance(period, str) else None
    return int(match.group(1)) if match else 0


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise AppMetricaConfigError(f"{where} must be a positive integer")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise AppMetricaConfigError(f"{where} must be a positive integer") from None
    if number < 1:
        raise AppMetricaConfigError(f"{where} must be a positive integer")
    return number
