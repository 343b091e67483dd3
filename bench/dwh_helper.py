"""Benchmark of the DWH helper's two heavy paths (``python -m bench.dwh_helper``; ``--quick``: smoke run).

Both parts go through the plugin's plain Flask app (:func:`dwh_helper.app.create_app`), served by
Werkzeug over real HTTP in a spawned process of its own, so that its peak RSS (``VmHWM``) is the
server's alone. Each timed request gets a fresh server, started (and for the POST warmed up) before
the timing begins. Requests carry a Bearer token, which the server checks with a validator of the
benchmark's: Airflow's auth manager only runs inside Airflow's API server.

1. ``POST /dwh-helper/dwh/events-part``. ``--rows`` ``events_part`` rows, made by
   :func:`~include.dwh.schema.row_from_event` from the Amplitude simulator's events (half web, half
   mobile), are sent as one JSON body ``{"data": [...]}``; the server's warm-up is a POST of ten rows,
   emptied before the run. Contenders, on PostgreSQL (a throwaway database on 127.0.0.1:5432) and then
   on SQLite (a file, in WAL mode as the pipelines use it), ``--repeat`` times each, taking turns
   (medians), each run into an empty table:

   * ours: the POST, answered ``201`` with every id, timed from the first byte sent to the last byte
     of the answer;
   * baseline: the driver's ``cursor.executemany`` (psycopg / sqlite3) of the same rows, already
     tuples in column order, timestamps as the text they arrive as, one transaction;
   * limit (PostgreSQL only): ``COPY events_part FROM STDIN`` of the same tuples, one transaction.

   Every run ends by counting the table's rows (a few milliseconds, in every contender's time alike):
   a run that did not land every row measured something else, and stops the benchmark.

2. Amplitude export. The simulator (:mod:`sandbox.simulators.amplitude`) serves one week of 168
   hourly parts totalling ``--amplitude-mb`` MB of NDJSON; it builds that zip once, before any timing,
   and then serves it from disk (``sendfile``) in a thread of this process. Contenders, ``--repeat``
   times each, taking turns:

   * ours: ``GET /dwh-helper/amplitude/export`` for that week: the server runs
     :func:`~include.dwh.amplitude.export_week` (the download from the simulator streamed to disk,
     every part gunzipped in time order into one deflated NDJSON entry of a new zip) and sends the
     zip, which this process streams to disk; timed to its last byte;
   * baseline: the plain pipeline on the same bytes, in a fresh spawned process (started before its
     timing) that reports its own peak RSS: the simulator's zip read from disk, each part gunzipped
     (in archive order) straight into one entry of a new zip at the same deflate level.

   Throughput is uncompressed NDJSON bytes per second. The export must hold every event of the week
   (the count its zip comment records) and as many NDJSON bytes as the baseline's.

Units: throughput and the export's sizes count 10^6 bytes to the MB; RSS and the POST body 2^20, as
the kernel reports RSS, so that the body and the server's growth compare directly.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import itertools
import json
import logging
import math
import multiprocessing as mp
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import (
    Contender,
    FreshWorker,
    Measure,
    interleave,
    peak_rss_mb,
    postgres_database,
    report,
    verdict,
)
from include.common.db import sqlite_engine
from include.dwh.amplitude import CHUNK_BYTES, AmplitudeCredentials
from include.dwh.schema import create_all, events_part, row_from_event, writable_columns
from sandbox.simulators.amplitude import AmplitudeSimulator

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"
DB_NAME = "bench_dwh_post"
POST_PATH = "/dwh-helper/dwh/events-part"
EXPORT_PATH = "/dwh-helper/amplitude/export"
TOKEN = "bench-token"
AUTH_HEADERS = {"Authorization": f"Bearer {TOKEN}"}
POST_HEADERS = {**AUTH_HEADERS, "Content-Type": "application/json"}
WARM_UP_ROWS = 10
COLUMNS = [column.name for column in writable_columns(events_part)] + ["loaded_at"]
#: ``loaded_at`` of the baselines' rows, as text in the format SQLAlchemy stores on SQLite.
LOADED_AT = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

WEEK_START, WEEK_END = dt.date(2024, 2, 5), dt.date(2024, 2, 11)  # Monday to Sunday: 168 hours
HOURS = 168
SOURCE = "web"
COMPRESSLEVEL = 6  # export_week's default, given to both contenders so that they deflate alike

FULL = {"rows": 100_000, "amplitude_mb": 1000.0, "repeat": 3}
QUICK = {"rows": 5_000, "amplitude_mb": 20.0, "repeat": 1}
#: ours / executemany, rows/s, by database; on PostgreSQL ours / COPY too
POST_SHARE_TARGETS = {"PostgreSQL": 1.0, "SQLite": 0.5}
POST_COPY_SHARE_TARGET = 0.5
RSS_GROWTH_TARGET = 4.0  # server RSS growth / payload
EXPORT_RSS_TARGET_MB = 200.0
EXPORT_SHARE_TARGET = 0.5  # ours / plain pipeline, MB/s

Target = tuple[str, float, float, bool]  # name, value, target, higher is better


def _status_mb(pid: int, key: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of process ``pid``, in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{key}:")) / 1024


def _engine(url: str) -> sa.Engine:
    """An engine as the pipelines build one: SQLite files with their pragmas (WAL), servers plainly."""
    parsed = sa.make_url(url)
    return (
        sqlite_engine(parsed.database) if parsed.get_backend_name() == "sqlite" else sa.create_engine(parsed)
    )


# --- the DWH helper's server ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSetup:
    """What a DWH helper server is given: the DWH database, the largest body it will be sent, and the
    Amplitude project's keys and export directory; the other settings are the defaults."""

    dwh_url: str | None = None
    body_bytes: int = 0
    amplitude: AmplitudeCredentials | None = None
    amplitude_workdir: str | None = None


