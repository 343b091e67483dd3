"""Saved AppMetrica export definitions: their format, their validation, and where they are read from.

The AppMetrica Logs API has no export ids (see :mod:`include.dwh.appmetrica`), so the DWH helper saves
each export it offers under an id: a definition says which resource, fields, application and period to
ask for, and the client turns it into one fixed request.

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
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from include.dwh.config import APPMETRICA_CONN_ID, APPMETRICA_EXPORTS_VARIABLE

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


class AppMetricaConfigError(ValueError):
    """An export definition, a connection or a polling parameter that cannot be used; the message
    names the field."""


class UnknownExportError(LookupError):
    """No export definition has this id."""


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


def parse_definition(export_id: str, raw: Mapping[str, Any]) -> ExportDefinition:
    """Validate one saved definition (see the module docstring for the format); the first field
    found wrong is named in the :class:`AppMetricaConfigError`."""
    where = f"export {export_id!r}"
    if not isinstance(raw, Mapping):
        raise AppMetricaConfigError(f"{where} must be a JSON object")
    unknown = sorted(set(raw) - DEFINITION_KEYS)
    if unknown:
        raise AppMetricaConfigError(
            f"{where}: unknown keys {unknown}; expected some of {sorted(DEFINITION_KEYS)}"
        )
    resource = _resource(raw.get("resource"), where)
    fields = _fields(raw.get("fields"), where)
    export_format = _one_of(raw.get("format", "json"), FORMATS, f"{where}: format")
    application_id = _optional_positive_int(raw.get("application_id"), f"{where}: application_id")
    limit = _optional_positive_int(raw.get("limit"), f"{where}: limit")
    date_dimension = raw.get("date_dimension")
    if date_dimension is not None:
        _one_of(date_dimension, DATE_DIMENSIONS, f"{where}: date_dimension")
    timezone = _timezone(raw.get("timezone", "UTC"), where)
    filters = _filters(raw.get("filters") or {}, where)
    period, since, until = raw.get("period"), raw.get("date_since"), raw.get("date_until")
    _check_window(period, since, until, where)
    return ExportDefinition(
        export_id=export_id,
        resource=resource,
        fields=fields,
        export_format=export_format,
        application_id=application_id,
        period=period,
        date_since=since,
        date_until=until,
        timezone=timezone,
        date_dimension=date_dimension,
        limit=limit,
        filters=filters,
    )


def _resource(resource: Any, where: str) -> str:
    if not isinstance(resource, str) or not _NAME.match(resource):
        raise AppMetricaConfigError(f"{where}: resource must be a Logs API resource name such as 'events'")
    return resource


def _fields(fields: Any, where: str) -> tuple[str, ...]:
    """A list of field names, or their comma-separated text."""
    if isinstance(fields, str):
        fields = [name.strip() for name in fields.split(",")]
    if not isinstance(fields, list) or not fields or not all(_is_name(name) for name in fields):
        raise AppMetricaConfigError(f"{where}: fields must be a non-empty list of field names")
    return tuple(fields)


def _one_of(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise AppMetricaConfigError(f"{what} must be one of {allowed}")
    return value


def _optional_positive_int(value: Any, where: str) -> int | None:
    return None if value is None else positive_int(value, where)


def _timezone(timezone: Any, where: str) -> str:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, TypeError, ValueError):
        raise AppMetricaConfigError(
            f"{where}: timezone must be an IANA name such as 'Europe/Moscow'"
        ) from None
    return timezone


def _filters(filters: Any, where: str) -> tuple[tuple[str, str], ...]:
    """``{field: value}`` as sorted ``(field, text)`` pairs; a filter cannot set a request parameter."""
    if not isinstance(filters, Mapping) or not all(
        _is_name(name) and isinstance(value, str | int | float) and not isinstance(value, bool)
        for name, value in filters.items()
    ):
        raise AppMetricaConfigError(f"{where}: filters must map field names to strings or numbers")
    reserved = sorted(set(filters) & REQUEST_PARAMS)
    if reserved:
        raise AppMetricaConfigError(f"{where}: filters cannot set the request parameters {reserved}")
    return tuple(sorted((name, str(value)) for name, value in filters.items()))


def _check_window(period: Any, since: Any, until: Any, where: str) -> None:
    """Either a relative ``period`` or both absolute bounds, in order."""
    if period is not None:
        if since is not None or until is not None:
            raise AppMetricaConfigError(f"{where}: give either period or date_since/date_until, not both")
        if period not in ("today", "yesterday") and not 1 <= _last_days(period) <= 366:
            raise AppMetricaConfigError(
                f"{where}: period must be today, yesterday or last_<N>_days, N <= 366"
            )
        return
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


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(_NAME.match(value))


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
        raise UnknownExportError(f"no AppMetrica export is defined with id {export_id!r} (defined: {known})")
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


def positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise AppMetricaConfigError(f"{where} must be a positive integer")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise AppMetricaConfigError(f"{where} must be a positive integer") from None
    if number < 1:
        raise AppMetricaConfigError(f"{where} must be a positive integer")
    return number
