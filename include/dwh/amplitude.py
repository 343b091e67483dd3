"""The Amplitude Export API client: one week (or any range of days) of a project's events as one NDJSON.

The Export API answers a zip of hourly parts, ``<projectId>/<projectId>_<YYYY-MM-DD>_<H>#<n>.json.gz``,
each a gzip of NDJSON events. :func:`export_week` downloads it and merges every part, in time order,
into one ``{year}_week_{week}.ndjson`` inside a new ``{year}_week_{week}.zip``, which is what the DWH
loads and what the ``/amplitude/export`` endpoint hands out.

Exports are large (a busy project's week is gigabytes of NDJSON), so nothing is held in memory: the
download streams to a temporary file, each part is gunzipped as a stream straight into the output
zip's deflate stream, and memory stays at a few buffers of :data:`CHUNK_BYTES` whatever the size.

Order: the archive lists its entries by name, so hour 10 comes before hour 2 and part #10 before #2;
parts are merged by (date, hour as a number, part as a number) instead.

Naming: the archive is named after the ISO year and week of ``start`` (``2024_week_5.zip``), as the
original service did. A range that crosses into another ISO week (or spans several) keeps the name
of the week it starts in; the zip's comment records the exact range and source.

Credentials: the connections ``amplitude_web`` and ``amplitude_mobile`` (``login`` = api key,
``password`` = secret key, ``host`` = base URL, default https://amplitude.com; extra
``{"region": "eu"}`` selects the EU host when no host is given). The keys travel only in the Basic
auth header: no message, log line or repr carries them.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import httpx

from include.common.httputil import connection_base_url
from include.dwh.config import AMPLITUDE_CONN_IDS

log = logging.getLogger(__name__)

Source = Literal["web", "mobile"]
SOURCES: tuple[Source, ...] = ("web", "mobile")
DEFAULT_BASE_URL = "https://amplitude.com"
EU_BASE_URL = "https://analytics.eu.amplitude.com"
EXPORT_PATH = "/api/2/export"
MAX_RANGE_DAYS = 365
EXPORT_DELAY = dt.timedelta(hours=2)
"""Amplitude makes data exportable about this long after it arrives."""
CHUNK_BYTES = 1 << 20
"""Size of the reads and writes that stream the download and the merge."""
_PART = re.compile(r"(?:^|/)\d+_(\d{4}-\d{2}-\d{2})_(\d{1,2})#(\d+)\.json\.gz$")


class AmplitudeError(Exception):
    """Anything the Export API made impossible. Messages name the source and range, never the keys."""


class AmplitudeAuthError(AmplitudeError):
    """The API refused the api key / secret key pair (401 or 403)."""


class NoDataError(AmplitudeError):
    """The project has no events in the range (404)."""


class ExportTooLargeError(AmplitudeError):
    """The export would exceed the API's size limit (400, 4 GB): ask for fewer days."""


class AmplitudeTimeoutError(AmplitudeError):
    """The API timed out preparing the export (504), or sent nothing for ``read_timeout_s``."""


class AmplitudeConfigError(ValueError):
    """A bad range, source or connection; the message names the field."""


@dataclass(frozen=True)
class AmplitudeCredentials:
    """One project's Export API key pair and host. ``repr`` leaves the secret key out."""

    api_key: str
    secret_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL


@dataclass(frozen=True)
class WeekExport:
    """What :func:`export_week` made: the archive at ``path`` holds one NDJSON of ``events`` lines."""

    path: Path
    source: str
    start: dt.date
    end: dt.date
    events: int
    parts: int
    downloaded_bytes: int

    @property
    def name(self) -> str:
        return self.path.name

    def summary(self) -> dict[str, Any]:
        """The export as a JSON-able dict, e.g. for a DAG's summary."""
        return {
            "file": self.name,
            "source": self.source,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "events": self.events,
            "parts": self.parts,
            "downloaded_bytes": self.downloaded_bytes,
            "bytes": self.path.stat().st_size,
        }


# ------------------------------------------------------------------------------------------ inputs


def parse_day(value: str | dt.date, name: str) -> dt.date:
    """A ``YYYYMMDD`` day (a ``date`` passes through); ``name`` is the field named in errors."""
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{8}", value):
        raise AmplitudeConfigError(f"{name} must be a date as YYYYMMDD, got {value!r}")
    try:
        return dt.datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise AmplitudeConfigError(f"{name} {value!r} is not a calendar date") from None