def _serve(setup: ServerSetup, ready: Connection) -> None:
    """Serve the plugin's plain Flask app on a free port of 127.0.0.1 and send the port to ``ready``.

    Runs in a spawned process until terminated. The request-size limit is raised when ``--rows``
    makes a larger body than it accepts. Tokens are checked by :data:`TOKEN` instead of Airflow's
    auth manager, which only runs inside Airflow's API server. Flask and the plugin are imported here,
    from the plugins folder as Airflow imports them, so that no other process of the benchmark
    carries them in its RSS."""
    from werkzeug.serving import make_server

    from dwh_helper.app import create_app
    from dwh_helper.auth import InvalidTokenError, Principal, use_token_validator
    from dwh_helper.services import Services, Settings

    class BenchTokens:
        """Accepts :data:`TOKEN` alone, as a user who may read and write."""

        def authenticate(self, token: str) -> Principal:
            if token != TOKEN:
                raise InvalidTokenError("Not the benchmark's token.")
            return Principal("bench")

        def may_read(self, principal: Principal) -> bool:
            return True

        def may_write(self, principal: Principal) -> bool:
            return True

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on the terminal
    settings = Settings(
        max_request_bytes=max(Settings().max_request_bytes, setup.body_bytes),
        amplitude_workdir=setup.amplitude_workdir,
    )
    services = Services(
        settings=settings,
        dwh_engine=_engine(setup.dwh_url) if setup.dwh_url else None,
        amplitude=(lambda _conn_id: setup.amplitude) if setup.amplitude else None,
    )
    app = create_app(services)
    use_token_validator(app, BenchTokens())
    server = make_server("127.0.0.1", 0, app)
    ready.send(server.server_port)
    server.serve_forever()


