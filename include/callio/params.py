"""The callio_etl DAG's per-run params, and how their values are read.

``from`` / ``to`` take what people type: a date (its midnight), a date-time without an offset (UTC),
or one with its offset. Airflow validates a param against its JSON schema when a run is created, from
the trigger form, the REST API and the CLI alike, and answers with the schema's own words; so the
accepted forms are spelled out in the schema (one ``anyOf`` branch each, titled), and
:func:`parse_time_ms` reads exactly what the schema lets through. ``format: date-time`` alone would
refuse ``2024-05-31`` and ``2024-05-31T00:00:00``, since RFC 3339 requires an offset.

This module is imported when the DAG file is parsed: standard library only.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from include.callio.config import CallioConfigError

_DATE_TIME = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
NAIVE_PATTERN = _DATE_TIME + "$"
"""``2024-05-31T08:00``, ``2024-05-31 08:00:00.5``: a date-time without an offset."""
OFFSET_PATTERN = _DATE_TIME + r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
"""``2024-05-31T08:00:00Z``, ``2024-05-31T15:00:00+07:00``."""

TIME_SCHEMA: dict[str, Any] = {
    "type": ["null", "string"],
    "anyOf": [
        {"type": "null"},
        {"title": "a date: 2024-05-31 (midnight UTC)", "type": "string", "format": "date"},
        {"title": "in UTC: 2024-05-31T08:00:00", "type": "string", "pattern": NAIVE_PATTERN},
        {"title": "with offset: 2024-05-31T15:00:00+07:00", "type": "string", "pattern": OFFSET_PATTERN},
    ],
}
"""The JSON schema of ``from`` and ``to``: empty, a date, a date-time without or with an offset. The
titles are there for Airflow's error message, which prints the schema."""

TIME_FORMS = "a date (2024-05-31: its midnight), a date-time in UTC (2024-05-31T08:00:00) or with its offset (2024-05-31T15:00:00+07:00)"


def parse_time_ms(text: str, param: str) -> int:
    """A value :data:`TIME_SCHEMA` accepts -> epoch ms (UTC when it has no offset)."""
    value = text.strip()
    if not any(
        re.fullmatch(pattern, value) for pattern in (r"\d{4}-\d{2}-\d{2}", NAIVE_PATTERN, OFFSET_PATTERN)
    ):
        raise CallioConfigError(f"param {param}: {text!r} is not {TIME_FORMS}")
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CallioConfigError(f"param {param}: {text!r} is not a day of the calendar") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)
