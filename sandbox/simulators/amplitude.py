"""The Amplitude Export API, simulated over real HTTP with deterministic synthetic events.

It behaves as ``API_FACTS.md`` says the real one does. ``GET /api/2/export?start=YYYYMMDDTHH&end=
YYYYMMDDTHH`` with HTTP Basic auth (api key : secret key) answers a zip archive of the project's events
uploaded in those hours (both inclusive, UTC): one entry per hour and part, named
``<projectId>/<projectId>_<YYYY-MM-DD>_<H>#<n>.json.gz`` (hour not zero-padded), each a gzip of NDJSON
events with Amplitude's export fields. Entries are stored in name order, as a listing of the files would
give them, so hour 10 comes before hour 2 and part #10 before part #2: the archive's order is not time
order. 404 answers a range without data (before ``data_since``, or past the last hour exportable now:
data is exportable about two hours after it arrives), 400 an export larger than ``max_export_bytes``
(the real limit is 4 GB; estimated from the mean event size, as the real API must decide before it
builds anything), and :attr:`AmplitudeSimulator.faults` adds the 504 that long exports meet.

Two projects are served, ``web`` and ``mobile``, each with its own key pair. An export is built once per
(project, range) into a temporary file and then streamed from disk, so a large one (the benchmark's
168 hourly parts, 1 GB of NDJSON) never sits in memory; the last ``cached_exports`` builds are kept.
In-process::

    sim = AmplitudeSimulator(events_per_hour=60, parts_per_hour=3)
    with sim.serve() as base_url:
        ...  # sim.projects["web"].api_key / .secret_key

Standalone (the first line on stdout is ``{"base_url", "projects"}``; SIGTERM stops it)::

    python -m sandbox.simulators.amplitude --port 0 --events-per-hour 200 --parts-per-hour 2
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import datetime as dt
import functools
import gzip
import json
import random
import secrets
import shutil
import signal
import tempfile
import threading
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.http import BadRequestError, Request, Response, SimulatedApi

HOUR = dt.timedelta(hours=1)
EXPORT_DELAY = dt.timedelta(hours=2)
"""Data is exportable about this long after it arrives."""
MAX_RANGE = dt.timedelta(days=365)
DEFAULT_MAX_EXPORT_BYTES = 4 * 1024**3
USERS_PER_PROJECT = 2_000
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_CHUNK_EVENTS = 500  # events handed to gzip at once: one write per event would be slow


@dataclass(frozen=True)
class AmplitudeProject:
    """One Amplitude project and the key pair of its Export API. ``repr`` leaves the secret out."""

    source: str
    project_id: int
    api_key: str
    secret_key: str = field(repr=False)

    def credentials(self) -> dict[str, str | int]:
        return {
            "source": self.source,
            "project_id": self.project_id,
            "api_key": self.api_key,
            "secret_key": self.secret_key,
        }


def default_projects(seed: int = 1) -> dict[str, AmplitudeProject]:
    """The ``web`` and ``mobile`` projects. Their keys depend on the seed only, so a demo's connections
    can be written before any simulator runs."""
    projects = {}
    for number, source in enumerate(("web", "mobile")):
        rng = random.Random(f"{seed}/amplitude/{source}")
        projects[source] = AmplitudeProject(
            source, 400_000 + number, f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(128):032x}"
        )
    return projects


class AmplitudeSimulator:
    """Serve the Export API for ``projects`` (default: :func:`default_projects`).

    Every hour from ``data_since`` to ``data_until`` (default: the last hour exportable now) holds
    ``events_per_hour`` events split into ``parts_per_hour`` entries; ``compresslevel`` is the entries'
    gzip level. Temporary files live in ``workdir`` (default: a new temporary directory, removed by
    :meth:`close` and at the end of :meth:`serve`).
    """

    def __init__(
        self,
        *,
        projects: Mapping[str, AmplitudeProject] | None = None,
        events_per_hour: int = 24,
        parts_per_hour: int = 1,
        data_since: dt.datetime = dt.datetime(2020, 1, 1),
        data_until: dt.datetime | None = None,
        max_export_bytes: int = DEFAULT_MAX_EXPORT_BYTES,
        compresslevel: int = 6,
        cached_exports: int = 4,
        seed: int = 1,
        workdir: Path | None = None,
    ) -> None:
        if events_per_hour < 1 or parts_per_hour < 1 or cached_exports < 1:
            raise ValueError("events_per_hour, parts_per_hour and cached_exports must be positive")
        self.projects = dict(projects or default_projects(seed))
        self.events_per_hour = events_per_hour
        self.parts_per_hour = parts_per_hour
        self.data_since = _hour(data_since)
        self.data_until = _hour(data_until) if data_until is not None else None
        self.max_export_bytes = max_export_bytes
        self.compresslevel = compresslevel
        self.cached_exports = cached_exports
        self.seed = seed
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="amplitude-sim-")) if workdir is None else workdir
        self._lock = threading.Lock()
        self._builds: dict[tuple[int, dt.datetime, dt.datetime], threading.Lock] = {}
        self._files: OrderedDict[tuple[int, dt.datetime, dt.datetime], Path] = OrderedDict()
        self._event_bytes: float | None = None
        self.api = SimulatedApi("amplitude")
        self.faults = self.api.faults
        self.api.route("GET", "/api/2/export")(self._export)

    @contextlib.contextmanager
    def serve(self, port: int = 0, host: str = "127.0.0.1") -> Generator[str]:
        """Serve on ``host`` until the block ends; yield the base URL. Removes the built exports after."""
        try:
            with self.api.serve(port, host) as base_url:
                yield base_url
        finally:
            self.close()

    def close(self) -> None:
        """Remove every built export (and the working directory, when the simulator made it)."""
        with self._lock:
            files, self._files = list(self._files.values()), OrderedDict()
        for path in files:
            path.unlink(missing_ok=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def last_hour(self) -> dt.datetime:
        """The last hour with data: ``data_until``, or the last hour exportable now."""
        if self.data_until is not None:
            return self.data_until
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        return _hour(now - EXPORT_DELAY) - HOUR

    def hours(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """The hours in ``[start, end]`` (inclusive) that hold data."""
        first, last = max(_hour(start), self.data_since), min(_hour(end), self.last_hour())
        return [first + n * HOUR for n in range(int((last - first) / HOUR) + 1)] if first <= last else []

    def expected_events(self, start: dt.datetime, end: dt.datetime) -> int:
        """How many events an export of ``[start, end]`` holds, per project."""
        return len(self.hours(start, end)) * self.events_per_hour

    def prepare(self, source: str, start: dt.datetime, end: dt.datetime) -> Path:
        """Build (or find) the export of ``[start, end]`` for the ``source`` project; return its file."""
        return self._archive(self.projects[source], _hour(start), _hour(end))

    # --- the route -------------------------------------------------------------------------------

    def _export(self, request: Request) -> Response:
        project = self._project(request)
        if project is None:
            return Response.error(
                401, "Invalid API key or secret key", {"WWW-Authenticate": 'Basic realm="Amplitude"'}
            )
        try:
            start, end = _range(request.query)
        except BadRequestError as exc:
            return Response.error(400, str(exc))
        hours = self.hours(start, end)
        if not hours:
            return Response.error(404, "Raw data files were not found.")
        estimate = len(hours) * self.events_per_hour * self._mean_event_bytes()
        if estimate > self.max_export_bytes:
            return Response.error(
                400,
                f"Export size would exceed the limit of {self.max_export_bytes} bytes "
                f"(about {int(estimate)} bytes); request a shorter time range",
            )
        path = self._archive(project, start, end)
        name = f"{project.project_id}_{start:%Y%m%dT%H}_{end:%Y%m%dT%H}.zip"
        return Response.from_file(
            path, "application/zip", headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    def _project(self, request: Request) -> AmplitudeProject | None:
        scheme, _, encoded = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            key, colon, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        for project in self.projects.values():
            if (
                colon
                and secrets.compare_digest(key, project.api_key)
                and secrets.compare_digest(secret, project.secret_key)
            ):
                return project
        return None

    # --- building --------------------------------------------------------------------------------

    def _archive(self, project: AmplitudeProject, start: dt.datetime, end: dt.datetime) -> Path:
        """The export's zip on disk, built on first use. Concurrent requests for the same export wait
        for one build; other exports are not held up."""
        key = (project.project_id, start, end)
        with self._lock:
            path = self._files.get(key)
            if path is not None:
                self._files.move_to_end(key)
                return path
            build_lock = self._builds.setdefault(key, threading.Lock())
        with build_lock:
            with self._lock:
                path = self._files.get(key)
            if path is None:
                path = self._build(project, start, end)
                with self._lock:
                    self._files[key] = path
                    self._builds.pop(key, None)
                    while len(self._files) > self.cached_exports:
                        _, old = self._files.popitem(last=False)
                        old.unlink(missing_ok=True)
        return path

    def _build(self, project: AmplitudeProject, start: dt.datetime, end: dt.datetime) -> Path:
        entries = sorted(
            (
                f"{project.project_id}/{project.project_id}_{hour:%Y-%m-%d}_{hour.hour}#{part}.json.gz",
                hour,
                part,
            )
            for hour in self.hours(start, end)
            for part in range(self.parts_per_hour)
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        final = self.workdir / f"{project.project_id}_{start:%Y%m%d%H}_{end:%Y%m%d%H}.zip"
        partial = final.with_suffix(".partial")
        try:
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
                for name, hour, part in entries:
                    info = zipfile.ZipInfo(name, date_time=(hour + EXPORT_DELAY).timetuple()[:6])
                    with (
                        archive.open(info, "w") as entry,
                        gzip.GzipFile(
                            fileobj=entry, mode="wb", compresslevel=self.compresslevel, mtime=0
                        ) as gz,
                    ):
                        for chunk in self._chunks(project, hour, part):
                            gz.write(chunk)
            partial.replace(final)
        finally:
            partial.unlink(missing_ok=True)
        return final

    def _chunks(self, project: AmplitudeProject, hour: dt.datetime, part: int) -> Iterator[bytes]:
        """Part ``part`` of the hour's events as NDJSON, a few hundred lines at a time.

        The hour's events are numbered in upload order and cut into ``parts_per_hour`` consecutive runs;
        each part has its own random stream, so parts can be built in any order."""
        total, parts = self.events_per_hour, self.parts_per_hour
        first, stop = part * total // parts, (part + 1) * total // parts
        rng = random.Random(f"{self.seed}/{project.project_id}/{hour:%Y%m%d%H}/{part}")
        lines: list[str] = []
        for index in range(first, stop):
            upload = hour + dt.timedelta(microseconds=index * 3_600_000_000 // total)
            lines.append(_line(_event(project, rng, upload, index)))
            if len(lines) == _CHUNK_EVENTS:
                yield ("\n".join(lines) + "\n").encode()
                lines.clear()
        if lines:
            yield ("\n".join(lines) + "\n").encode()

    def _mean_event_bytes(self) -> float:
        """The mean size of an NDJSON event line, measured once on a sample hour."""
        if self._event_bytes is None:
            project = next(iter(self.projects.values()))
            rng = random.Random(f"{self.seed}/sample")
            sizes = [len(_line(_event(project, rng, self.data_since, n)).encode()) + 1 for n in range(200)]
            self._event_bytes = sum(sizes) / len(sizes)
        return self._event_bytes


# ------------------------------------------------------------------------------------------ events


_WEB = (
    ("Chrome", "120", "Mac", "Apple", "Mac OS X"),
    ("Chrome", "121", "Windows", "Microsoft", "Windows"),
    ("Safari", "17", "Mac", "Apple", "Mac OS X"),
    ("Firefox", "122", "Windows", "Microsoft", "Windows"),
    ("Edge", "120", "Windows", "Microsoft", "Windows"),
)
_MOBILE = (
    ("iOS", "17.2", "Apple iPhone 15", "Apple", "iPhone 15", "iPhone"),
    ("iOS", "16.6", "Apple iPhone 13", "Apple", "iPhone 13", "iPhone"),
    ("android", "14", "Samsung Galaxy S23", "Samsung", "SM-S911B", "Samsung Phone"),
    ("android", "13", "Xiaomi Redmi Note 12", "Xiaomi", "23021RAAEG", "Xiaomi Phone"),
    ("android", "14", "Google Pixel 8", "Google", "Pixel 8", "Google Phone"),
)
_PLACES = (
    ("Brazil", "São Paulo", "São Paulo", -23.55, -46.63, "pt-BR"),
    ("Brazil", "Rio de Janeiro", "Rio de Janeiro", -22.91, -43.17, "pt-BR"),
    ("Russia", "Moscow", "Moscow", 55.75, 37.62, "ru-RU"),
    ("Germany", "Berlin", "Land Berlin", 52.52, 13.40, "de-DE"),
    ("United States", "New York", "New York", 40.71, -74.01, "en-US"),
    ("Vietnam", "Ho Chi Minh City", "Ho Chi Minh", 10.82, 106.63, "vi-VN"),
)
_CARRIERS = ("Vivo", "Claro", "MTS", "Vodafone", "T-Mobile", "Viettel")
_EVENT_TYPES = (
    ("session_start", 6),
    ("page_view", 30),
    ("product_view", 20),
    ("search", 10),
    ("add_to_cart", 8),
    ("begin_checkout", 3),
    ("purchase", 2),
    ("sign_up", 1),
    ("session_end", 5),
)
_EVENT_NAMES = [name for name, weight in _EVENT_TYPES for _ in range(weight)]
_PAGES = ("/", "/catalog", "/catalog/shoes", "/product/{}", "/cart", "/checkout", "/account")


@functools.lru_cache(maxsize=2 * USERS_PER_PROJECT)
def _user(project_id: int, source: str, number: int) -> dict[str, object]:
    """The fields that stay with a user and their device: the same user always looks the same."""
    rng = random.Random(f"{project_id}/user/{number}")
    country, city, region, lat, lng, language = rng.choice(_PLACES)
    created = dt.datetime(2023, 1, 1) + dt.timedelta(seconds=rng.randrange(365 * 86_400))
    user: dict[str, object] = {
        "amplitude_id": 900_000_000_000 + project_id % 1000 * 1_000_000 + number,
        "user_id": f"u{number:06d}" if number % 3 else None,
        "device_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "country": country,
        "city": city,
        "region": region,
        "location_lat": round(lat + rng.uniform(-0.2, 0.2), 5),
        "location_lng": round(lng + rng.uniform(-0.2, 0.2), 5),
        "language": language,
        "ip_address": f"{rng.randint(11, 199)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "user_creation_time": created.strftime(TIME_FORMAT),
        "start_version": f"2.{rng.randint(0, 9)}.0",
        "user_properties": {
            "plan": rng.choice(("free", "free", "premium")),
            "cohort": f"{created:%Y-%m}",
            "referrer": rng.choice(("google", "direct", "instagram", "email")),
            "initial_utm_source": rng.choice(("google", "facebook", "(none)")),
        },
    }
    if source == "web":
        browser, version, device_type, manufacturer, os_family = rng.choice(_WEB)
        user.update(
            platform="Web",
            os_name=browser,
            os_version=version,
            device_type=device_type,
            device_family=os_family,
            device_brand=None,
            device_manufacturer=manufacturer,
            device_model=device_type,
            device_carrier=None,
            library="amplitude-ts/2.5.2",
            version_name=None,
            adid=None,
            idfa=None,
        )
    else:
        os_name, version, device_type, manufacturer, model, family = rng.choice(_MOBILE)
        ios = os_name == "iOS"
        user.update(
            platform="iOS" if ios else "Android",
            os_name=os_name,
            os_version=version,
            device_type=device_type,
            device_family=family,
            device_brand=manufacturer,
            device_manufacturer=manufacturer,
            device_model=model,
            device_carrier=rng.choice(_CARRIERS),
            library="amplitude-swift/1.3.1" if ios else "amplitude-android/1.12.2",
            version_name=f"4.{rng.randint(0, 8)}.{rng.randint(0, 20)}",
            adid=None if ios else str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            idfa=str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper() if ios else None,
        )
    return user


def _event(
    project: AmplitudeProject, rng: random.Random, upload: dt.datetime, index: int
) -> dict[str, object]:
    """One export event uploaded at ``upload``; ``index`` is its number within the hour."""
    user = _user(project.project_id, project.source, rng.randrange(USERS_PER_PROJECT))
    event_time = upload - dt.timedelta(milliseconds=rng.randint(200, 90_000))
    session_start = int(event_time.replace(tzinfo=dt.UTC).timestamp()) // 1800 * 1_800_000
    event_type = rng.choice(_EVENT_NAMES)
    page = rng.choice(_PAGES).format(rng.randint(1, 5000))
    event_uuid = uuid.UUID(int=rng.getrandbits(128), version=4)
    properties: dict[str, object] = {
        "page_path": page,
        "page_title": page.strip("/").replace("/", " ") or "home",
    }
    if event_type in ("product_view", "add_to_cart", "purchase"):
        properties.update(
            product_id=f"sku-{rng.randint(1, 5000)}", price=round(rng.uniform(5, 500), 2), currency="BRL"
        )
    if event_type == "search":
        properties["query"] = rng.choice(("sneakers", "running shoes", "boots", "sandals"))
    return {
        "$insert_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "$schema": 12,
        "adid": user["adid"],
        "amplitude_attribution_ids": None,
        "amplitude_event_type": None,
        "amplitude_id": user["amplitude_id"],
        "app": project.project_id,
        "city": user["city"],
        "client_event_time": event_time.strftime(TIME_FORMAT),
        "client_upload_time": (upload - dt.timedelta(milliseconds=rng.randint(20, 150))).strftime(
            TIME_FORMAT
        ),
        "country": user["country"],
        "data": {"path": "/2/httpapi", "group_first_event": {}, "group_ids": {}},
        "data_type": "event",
        "device_brand": user["device_brand"],
        "device_carrier": user["device_carrier"],
        "device_family": user["device_family"],
        "device_id": user["device_id"],
        "device_manufacturer": user["device_manufacturer"],
        "device_model": user["device_model"],
        "device_type": user["device_type"],
        "dma": None,
        "event_id": index + 1,
        "event_properties": properties,
        "event_time": event_time.strftime(TIME_FORMAT),
        "event_type": event_type,
        "global_user_properties": {},
        "group_properties": {},
        "groups": {},
        "idfa": user["idfa"],
        "ip_address": user["ip_address"],
        "is_attribution_event": False,
        "language": user["language"],
        "library": user["library"],
        "location_lat": user["location_lat"],
        "location_lng": user["location_lng"],
        "os_name": user["os_name"],
        "os_version": user["os_version"],
        "partner_id": None,
        "paying": True if event_type == "purchase" else None,
        "plan": {},
        "platform": user["platform"],
        "processed_time": (upload + dt.timedelta(milliseconds=rng.randint(100, 5_000))).strftime(TIME_FORMAT),
        "region": user["region"],
        "sample_rate": None,
        "server_received_time": upload.strftime(TIME_FORMAT),
        "server_upload_time": upload.strftime(TIME_FORMAT),
        "session_id": session_start,
        "source_id": None,
        "start_version": user["start_version"],
        "user_creation_time": user["user_creation_time"],
        "user_id": user["user_id"],
        "user_properties": user["user_properties"],
        "uuid": str(event_uuid),
        "version_name": user["version_name"],
    }


# ------------------------------------------------------------------------------------------ pieces


def _line(event: Mapping[str, object]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def _hour(moment: dt.datetime) -> dt.datetime:
    """The hour holding ``moment``, naive UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.replace(minute=0, second=0, microsecond=0)


