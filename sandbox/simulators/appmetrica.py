"""The AppMetrica Logs API, simulated over real HTTP with deterministic synthetic rows.

It behaves as ``API_FACTS.md`` says the real one does. ``GET /logs/v1/export/<resource>.<json|csv>``
with ``Authorization: OAuth <token>`` queues an export and answers ``202 Wait for result``; identical
requests (same path and parameters) keep answering 202 until the export is ready, then 200 with
``{"data": [...]}`` or CSV. A ready export is served again for 24 hours unless the request carries
``Cache-Control: no-cache``, which queues a fresh one. More than :attr:`max_queued` exports waiting for
one application answer 429 with a text body. ``GET /management/v1/logsapi/status`` tells whether the
Logs API is available. Bad parameters answer 400 with a message that names them, like the real API.

When an export is ready is configurable, by the number of 202 answers and/or by seconds since it was
queued, so tests can make the client poll, wait or time out. Rows hold the requested fields only,
as strings (as the real JSON does); a query parameter named after a field of the resource filters on
it, and ``limit`` caps the rows. In-process::

    sim = AppMetricaSimulator(ready_after_polls=2)
    with sim.serve() as base_url:
        ...  # token sim.token, application sim.application_id

Standalone (the first line on stdout is ``{"base_url", "token", "application_id"}``; SIGTERM stops it)::

    python -m sandbox.simulators.appmetrica --port 0 --ready-after-polls 2
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import functools
import io
import json
import math
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass

from sandbox.http import BadRequestError, Request, Response, SimulatedApi

DEFAULT_TOKEN = "sandbox-appmetrica-token"
DEFAULT_APPLICATION_ID = 1_234_567
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
READY_TTL_S = 24 * 3600.0
"""A ready export is served again for this long (the real API keeps the file for 24 hours)."""
DEVICES_PER_APPLICATION = 200
TIME_SUFFIXES = ("datetime", "date", "timestamp", "receive_datetime", "receive_timestamp")

# Query parameters of the export endpoint that are not field filters.
EXPORT_PARAMS = frozenset(
    {
        "application_id",
        "date_since",
        "date_until",
        "date_dimension",
        "fields",
        "limit",
        "use_utf8_bom",
        "skip_unavailable_shards",
    }
)

DEVICE_FIELDS = (
    "appmetrica_device_id",
    "installation_id",
    "profile_id",
    "os_name",
    "os_version",
    "device_manufacturer",
    "device_model",
    "device_type",
    "device_locale",
    "app_version_name",
    "app_package_name",
    "country_iso_code",
    "city",
    "connection_type",
    "operator_name",
    "google_aid",
    "ios_ifa",
    "ios_ifv",
)

# resource -> (prefix of its time fields, fields of its own)
RESOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "events": ("event", ("event_name", "event_json", "session_id")),
    "sessions_starts": ("session_start", ("session_id",)),
    "installations": (
        "install",
        ("is_reinstallation", "tracker_name", "publisher_name", "click_id", "click_datetime"),
    ),
    "crashes": ("crash", ("crash_id", "crash_group_id", "crash_name", "crash", "session_id")),
    "revenue_events": (
        "revenue",
        ("revenue_price", "revenue_currency", "revenue_quantity", "revenue_product_id", "revenue_order_id"),
    ),
}

_EVENT_NAMES = ("app_open", "screen_view", "add_to_cart", "purchase", "search", "share", "login")
_DEVICES = (
    ("android", "Samsung", "Galaxy S23", "phone"),
    ("android", "Xiaomi", "Redmi Note 12", "phone"),
    ("android", "Google", "Pixel 8", "phone"),
    ("android", "Samsung", "Galaxy Tab S9", "tablet"),
    ("iOS", "Apple", "iPhone 15", "phone"),
    ("iOS", "Apple", "iPhone 13", "phone"),
    ("iOS", "Apple", "iPad Air", "tablet"),
)
_SCREENS = ("home", "catalog", "product", "cart", "checkout")
_PLACES = (
    ("RU", "Moscow", "ru_RU"),
    ("RU", "Saint Petersburg", "ru_RU"),
    ("KZ", "Almaty", "ru_KZ"),
    ("BR", "São Paulo", "pt_BR"),
    ("DE", "Berlin", "de_DE"),
    ("US", "New York", "en_US"),
)


@dataclass
class _Export:
    application_id: int
    queued_at: float
    polls: int = 0
    ready_at: float | None = None


@dataclass(frozen=True)
class _Query:
    resource: str
    export_format: str
    application_id: int
    since: dt.datetime
    until: dt.datetime
    fields: tuple[str, ...]
    date_dimension: str
    limit: int | None
    filters: tuple[tuple[str, str], ...]
    utf8_bom: bool


class AppMetricaSimulator:
    """Serve the Logs API. ``tokens`` maps each OAuth token to the applications it may read.

    An export is ready once it has answered ``ready_after_polls`` 202s or ``ready_after_s`` seconds
    after it was queued, whichever comes first (None disables a condition; both None: never ready).
    ``rows_per_day`` rows are spread evenly over the requested period.
    """

    def __init__(
        self,
        *,
        tokens: Mapping[str, Collection[int]] | None = None,
        ready_after_polls: int | None = 2,
        ready_after_s: float | None = None,
        max_queued: int = 3,
        rows_per_day: int = 48,
        availability: str = "enabled",
        seed: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = {
            token: frozenset(apps)
            for token, apps in (tokens or {DEFAULT_TOKEN: {DEFAULT_APPLICATION_ID}}).items()
        }
        self.ready_after_polls = ready_after_polls
        self.ready_after_s = ready_after_s
        self.max_queued = max_queued
        self.rows_per_day = rows_per_day
        self.availability = availability
        self.seed = seed
        self._clock = clock
        self._lock = threading.Lock()
        self._exports: dict[tuple[str, tuple[tuple[str, str], ...]], _Export] = {}
        self.api = SimulatedApi("appmetrica")
        self.faults = self.api.faults
        self.api.route("GET", "/logs/v1/export/<name>")(self._export)
        self.api.route("GET", "/management/v1/logsapi/status")(self._status)

    @property
    def token(self) -> str:
        """The first token (the only one unless ``tokens`` says otherwise)."""
        return next(iter(self.tokens))

    @property
    def application_id(self) -> int:
        """The lowest application the first token may read."""
        return min(self.tokens[self.token])

    @contextlib.contextmanager
    def serve(self, port: int = 0, host: str = "127.0.0.1") -> Generator[str]:
        """Serve on ``host`` until the block ends; yield the base URL."""
        with self.api.serve(port, host) as base_url:
            yield base_url

    def queued(self, application_id: int) -> int:
        """Exports of ``application_id`` waiting for their data now."""
        now = self._clock()
        with self._lock:
            return sum(
                1
                for export in self._exports.values()
                if export.application_id == application_id and not self._ready(export, now)
            )

    # --- routes ----------------------------------------------------------------------------------

    def _status(self, request: Request) -> Response:
        if self._token_apps(request) is None:
            return _auth_error()
        return Response.json({"logs_api_availability_status": self.availability})

    def _export(self, request: Request) -> Response:
        apps = self._token_apps(request)
        if apps is None:
            return _auth_error()
        try:
            query = _parse(request)
        except BadRequestError as exc:
            return _error(400, "invalid_parameter", str(exc))
        if query.application_id not in apps:
            return _error(403, "access_denied", f"Access to application {query.application_id} is denied")
        key = (request.path, tuple(sorted(request.query.items())))
        fresh = "no-cache" in (request.header("cache-control") or "").lower()
        now = self._clock()
        with self._lock:
            export = self._exports.get(key)
            if export is not None and (fresh or self._expired(export, now)):
                del self._exports[key]
                export = None
            if export is None:
                waiting = sum(
                    1
                    for other in self._exports.values()
                    if other.application_id == query.application_id and not self._ready(other, now)
                )
                if waiting >= self.max_queued:
                    return Response(
                        429,
                        f"Too many requests: {waiting} export requests are already queued for application "
                        f"{query.application_id}; wait until they are ready".encode(),
                        {"Content-Type": "text/plain; charset=utf-8"},
                    )
                export = self._exports[key] = _Export(query.application_id, now)
            if not self._ready(export, now):
                export.polls += 1
                return Response(202, b"Wait for result", {"Content-Type": "text/plain; charset=utf-8"})
            if export.ready_at is None:
                export.ready_at = now
        rows = self._rows(query)
        if query.export_format == "json":
            return Response.json({"data": rows})
        return Response(200, _csv(query, rows), {"Content-Type": "text/csv; charset=utf-8"})

    # --- pieces ----------------------------------------------------------------------------------

    def _token_apps(self, request: Request) -> frozenset[int] | None:
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        if scheme.lower() != "oauth":
            return None
        return self.tokens.get(token.strip())

    def _ready(self, export: _Export, now: float) -> bool:
        if export.ready_at is not None:
            return True
        by_polls = self.ready_after_polls is not None and export.polls >= self.ready_after_polls
        by_time = self.ready_after_s is not None and now - export.queued_at >= self.ready_after_s
        return by_polls or by_time

    def _expired(self, export: _Export, now: float) -> bool:
        return export.ready_at is not None and now - export.ready_at > READY_TTL_S

    def _rows(self, query: _Query) -> list[dict[str, str]]:
        """The export's rows: ``rows_per_day`` spread over the period, filtered, capped, projected.

        Seeded by the query (not by the request's arrival), so identical requests get identical data."""
        prefix = RESOURCES[query.resource][0]
        seconds = int((query.until - query.since).total_seconds()) + 1
        count = math.ceil(self.rows_per_day * seconds / 86_400)
        seed = f"{self.seed}/{query.application_id}/{query.resource}/{query.since}/{query.until}"
        rng = random.Random(f"{seed}/{query.date_dimension}")
        rows: list[dict[str, str]] = []
        for n in range(count):
            moment = query.since + dt.timedelta(seconds=n * seconds // count)
            delay = dt.timedelta(seconds=rng.randint(1, 600))
            happened, received = (
                (moment, moment + delay) if query.date_dimension == "default" else (moment - delay, moment)
            )
            row = _row(rng, query.application_id, prefix, happened, received)
            if all(row.get(name) == value for name, value in query.filters):
                rows.append({name: row.get(name, "") for name in query.fields})
                if query.limit is not None and len(rows) >= query.limit:
                    break
        return rows


def _row(
    rng: random.Random, application_id: int, prefix: str, happened: dt.datetime, received: dt.datetime
) -> dict[str, str]:
    """Every field of one synthetic row, as text, on one of the application's devices."""
    device = rng.randrange(DEVICES_PER_APPLICATION)
    name = rng.choice(_EVENT_NAMES)
    return {
        **_device(application_id, device),
        f"{prefix}_datetime": happened.strftime(DATETIME_FORMAT),
        f"{prefix}_date": happened.date().isoformat(),
        f"{prefix}_timestamp": str(int(happened.replace(tzinfo=dt.UTC).timestamp())),
        f"{prefix}_receive_datetime": received.strftime(DATETIME_FORMAT),
        f"{prefix}_receive_timestamp": str(int(received.replace(tzinfo=dt.UTC).timestamp())),
        "session_id": str(int(happened.replace(tzinfo=dt.UTC).timestamp()) // 1800 * 1000 + device),
        "event_name": name,
        "event_json": "" if name == "app_open" else json.dumps({"screen": rng.choice(_SCREENS)}),
        "connection_type": rng.choice(("wifi", "cell")),
        "is_reinstallation": rng.choice(("true", "false")),
        "tracker_name": rng.choice(("organic", "google_ads", "vk_ads")),
        "publisher_name": rng.choice(("", "Google", "VK")),
        "click_id": _uuid(rng).hex,
        "click_datetime": (happened - dt.timedelta(minutes=rng.randint(1, 90))).strftime(DATETIME_FORMAT),
        "crash_id": _uuid(rng).hex,
        "crash_group_id": str(rng.randint(1, 20)),
        "crash_name": rng.choice(("NullPointerException", "OutOfMemoryError", "SIGSEGV")),
        "crash": "at com.example.shop.MainActivity.onCreate(MainActivity.kt:42)",
        "revenue_price": f"{rng.randint(99, 9999) / 100:.2f}",
        "revenue_currency": rng.choice(("RUB", "USD", "EUR")),
        "revenue_quantity": str(rng.randint(1, 3)),
        "revenue_product_id": f"sku-{rng.randint(1, 500)}",
        "revenue_order_id": _uuid(rng).hex,
    }


@functools.lru_cache(maxsize=4 * DEVICES_PER_APPLICATION)
def _device(application_id: int, device: int) -> dict[str, str]:
    """The fields that stay with a device: the same device always looks the same."""
    rng = random.Random(f"{application_id}/device/{device}")
    os_name, manufacturer, model, device_type = rng.choice(_DEVICES)
    country, city, locale = rng.choice(_PLACES)
    ios = os_name == "iOS"
    advertising_id = str(_uuid(rng))
    return {
        "appmetrica_device_id": str(10**18 + application_id * 1000 + device),
        "installation_id": _uuid(rng).hex,
        "profile_id": f"user-{device}" if device % 4 else "",
        "os_name": os_name,
        "os_version": f"{rng.randint(15, 17)}.{rng.randint(0, 5)}" if ios else str(rng.randint(11, 14)),
        "device_manufacturer": manufacturer,
        "device_model": model,
        "device_type": device_type,
        "device_locale": locale,
        "app_version_name": f"3.{rng.randint(0, 9)}.{rng.randint(0, 3)}",
        "app_package_name": "com.example.shop",
        "country_iso_code": country,
        "city": city,
        "operator_name": rng.choice(("MTS", "Beeline", "Vodafone", "T-Mobile", "")),
        "google_aid": "" if ios else advertising_id,
        "ios_ifa": advertising_id if ios else "",
        "ios_ifv": str(_uuid(rng)).upper() if ios else "",
    }


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _parse(request: Request) -> _Query:
    """Validate an export request's path and parameters, with the real API's kind of messages."""
    resource, dot, export_format = request.params["name"].rpartition(".")
    if not dot or export_format not in ("json", "csv"):
        raise BadRequestError("The export format must be json or csv: /logs/v1/export/<resource>.<json|csv>")
    if resource not in RESOURCES:
        raise BadRequestError(f"Unknown resource {resource!r}; available: {', '.join(sorted(RESOURCES))}")
    query = request.query
    application_id = query.get("application_id", "")
    if not application_id.isdigit():
        raise BadRequestError("Parameter application_id is required and must be a number")
    since, until = _datetime(query, "date_since"), _datetime(query, "date_until")
    if since > until:
        raise BadRequestError("date_since must not be later than date_until")
    available = set(resource_fields(resource))
    fields = tuple(name.strip() for name in query.get("fields", "").split(",") if name.strip())
    if not fields:
        raise BadRequestError("Parameter fields is required: a comma-separated list of field names")
    unknown = [name for name in fields if name not in available]
    if unknown:
        raise BadRequestError(f"Unknown fields for {resource}: {', '.join(unknown)}")
    date_dimension = query.get("date_dimension", "default")
    if date_dimension not in ("default", "receive"):
        raise BadRequestError("date_dimension must be default or receive")
    limit = query.get("limit")
    if limit is not None and not (limit.isdigit() and int(limit) > 0):
        raise BadRequestError("limit must be a positive integer")
    filters = tuple(sorted((name, value) for name, value in query.items() if name not in EXPORT_PARAMS))
    unknown = [name for name, _ in filters if name not in available]
    if unknown:
        raise BadRequestError(f"Unknown parameters: {', '.join(unknown)}")
    return _Query(
        resource=resource,
        export_format=export_format,
        application_id=int(application_id),
        since=since,
        until=until,
        fields=fields,
        date_dimension=date_dimension,
        limit=int(limit) if limit is not None else None,
        filters=filters,
        utf8_bom=query.get("use_utf8_bom", "false").lower() == "true",
    )


def resource_fields(resource: str) -> tuple[str, ...]:
    """The fields an export of ``resource`` may ask for."""
    prefix, own = RESOURCES[resource]
    times = tuple(f"{prefix}_{suffix}" for suffix in TIME_SUFFIXES)
    return times + own + DEVICE_FIELDS


def _datetime(query: Mapping[str, str], name: str) -> dt.datetime:
    value = query.get(name)
    if not value:
        raise BadRequestError(f"Parameter {name} is required (yyyy-mm-dd hh:mm:ss)")
    try:
        return dt.datetime.strptime(value, DATETIME_FORMAT)
    except ValueError:
        raise BadRequestError(f"Parameter {name} must look like yyyy-mm-dd hh:mm:ss, got {value!r}") from None


def _csv(query: _Query, rows: Sequence[Mapping[str, str]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(query.fields)
    writer.writerows([row[name] for name in query.fields] for row in rows)
    return ("\ufeff" if query.utf8_bom else "").encode() + text.getvalue().encode("utf-8")


def _error(status: int, error_type: str, message: str) -> Response:
    """An error in the shape of AppMetrica's API errors."""
    return Response.json(
        {"errors": [{"error_type": error_type, "message": message}], "code": status, "message": message},
        status,
    )


def _auth_error() -> Response:
    return _error(401, "invalid_token", "Invalid oauth_token")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a synthetic AppMetrica Logs API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--application-id", type=int, default=DEFAULT_APPLICATION_ID)
    parser.add_argument("--ready-after-polls", type=int, default=2, help="202 answers before the data")
    parser.add_argument("--ready-after-s", type=float, default=None, help="or seconds after queueing")
    parser.add_argument("--rows-per-day", type=int, default=48)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    simulator = AppMetricaSimulator(
        tokens={args.token: {args.application_id}},
        ready_after_polls=args.ready_after_polls,
        ready_after_s=args.ready_after_s,
        rows_per_day=args.rows_per_day,
        seed=args.seed,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with simulator.serve(args.port, args.host) as base_url:
        print(
            json.dumps({"base_url": base_url, "token": args.token, "application_id": args.application_id}),
            flush=True,
        )
        stop.wait()


if __name__ == "__main__":
    main()
