"""Asia/Shanghai business days.

The dialog sources store naive local Shanghai times, and "yesterday" means the previous Shanghai
calendar day whatever time zone the Airflow workers run in. All functions take aware datetimes (as
Airflow hands them out, in UTC) and return naive Shanghai values ready to compare with the columns.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def parse_day(text: str) -> dt.date:
    """Parse ``YYYY-MM-DD`` strictly, with an error that names the expected format."""
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d").date()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"target_date must be YYYY-MM-DD, got {text!r}") from exc


def shanghai_date(instant: dt.datetime) -> dt.date:
    """The Shanghai calendar date of an aware instant."""
    if instant.tzinfo is None:
        raise ValueError("an aware datetime is required")
    return instant.astimezone(SHANGHAI).date()


def previous_shanghai_day(instant: dt.datetime) -> dt.date:
    """The Shanghai day before the one ``instant`` falls on: what a 01:00 run processes."""
    return shanghai_date(instant) - dt.timedelta(days=1)


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Naive local ``[start, end)`` of a Shanghai day, for comparing with local-time columns."""
    start = dt.datetime.combine(day, dt.time())
    return start, start + dt.timedelta(days=1)


def day_to_process(
    target_date: str | None, logical_date: dt.datetime | None, run_after: dt.datetime
) -> dt.date:
    """The Shanghai day a daily run processes.

    An explicit ``target_date`` wins. Otherwise it is the day before the run's own Shanghai date: the
    run's ``logical_date`` for scheduled and backfill runs (a 01:00 Shanghai tick of the cron trigger
    timetable), and ``run_after`` for manual and REST runs, whose ``logical_date`` is None.
    """
    if target_date:
        return parse_day(target_date)
    return previous_shanghai_day(logical_date or run_after)