def validate_range(start: str | dt.date, end: str | dt.date) -> tuple[dt.date, dt.date]:
    """``start`` and ``end`` as dates, checked: start <= end, at most :data:`MAX_RANGE_DAYS` days."""
    first, last = parse_day(start, "start"), parse_day(end, "end")
    if first > last:
        raise AmplitudeConfigError(f"start {first:%Y%m%d} is after end {last:%Y%m%d}")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise AmplitudeConfigError(f"the range from start to end is longer than {MAX_RANGE_DAYS} days")
    return first, last


def validate_source(source: str) -> Source:
    if source not in SOURCES:
        raise AmplitudeConfigError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    return cast(Source, source)


def archive_stem(start: dt.date) -> str:
    """``{year}_week_{week}`` of the ISO week holding ``start`` (week not zero-padded)."""
    year, week, _ = start.isocalendar()
    return f"{year}_week_{week}"


def credentials_from(
    login: str | None,
    password: str | None,
    host: str | None,
    extra: Mapping[str, Any],
    conn_id: str,
    port: int | None = None,
    schema: str | None = None,
) -> AmplitudeCredentials:
    """Credentials from a connection's fields (pure: no Airflow needed). The base URL is read as
    Airflow's HttpHook reads it (:func:`~include.common.httputil.connection_base_url`)."""
    if not login or not password:
        raise AmplitudeConfigError(f"{conn_id}: login (api key) and password (secret key) are required")
    region = str(extra.get("region") or "").lower()
    if region not in ("", "us", "eu"):
        raise AmplitudeConfigError(f"{conn_id}: extra region must be 'us' or 'eu', got {region!r}")
    base_url = connection_base_url(
        host, schema, port, default=EU_BASE_URL if region == "eu" else DEFAULT_BASE_URL
    )
    return AmplitudeCredentials(api_key=login, secret_key=password, base_url=base_url)


def load_credentials(source: str) -> AmplitudeCredentials:
    """The credentials of the source's connection (:data:`include.dwh.config.AMPLITUDE_CONN_IDS`), read at run time."""
    return load_connection_credentials(AMPLITUDE_CONN_IDS[validate_source(source)])


def load_connection_credentials(conn_id: str) -> AmplitudeCredentials:
    """Read the connection ``conn_id`` (at run time) and register both keys with the secrets masker."""
    from airflow.sdk import BaseHook
    from airflow.sdk.log import mask_secret

    conn = BaseHook.get_connection(conn_id)
    for secret in (conn.login, conn.password):
        if secret:
            mask_secret(secret)
    return credentials_from(
        conn.login, conn.password, conn.host, conn.extra_dejson or {}, conn_id, conn.port, conn.schema
    )


# ------------------------------------------------------------------------------------------ export


def export_week(
    start: str | dt.date,
    end: str | dt.date,
    source: str,
    credentials: AmplitudeCredentials,
    workdir: Path,
    *,
    read_timeout_s: float = 900.0,
    compresslevel: int = 6,
) -> WeekExport:
    """Export ``source``'s events uploaded from ``start`` 00h to ``end`` 23h (UTC) as
    ``workdir/{year}_week_{week}.zip`` holding ``{year}_week_{week}.ndjson``: every hourly part, once,
    in time order, each line one event.

    The archive appears whole or not at all (written aside, then renamed), and the download is removed
    whatever happens. Raises :class:`NoDataError` (404), :class:`ExportTooLargeError` (400),
    :class:`AmplitudeTimeoutError` (504 or silence), :class:`AmplitudeAuthError` (401/403), and
    :class:`AmplitudeConfigError` for a bad range or source before any request.
    ``read_timeout_s`` bounds the wait for each chunk: the API may think for minutes before the first.
    """
    first, last = validate_range(start, end)
    validate_source(source)
    workdir.mkdir(parents=True, exist_ok=True)
    stem = archive_stem(first)
    what = f"Amplitude {source} export {first:%Y%m%d}..{last:%Y%m%d}"
    exportable_until = dt.datetime.now(dt.UTC).replace(tzinfo=None) - EXPORT_DELAY
    if dt.datetime.combine(last, dt.time(23, 59, 59)) > exportable_until:
        log.warning("%s: the last hours are not exportable yet; the export may miss them", what)
    download = _temporary(workdir, f"{stem}.download.")
    partial = _temporary(workdir, f"{stem}.zip.partial.")
    try:
        downloaded = _download(credentials, first, last, download, what, read_timeout_s)
        with zipfile.ZipFile(
            partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
        ) as out:
            events, parts = _merge(download, out, f"{stem}.ndjson", what)
            out.comment = f"amplitude {source} {first:%Y%m%d}T00-{last:%Y%m%d}T23 events={events}".encode()
        target = workdir / f"{stem}.zip"
        partial.replace(target)
    finally:
        download.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    log.info("%s: %d events from %d parts -> %s", what, events, parts, target.name)
    return WeekExport(target, source, first, last, events, parts, downloaded)