class DwhServer:
    """The DWH helper in a process of its own, one process per timed request.

    :meth:`ready` starts one when none is running, and runs ``warm_up`` on it (imports are done at
    start; the warm-up adds the engine, the first request and the first insert), outside the timing.
    :meth:`one_request` then measures the server's RSS around the timed request and stops it, so that
    each request's ``VmHWM`` is its own and its growth is counted from the ready state."""

    def __init__(self, setup: ServerSetup, warm_up: Callable[[str], object] | None = None) -> None:
        self.setup = setup
        self.warm_up = warm_up
        self.ready_mb: list[float] = []
        self.peak_mb: list[float] = []
        self._process: mp.process.BaseProcess | None = None
        self._base_url = ""

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server (after :meth:`ready`)."""
        return self._base_url

    @property
    def growth_mb(self) -> float:
        """The largest growth of a server's RSS during its request, from its ready state."""
        return max(peak - ready for ready, peak in zip(self.ready_mb, self.peak_mb, strict=True))

    def ready(self) -> None:
        if self._process is not None:
            return
        context = mp.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve, args=(self.setup, send))
        self._process.start()
        if not receive.poll(120):
            self.stop()
            raise RuntimeError("the DWH helper server did not start")
        self._base_url = f"http://127.0.0.1:{receive.recv()}"
        if self.warm_up is not None:
            self.warm_up(self._base_url)

    @contextlib.contextmanager
    def one_request(self) -> Generator[str]:
        """The base URL of the ready server, for one request; records the server's RSS before it and
        its peak once the block ends, then stops the server."""
        if self._process is None:
            raise RuntimeError("call ready() first")
        pid = self._process.pid
        self.ready_mb.append(_status_mb(pid, "VmRSS"))
        try:
            yield self._base_url
            self.peak_mb.append(_status_mb(pid, "VmHWM"))
        finally:
            self.stop()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        self._process.join(30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = None


def _expect(response: httpx.Response, status: int) -> httpx.Response:
    """``response``, when it has ``status``; else stop: the run measured something else."""
    if response.status_code != status:
        response.read()
        raise RuntimeError(
            f"{response.request.url.path} answered {response.status_code}: {response.text[:500]}"
        )
    return response


# --- part 1: POST /dwh-helper/dwh/events-part -----------------------------------------------------


def _events_part_rows(count: int) -> list[dict[str, Any]]:
    """``count`` rows for ``events_part``, half from the web project's events and half from the
    mobile one's, as a loader posts them: every writable column, timestamps as the export's text."""
    start = dt.datetime.combine(WEEK_START, dt.time())
    simulator = AmplitudeSimulator(events_per_hour=math.ceil(count / 2 / 24))
    rows: list[dict[str, Any]] = []
    try:
        for source, wanted in (("web", count // 2), ("mobile", count - count // 2)):
            archive = simulator.prepare(source, start, start + dt.timedelta(hours=23))
            rows.extend(itertools.islice(_rows_of(archive), wanted))
    finally:
        simulator.close()
    return rows


def _rows_of(path: Path) -> Iterator[dict[str, Any]]:
    """The ``events_part`` row of every event in the export zip at ``path``, in archive order."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member, gzip.GzipFile(fileobj=member) as lines:
                for line in lines:
                    yield row_from_event(events_part, json.loads(line))


@contextlib.contextmanager
def sqlite_database(name: str) -> Generator[str]:
    """The URL of a fresh SQLite file ``name``, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench_dwh_") as temp:
        yield f"sqlite:///{Path(temp, name + '.sqlite')}"


@dataclass
class PostResult:
    """Part 1's figures on one database."""

    post: Measure
    executemany: Measure
    copy: Measure | None
    server: DwhServer
    payload_bytes: int

    @property
    def growth_ratio(self) -> float:
        """The server's RSS growth over the body's size: the target bounds it, whatever the body."""
        return self.server.growth_mb * 2**20 / self.payload_bytes


def _post_on(database: str, url: str, rows: list[dict[str, Any]], body: bytes, repeat: int) -> PostResult:
    """Time the POST and its baseline (and on PostgreSQL its limit) on the database at ``url``."""
    engine = _engine(url)
    create_all(engine)
    postgres = engine.dialect.name == "postgresql"
    params = [(*row.values(), LOADED_AT) for row in rows]
    placeholders = ", ".join(["%s" if postgres else "?"] * len(COLUMNS))
    insert_sql = f"INSERT INTO events_part ({', '.join(COLUMNS)}) VALUES ({placeholders})"
    copy_sql = f"COPY events_part ({', '.join(COLUMNS)}) FROM STDIN"
    warm_up_body = json.dumps({"data": rows[:WARM_UP_ROWS]}).encode()

    def send(base_url: str, content: bytes) -> dict[str, Any]:
        response = httpx.post(base_url + POST_PATH, content=content, headers=POST_HEADERS, timeout=600)
        return _expect(response, 201).json()

    server = DwhServer(
        ServerSetup(dwh_url=url, body_bytes=len(body)), lambda base_url: send(base_url, warm_up_body)
    )

    def landed(what: str) -> None:
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(events_part)).scalar_one()
        if count != len(rows):
            raise RuntimeError(f"{database} {what}: {count:,} rows in events_part, not {len(rows):,}")

    def reset() -> None:
        server.ready()  # its warm-up rows are emptied below with the previous run's
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "TRUNCATE events_part RESTART IDENTITY" if postgres else "DELETE FROM events_part"
            )

    def post() -> float:
        with server.one_request() as base_url:
            answer = send(base_url, body)
        if answer["count"] != len(rows) or len(answer["inserted_ids"]) != len(rows):
            raise RuntimeError(f"{database} POST: the answer counts {answer['count']:,} rows")
        landed("POST")
        return server.peak_mb[-1]

    def executemany() -> None:
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.executemany(insert_sql, params)
            cursor.close()
            connection.commit()
        finally:
            connection.close()
        landed("executemany")

    def copy() -> None:
        connection = engine.raw_connection()
        try:
            with connection.cursor() as cursor, cursor.copy(copy_sql) as stream:
                for row in params:
                    stream.write_row(row)
            connection.commit()
        finally:
            connection.close()
        landed("COPY")

    driver = "psycopg" if postgres else "sqlite3"
    contenders = [
        Contender(f"ours: POST {POST_PATH} over HTTP", len(rows), post, repeat),
        Contender(f"baseline: {driver} cursor.executemany", len(rows), executemany, repeat),
    ]
    if postgres:
        contenders.append(Contender("limit: COPY events_part FROM STDIN", len(rows), copy, repeat))
    try:
        measures = interleave(contenders, reset)
    finally:
        server.stop()
        engine.dispose()
    return PostResult(measures[0], measures[1], measures[2] if postgres else None, server, len(body))


def post_part(args: argparse.Namespace) -> tuple[dict[str, Any], list[Target]]:
    """Part 1: print a table per database; return their figures and targets."""
    rows = _events_part_rows(args.rows)
    body = json.dumps({"data": rows}).encode()
    print(
        f"POST {POST_PATH}: {len(rows):,} events_part rows from Amplitude-like events,"
        f" {len(body) / 2**20:.1f} MB of JSON ({len(body) / len(rows):.0f} bytes a row); the server in its own process"
    )
    figures: dict[str, Any] = {"rows": len(rows), "payload_mb": len(body) / 2**20}
    targets: list[Target] = []
    for database, database_cm in (("PostgreSQL", postgres_database), ("SQLite", sqlite_database)):
        with database_cm(DB_NAME) as url:
            result = _post_on(database, url, rows, body, args.repeat)
        measures = [m for m in (result.post, result.executemany, result.copy) if m is not None]
        report(f"{database}: {len(rows):,} rows into an empty events_part", measures)
        ready = max(result.server.ready_mb)
        print(
            f"  server RSS: {ready:.0f} MB ready (after a warm-up POST), {result.post.rss_mb:.0f} MB at the peak:"
            f" it grew by {result.server.growth_mb:.0f} MB, {result.growth_ratio:.2f}x the body"
        )
        share = result.post.rows_per_s / result.executemany.rows_per_s
        line = f"  ours runs at {share:.2f}x executemany's pace"
        if result.copy is not None:
            line += f" and {result.post.rows_per_s / result.copy.rows_per_s:.2f}x COPY's"
        print(line)
        key = database.lower()
        figures.update(
            {
                f"{key}_post_rows_s": result.post.rows_per_s,
                f"{key}_executemany_rows_s": result.executemany.rows_per_s,
                **({f"{key}_copy_rows_s": result.copy.rows_per_s} if result.copy is not None else {}),
                f"{key}_server_ready_mb": ready,
                f"{key}_server_peak_mb": result.post.rss_mb,
                f"{key}_server_growth_mb": result.server.growth_mb,
            }
        )
        if result.copy is not None:
            copy_share = result.post.rows_per_s / result.copy.rows_per_s
            targets.append((f"{database}: POST / COPY, rows/s (x)", copy_share, POST_COPY_SHARE_TARGET, True))
        targets += [
            (f"{database}: POST / executemany, rows/s (x)", share, POST_SHARE_TARGETS[database], True),
            (f"{database}: server RSS growth / payload (x)", result.growth_ratio, RSS_GROWTH_TARGET, False),
        ]
    return figures, targets


# --- part 2: Amplitude export ---------------------------------------------------------------------


def _zip_contents(path: Path) -> tuple[int, int | None]:
    """The NDJSON bytes of the zip's single entry, and the events its comment counts (``events=N``,
    as :func:`~include.dwh.amplitude.export_week` writes it), if it has one."""
    with zipfile.ZipFile(path) as archive:
        (entry,) = archive.infolist()
        _, found, events = archive.comment.rpartition(b"events=")
    return entry.file_size, int(events) if found else None


def _gunzip_and_zip(source: Path, target: Path) -> float:
    """The plain pipeline: every part of ``source`` gunzipped into one entry of a new zip ``target``;
    returns the peak RSS."""
    with (
        zipfile.ZipFile(source) as archive,
        zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESSLEVEL) as out,
        out.open("week.ndjson", "w", force_zip64=True) as entry,
    ):
        for info in archive.infolist():
            with archive.open(info) as member, gzip.GzipFile(fileobj=member) as part:
                shutil.copyfileobj(part, entry, CHUNK_BYTES)
    return peak_rss_mb()