def _range(query: Mapping[str, str]) -> tuple[dt.datetime, dt.datetime]:
    bounds = []
    for name in ("start", "end"):
        value = query.get(name)
        if not value:
            raise BadRequestError(f"Missing required parameter: {name} (YYYYMMDDTHH)")
        try:
            bounds.append(dt.datetime.strptime(value, "%Y%m%dT%H"))
        except ValueError:
            raise BadRequestError(f"Invalid {name} {value!r}: expected YYYYMMDDTHH") from None
    start, end = bounds
    if start > end:
        raise BadRequestError("start must not be after end")
    if end - start > MAX_RANGE:
        raise BadRequestError("The time range cannot exceed 365 days")
    return start, end


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a synthetic Amplitude Export API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--events-per-hour", type=int, default=24)
    parser.add_argument("--parts-per-hour", type=int, default=1)
    parser.add_argument("--max-export-bytes", type=int, default=DEFAULT_MAX_EXPORT_BYTES)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    simulator = AmplitudeSimulator(
        events_per_hour=args.events_per_hour,
        parts_per_hour=args.parts_per_hour,
        max_export_bytes=args.max_export_bytes,
        seed=args.seed,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with simulator.serve(args.port, args.host) as base_url:
        projects = [project.credentials() for project in simulator.projects.values()]
        print(json.dumps({"base_url": base_url, "projects": projects}), flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