def _temporary(workdir: Path, prefix: str) -> Path:
    """A new empty file in ``workdir`` (closed; the caller writes it by name)."""
    handle, name = tempfile.mkstemp(prefix=prefix, dir=workdir)
    os.close(handle)
    return Path(name)


def _download(
    credentials: AmplitudeCredentials,
    first: dt.date,
    last: dt.date,
    target: Path,
    what: str,
    read_timeout_s: float,
) -> int:
    """Stream the export's zip into ``target``; return its size. Raises on any answer but 200."""
    params = {"start": f"{first:%Y%m%d}T00", "end": f"{last:%Y%m%d}T23"}
    timeout = httpx.Timeout(30.0, read=read_timeout_s)
    size = 0
    try:
        with (
            httpx.Client(base_url=credentials.base_url, timeout=timeout) as http,
            http.stream(
                "GET", EXPORT_PATH, params=params, auth=(credentials.api_key, credentials.secret_key)
            ) as response,
        ):
            if response.status_code != 200:
                _raise_for_status(response, what)
            with open(target, "wb") as out:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    out.write(chunk)
                    size += len(chunk)
    except httpx.TimeoutException as exc:
        raise AmplitudeTimeoutError(
            f"{what}: the API sent nothing for too long ({type(exc).__name__})"
        ) from None
    except httpx.TransportError as exc:
        raise AmplitudeError(f"{what}: the download failed ({type(exc).__name__})") from None
    return size


def _raise_for_status(response: httpx.Response, what: str) -> None:
    status = response.status_code
    if status in (401, 403):
        raise AmplitudeAuthError(f"{what}: the API refused the api key / secret key (HTTP {status})")
    if status == 404:
        raise NoDataError(f"{what}: no data in this range")
    if status == 504:
        raise AmplitudeTimeoutError(
            f"{what}: the API timed out preparing the export (HTTP 504); try fewer days"
        )
    message = _error_text(response)
    if status == 400:
        raise ExportTooLargeError(f"{what}: the API refused the export as too large (HTTP 400): {message}")
    raise AmplitudeError(f"{what}: HTTP {status}: {message}")


def _error_text(response: httpx.Response, limit: int = 300) -> str:
    """The API's explanation of an error: the ``message`` of a JSON body, else the body's start. Reads
    no more than ``limit`` bytes of it."""
    body = next(response.iter_bytes(limit), b"")[:limit]
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else body.decode("utf-8", "replace")


def _merge(download: Path, out: zipfile.ZipFile, name: str, what: str) -> tuple[int, int]:
    """Write every part of the downloaded archive, in time order, into one entry ``name`` of ``out``;
    return (events, parts). A part whose last line lacks its newline gets one, so events never fuse."""
    try:
        archive = zipfile.ZipFile(download)
    except zipfile.BadZipFile:
        raise AmplitudeError(f"{what}: the API's answer is not a zip archive") from None
    with archive:
        parts = []
        for info in archive.infolist():
            if info.is_dir():
                continue
            match = _PART.search(info.filename)
            if match is None:
                raise AmplitudeError(f"{what}: unexpected entry {info.filename!r} in the archive")
            day, hour, number = match.groups()
            parts.append(((day, int(hour), int(number)), info))
        if not parts:
            raise NoDataError(f"{what}: the archive holds no parts")
        parts.sort(key=lambda part: part[0])
        events = 0
        with out.open(name, "w", force_zip64=True) as entry:
            for _, info in parts:
                last = b"\n"
                try:
                    with archive.open(info) as member, gzip.GzipFile(fileobj=member) as lines:
                        while chunk := lines.read(CHUNK_BYTES):
                            entry.write(chunk)
                            events += chunk.count(b"\n")
                            last = chunk[-1:]
                except (gzip.BadGzipFile, EOFError, zlib.error, zipfile.BadZipFile) as exc:
                    raise AmplitudeError(f"{what}: part {info.filename!r} is corrupt ({exc})") from None
                if last != b"\n":
                    entry.write(b"\n")
                    events += 1
    return events, len(parts)