def _event_bytes() -> float:
    """The mean size of an NDJSON event line, measured on one hour of the simulator's events, to size
    the week for ``--amplitude-mb``."""
    sample = 500
    start = dt.datetime.combine(WEEK_START, dt.time())
    simulator = AmplitudeSimulator(events_per_hour=sample)
    try:
        with zipfile.ZipFile(simulator.prepare(SOURCE, start, start)) as archive:
            (info,) = archive.infolist()
            with archive.open(info) as member, gzip.GzipFile(fileobj=member) as lines:
                return len(lines.read()) / sample
    finally:
        simulator.close()


def amplitude_part(args: argparse.Namespace) -> tuple[dict[str, Any], list[Target]]:
    """Part 2: print the export table; return its figures and targets."""
    per_hour = max(1, round(args.amplitude_mb * 1e6 / HOURS / _event_bytes()))
    first = dt.datetime.combine(WEEK_START, dt.time())
    last = dt.datetime.combine(WEEK_END, dt.time(23))
    query = {"start": f"{WEEK_START:%Y%m%d}", "end": f"{WEEK_END:%Y%m%d}", "source": SOURCE}
    with tempfile.TemporaryDirectory(prefix="bench_dwh_") as temp:
        simulator = AmplitudeSimulator(events_per_hour=per_hour, workdir=Path(temp, "simulator"))
        start = time.perf_counter()
        archive = simulator.prepare(SOURCE, first, last)
        build_s = time.perf_counter() - start
        events = simulator.expected_events(first, last)
        print(
            f"\nAmplitude export: {HOURS} hourly parts of {per_hour:,} events ({events:,} events),"
            f" a {archive.stat().st_size / 1e6:.0f} MB zip built by the simulator in {build_s:.0f} s (not timed)"
        )
        received, plain_zip = Path(temp, "received.zip"), Path(temp, "plain.zip")
        worker = FreshWorker()
        with simulator.serve() as base_url:
            project = simulator.projects[SOURCE]
            server = DwhServer(
                ServerSetup(
                    amplitude=AmplitudeCredentials(project.api_key, project.secret_key, base_url),
                    amplitude_workdir=str(Path(temp, "exports")),
                )
            )

            def reset() -> None:
                server.ready()
                worker.start()

            def endpoint() -> float:
                with (
                    server.one_request() as server_url,
                    httpx.stream(
                        "GET", server_url + EXPORT_PATH, params=query, headers=AUTH_HEADERS, timeout=900
                    ) as response,
                    open(received, "wb") as file,
                ):
                    for chunk in _expect(response, 200).iter_bytes(CHUNK_BYTES):
                        file.write(chunk)
                if (sent := _zip_contents(received)[1]) != events:
                    raise RuntimeError(f"the endpoint sent {sent} events, not {events:,}")
                return server.peak_mb[-1]

            try:
                m_ours, m_plain = interleave(
                    [
                        Contender(f"ours: GET {EXPORT_PATH}", events, endpoint, args.repeat),
                        Contender(
                            "baseline: the zip from disk, gunzip, one zip",
                            events,
                            lambda: worker.run(_gunzip_and_zip, archive, plain_zip),
                            args.repeat,
                        ),
                    ],
                    reset,
                )
            finally:
                server.stop()
                worker.stop()
        (ndjson_bytes, _), (plain_bytes, _) = _zip_contents(received), _zip_contents(plain_zip)
    if ndjson_bytes != plain_bytes:
        raise RuntimeError(
            f"the endpoint sent {ndjson_bytes:,} bytes of NDJSON, the week has {plain_bytes:,}"
        )
    megabytes = ndjson_bytes / 1e6
    print(
        f"\n{megabytes:,.0f} MB of NDJSON ({events:,} events) into one zip at deflate level {COMPRESSLEVEL}"
    )
    print(f"{'':52} {'median s':>9} {'runs':>5} {'MB/s':>11} {'peak RSS MB':>12}")
    for m in (m_ours, m_plain):
        print(
            f"{m.label:52} {m.median:9.2f} {len(m.seconds):5} {megabytes / m.median:11.1f} {m.rss_mb:12.0f}"
        )
    ready = max(server.ready_mb)
    print(
        f"  RSS: the server's {ready:.0f} MB when ready, {m_ours.rss_mb:.0f} MB at the peak"
        f" (+{server.growth_mb:.0f} MB); an idle worker's {worker.idle_mb:.0f} MB"
    )
    share = m_plain.median / m_ours.median
    figures = {
        "amplitude_ndjson_mb": megabytes,
        "amplitude_events": events,
        "export_mb_s": megabytes / m_ours.median,
        "plain_mb_s": megabytes / m_plain.median,
        "export_server_ready_mb": ready,
        "export_server_peak_mb": m_ours.rss_mb,
        "plain_rss_mb": m_plain.rss_mb,
    }
    targets = [
        ("Amplitude: export server peak RSS (MB)", m_ours.rss_mb, EXPORT_RSS_TARGET_MB, False),
        ("Amplitude: export / plain pipeline, MB/s (x)", share, EXPORT_SHARE_TARGET, True),
    ]
    return figures, targets


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke run with small sizes: {QUICK}")
    parser.add_argument("--rows", type=int, help=f"rows in the POST; default {FULL['rows']:,}")
    parser.add_argument(
        "--amplitude-mb", type=float, help=f"NDJSON MB of the exported week; default {FULL['amplitude_mb']:g}"
    )
    parser.add_argument("--repeat", type=int, help=f"timed runs of each contender; default {FULL['repeat']}")
    parser.add_argument("--skip-post", action="store_true", help="run part 2 (Amplitude export) only")
    parser.add_argument("--skip-amplitude", action="store_true", help="run part 1 (POST) only")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.rows < 1:
        parser.error("--rows must be at least 1: the endpoint refuses an empty data list")

    post_figures, post_targets = ({}, []) if args.skip_post else post_part(args)
    export_figures, export_targets = ({}, []) if args.skip_amplitude else amplitude_part(args)
    print("\ntargets")
    met = [
        verdict(name, value, target, higher) for name, value, target, higher in post_targets + export_targets
    ]
    figures = {**post_figures, **export_figures, "all_targets_met": all(met)}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
