"""When callio_etl runs: ``CALLIO_RUN_TIMES_UTC`` and ``CALLIO_STAFF_GROUP_TIME_UTC``.

They live in the environment of the DAG processor (the old service's ``SCHEDULER_*`` keys) and are read
when the DAG file is parsed, because a schedule must be known without a database round trip. This module
imports nothing heavy for the same reason.
"""

from __future__ import annotations

import os
import re

from include.callio.config import CallioConfigError

DEFAULT_RUN_TIMES_UTC = "02:30,04:00,06:00,08:00,11:00"


def parse_times(text: str, key: str = "CALLIO_RUN_TIMES_UTC") -> list[str]:
    """``"02:30,4:00"`` -> ``["02:30", "04:00"]``: validated, zero-padded, sorted, without repeats."""
    times = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d{1,2}):(\d{2})", part)
        if not match or int(match[1]) > 23 or int(match[2]) > 59:
            raise CallioConfigError(f"{key}: {part!r} is not a time of day HH:MM")
        times.add(f"{int(match[1]):02d}:{match[2]}")
    if not times:
        raise CallioConfigError(f"{key} names no time of day")
    return sorted(times)


def schedule_times(environ: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The run times (UTC) and the staff/group time: the latter defaults to the first run time and is
    always one of the run times, since it selects which scheduled run also takes the snapshots."""
    environ = os.environ if environ is None else environ
    times = parse_times(environ.get("CALLIO_RUN_TIMES_UTC") or DEFAULT_RUN_TIMES_UTC)
    staff = environ.get("CALLIO_STAFF_GROUP_TIME_UTC")
    staff_time = parse_times(staff, "CALLIO_STAFF_GROUP_TIME_UTC")[0] if staff else times[0]
    if staff_time not in times:
        times = sorted({*times, staff_time})
    return times, staff_time


def crons(times: list[str]) -> list[str]:
    """One daily cron expression per ``HH:MM``."""
    return [f"{int(t[3:])} {int(t[:2])} * * *" for t in times]
