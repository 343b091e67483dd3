"""The ``amplitude_export`` pipeline's work: one source's week from the Export API into S3 and the
seven DWH tables, re-runnable.

Per (source, period), in a locked work directory of its own (:mod:`include.common.workdir`: removed
after success or failure; one left by a killed worker is removed by the next run):

1. **Export** with :func:`include.dwh.amplitude.export_week`. 429, 5xx, 504 and broken downloads are
   retried here with exponential backoff (``attempts``, ``backoff_s``); 404 ends the source's branch
   with ``status: "no data"``; 400 (export too large) exports the range day by day and merges the
   days, in order, into the same one-entry archive.
2. **Store** the archive at :func:`object_key`, replacing the object of an earlier run.
3. **Load** the seven tables with :func:`include.dwh.exports.replace_periods`: their rows of this
   (source, period) are replaced in one transaction, so a re-run doubles nothing and a failure leaves
   every table's previous load. Events stream from the zip, parsed once, through the split into the
   tables to the batch writer, so memory is one batch a table whatever the week's size.

S3 key layout: ``amplitude/{source}/{period}/{year}_week_{week}.zip``, where ``period`` is the ISO
week (``2024-W06``) or, for another range, ``YYYYMMDD-YYYYMMDD``; the file name is the plugin's.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from include.dwh.amplitude import (
    CHUNK_BYTES,
    AmplitudeCredentials,
    AmplitudeError,
    AmplitudeTimeoutError,
    ExportTooLargeError,
    NoDataError,
    WeekExport,
    archive_stem,
    export_week,
    parse_day,
    validate_range,
    validate_source,
)
from include.dwh.amplitude_split import TABLES, EventSplitter, iter_archive_lines
from include.dwh.batch_writer import timestamps_as_text
from include.dwh.exports import LoadKey, replace_periods

log = logging.getLogger(__name__)
T = TypeVar("T")

EXPORT = "amplitude"
WORKDIR_PREFIX = "amplitude-dag-"
_RETRYABLE_STATUS = re.compile(r"HTTP (429|5\d\d)\b")
#: Rows per table a load writes at a time. On PostgreSQL each batch is one COPY on the load's
#: connection: at 200,000 events (1.4M rows), 1,000 a batch cost the server 9 to 11 s of CPU, 5,000 7.3
#: to 9.4 s, and the load 1 to 2 s more; 2,500 and 10,000 took as long as 5,000.
LOAD_BATCH_ROWS = 5000


# ------------------------------------------------------------------------------------------ periods


def iso_week_range(week: str) -> tuple[dt.date, dt.date]:
    """``2024-W06`` (or ``2024W06``) -> its Monday and Sunday."""
    match = re.fullmatch(r"(\d{4})-?W(\d{1,2})", week.strip())
    if not match:
        raise ValueError(f"week must look like 2024-W06, got {week!r}")
    try:
        monday = dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise ValueError(f"{week!r} is not an ISO week") from None
    return monday, monday + dt.timedelta(days=6)


def closed_week_before(moment: dt.datetime) -> tuple[dt.date, dt.date]:
    """The last ISO week that ended before ``moment`` (the week of the day before it)."""
    day = moment.date() - dt.timedelta(days=1)
    monday = day - dt.timedelta(days=day.weekday())
    return monday, monday + dt.timedelta(days=6)


def period_label(start: dt.date, end: dt.date) -> str:
    """``2024-W06`` for a whole ISO week, else ``YYYYMMDD-YYYYMMDD``."""
    year, week, weekday = start.isocalendar()
    if weekday == 1 and end == start + dt.timedelta(days=6):
        return f"{year}-W{week:02d}"
    return f"{start:%Y%m%d}-{end:%Y%m%d}"


def object_key(source: str, start: dt.date, end: dt.date) -> str:
    return f"{EXPORT}/{source}/{period_label(start, end)}/{archive_stem(start)}.zip"


def plan(params: Mapping[str, Any], moment: dt.datetime) -> list[dict[str, str]]:
    """One job per source: ``{"source", "start", "end", "period"}`` from the DAG's params
    (``start``/``end`` as YYYYMMDD, or ``week``; neither: the last week closed before ``moment``)."""
    start, end, week = params.get("start"), params.get("end"), params.get("week")
    if week and (start or end):
        raise ValueError("give either week or start/end, not both")
    if week:
        first, last = iso_week_range(week)
    elif start or end:
        if not (start and end):
            raise ValueError("start and end go together")
        first, last = validate_range(parse_day(start, "start"), parse_day(end, "end"))
    else:
        first, last = closed_week_before(moment)
    sources = list(dict.fromkeys(params.get("sources") or ["web", "mobile"]))
    if not sources:
        raise ValueError("sources must name at least one source")
    return [
        {"source": validate_source(source), "start": f"{first:%Y%m%d}", "end": f"{last:%Y%m%d}",
         "period": period_label(first, last)}
        for source in sources
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------ export


def is_retryable(exc: Exception) -> bool:
    """Worth another try: timeouts, 429 and 5xx answers, and broken downloads."""
    if isinstance(exc, AmplitudeTimeoutError):
        return True
    if type(exc) is not AmplitudeError:  # NoDataError, ExportTooLargeError, AmplitudeAuthError: final answers
        return False
    text = str(exc)
    return bool(_RETRYABLE_STATUS.search(text)) or "download failed" in text


def with_backoff(call: Callable[[], T], what: str, attempts: int, backoff_s: float) -> T:
    """``call()``, retried on :func:`is_retryable` errors after ``backoff_s``, 2x, 4x, ... seconds."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except AmplitudeError as exc:
            if attempt == attempts or not is_retryable(exc):
                raise
            delay = backoff_s * 2 ** (attempt - 1)
            log.warning(
                "%s: attempt %d of %d failed (%s); retrying in %.1fs", what, attempt, attempts, exc, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def export_range(
    source: str,
    first: dt.date,
    last: dt.date,
    credentials: AmplitudeCredentials,
    workdir: Path,
    *,
    attempts: int = 4,
    backoff_s: float = 5.0,
) -> tuple[WeekExport, bool]:
    """The range's archive in ``workdir`` and whether it had to be exported day by day (400).
    Raises :class:`NoDataError` when no day has data."""
    what = f"Amplitude {source} {first:%Y%m%d}..{last:%Y%m%d}"

    def one(day_first: dt.date, day_last: dt.date, into: Path) -> WeekExport:
        return with_backoff(
            lambda: export_week(day_first, day_last, source, credentials, into), what, attempts, backoff_s
        )

    try:
        return one(first, last, workdir), False
    except ExportTooLargeError:
        if first == last:
            raise
        log.warning("%s: too large for one export (400); exporting day by day", what)
    days: list[WeekExport] = []
    day = first
    while day <= last:
        try:
            days.append(one(day, day, workdir / f"day-{day:%Y%m%d}"))
        except NoDataError:
            log.info("%s: no data on %s", what, day)
        day += dt.timedelta(days=1)
    if not days:
        raise NoDataError(f"{what}: no data on any day")
    return _merge_days(days, source, first, last, workdir), True


def _merge_days(
    days: list[WeekExport], source: str, first: dt.date, last: dt.date, workdir: Path
) -> WeekExport:
    """Concatenate the days' NDJSON entries, in day order, into one ``{stem}.zip`` (streamed)."""
    stem = archive_stem(first)
    target = workdir / f"{stem}.zip"
    partial = workdir / f"{stem}.zip.partial"
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as out:
        with out.open(f"{stem}.ndjson", "w", force_zip64=True) as entry:
            for day in days:
                with zipfile.ZipFile(day.path) as archive, archive.open(archive.namelist()[0]) as lines:
                    while chunk := lines.read(CHUNK_BYTES):
                        entry.write(chunk)
                day.path.unlink()
        events = sum(day.events for day in days)
        out.comment = f"amplitude {source} {first:%Y%m%d}T00-{last:%Y%m%d}T23 events={events}".encode()
    partial.replace(target)
    return WeekExport(
        target, source, first, last, events, sum(d.parts for d in days), sum(d.downloaded_bytes for d in days)
    )


# ------------------------------------------------------------------------------------------ load


def load_archive(
    engine: sa.Engine, path: Path, key: LoadKey, *, max_rows: int = LOAD_BATCH_ROWS
) -> dict[str, int]:
    """Replace the (source, period)'s rows in every table by the archive's, in one transaction, reading
    the archive once; rows per table."""
    splitter = EventSplitter(timestamps_as_text=timestamps_as_text(engine.dialect))
    events = (splitter.split(line, number) for number, line in iter_archive_lines(path))
    loads = replace_periods(engine, key, TABLES, events, max_rows=max_rows)
    for load in loads:
        log.info(
            "%s %s %s: %d rows (replaced %d)", key.export, key.source, load.table, load.rows, load.replaced
        )
    return {load.table: load.rows for load in loads}


def export_store_load(
    job: Mapping[str, str],
    credentials: AmplitudeCredentials,
    store: Any,
    engine: sa.Engine,
    workdir: Path,
    *,
    attempts: int = 4,
    backoff_s: float = 5.0,
    max_rows: int = LOAD_BATCH_ROWS,
) -> dict[str, Any]:
    """One source's branch: export, store, load (see module). Returns its summary."""
    source = job["source"]
    first, last = parse_day(job["start"], "start"), parse_day(job["end"], "end")
    summary: dict[str, Any] = {
        "source": source,
        "period": job["period"],
        "start": job["start"],
        "end": job["end"],
    }
    try:
        export, split = export_range(
            source, first, last, credentials, workdir, attempts=attempts, backoff_s=backoff_s
        )
    except NoDataError as exc:
        log.info("%s", exc)
        return {**summary, "status": "no data", "events": 0, "rows": {}, "bytes": 0, "key": None}
    key = object_key(source, first, last)
    with open(export.path, "rb") as archive:
        store.upload(key, archive, content_type="application/zip")
    rows = load_archive(engine, export.path, LoadKey(EXPORT, source, job["period"]), max_rows=max_rows)
    return {
        **summary,
        "status": "loaded",
        "events": export.events,
        "rows": rows,
        "bytes": export.path.stat().st_size,
        "key": key,
        "split_by_day": split,
    }
