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
import datetime as dt
import gzip
import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

from bench.common import Contender, FreshWorker, interleave, peak_rss_mb, verdict
from bench.dwh_helper_post import post_part
from bench.dwh_helper_server import (
    AUTH_HEADERS,
    WEEK_END,
    WEEK_START,
    DwhServer,
    ServerSetup,
    Target,
    expect_status,
)
from include.dwh.amplitude import CHUNK_BYTES, AmplitudeCredentials
from sandbox.simulators.amplitude import AmplitudeSimulator

EXPORT_PATH = "/dwh-helper/amplitude/export"
HOURS = 168
SOURCE = "web"
COMPRESSLEVEL = 6  # export_week's default, given to both contenders so that they deflate alike

FULL = {"rows": 100_000, "amplitude_mb": 1000.0, "repeat": 3}
QUICK = {"rows": 5_000, "amplitude_mb": 20.0, "repeat": 1}
EXPORT_RSS_TARGET_MB = 200.0
EXPORT_SHARE_TARGET = 0.5  # ours / plain pipeline, MB/s


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
                    for chunk in expect_status(response, 200).iter_bytes(CHUNK_BYTES):
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
