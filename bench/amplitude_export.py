"""Benchmark: amplitude_export's load, from the week's zip to rows of the seven DWH tables in PostgreSQL.

Contenders, on the same archive and the same throwaway PostgreSQL database (tables emptied before each):

* **pipeline**: :func:`include.dwh.amplitude_export.load_archive`, what the DAG's branch does after the
  export (stream the zip, parse, split, validate, write through ``write_rows`` with the load log), in a
  process of its own so that its peak RSS (``VmHWM``) is its own.
* **baseline**: the plugin's ``POST /dwh-helper/dwh/<table>`` for the same rows, table by table in
  bodies of :data:`POST_ROWS` rows, to the plain Flask app served over real HTTP in a process of its
  own (as ``bench.dwh_helper`` serves it): what a client of the plugin would do with the export. Only
  the requests are timed; reading the archive and encoding each body happen outside the clock.
* **limit**: PostgreSQL ``COPY`` of the same rows, already parsed, validated and converted before the
  clock starts, one table at a time: what the database alone costs.

Each contender runs ``--repeat`` times, taking turns. Reported: medians, events/s and peak RSS, and
at the end one JSON line of the figures and targets. Targets: at least 0.5x the limit, under 300 MB
whatever the size.
The full size is a week of 2,000,000 events (~1 GB of NDJSON); ``--events`` picks another.

    python -m bench.amplitude_export --events 200000
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from bench.common import peak_rss_mb, postgres_database

WEEK = (dt.date(2024, 2, 5), dt.date(2024, 2, 11))
POST_ROWS = 10_000
SHARE_TARGET = 0.5  # pipeline / COPY limit, events/s
RSS_TARGET_MB = 300.0


def build_archive(events: int, workdir: Path) -> Path:
    """The merged week archive of about ``events`` events of the simulator's mobile project."""
    from include.dwh.amplitude import AmplitudeCredentials, export_week
    from sandbox.simulators.amplitude import AmplitudeSimulator

    simulator = AmplitudeSimulator(
        events_per_hour=math.ceil(events / 168), parts_per_hour=1, data_until=dt.datetime(2024, 3, 1)
    )
    with simulator.serve() as base_url:
        project = simulator.projects["mobile"]
        credentials = AmplitudeCredentials(project.api_key, project.secret_key, base_url)
        return export_week(*WEEK, "mobile", credentials, workdir).path


def _pipeline_child(url: str, archive: str, answer) -> None:
    from include.dwh.amplitude_export import load_archive
    from include.dwh.exports import LoadKey

    engine = sa.create_engine(url)
    started = time.perf_counter()
    rows = load_archive(engine, Path(archive), LoadKey("amplitude", "mobile", "2024-W06"))
    answer.send((time.perf_counter() - started, peak_rss_mb(), rows))


def run_pipeline(url: str, archive: Path) -> tuple[float, float, dict[str, int]]:
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_pipeline_child, args=(url, str(archive), send))
    child.start()
    result = receive.recv()
    child.join()
    return result


def run_post_baseline(url: str, archive: Path) -> float:
    """Seconds of the POST requests that write every table's rows through the plugin (see module)."""
    import httpx

    from bench.dwh_helper_server import POST_HEADERS, DwhServer, ServerSetup, expect_status
    from include.dwh.amplitude_split import TABLES, iter_archive_events, rows_for
    from include.dwh.schema import TABLES as SLUGS

    slug_of = {table.name: slug for slug, table in SLUGS.items()}
    server = DwhServer(ServerSetup(dwh_url=url))
    server.ready()
    total = 0.0
    try:
        with httpx.Client(base_url=server.base_url, headers=POST_HEADERS, timeout=600) as client:
            for table in TABLES:
                path = f"/dwh-helper/dwh/{slug_of[table.name]}"
                rows = rows_for(table, iter_archive_events(archive))
                while batch := list(itertools.islice(rows, POST_ROWS)):
                    body = json.dumps({"data": batch}).encode()
                    started = time.perf_counter()
                    answer = expect_status(client.post(path, content=body), 201).json()
                    total += time.perf_counter() - started
                    if answer["count"] != len(batch):
                        raise RuntimeError(f"{path} wrote {answer['count']} of {len(batch)} rows")
    finally:
        server.stop()
    return total


def run_copy_limit(engine: sa.Engine, archive: Path) -> float:
    """Seconds for COPY alone of every table's rows (prepared table by table, outside the clock)."""
    from include.dwh.amplitude_split import TABLES, iter_archive_events, rows_for
    from include.dwh.validation import RowValidator

    total = 0.0
    for table in TABLES:
        validator = RowValidator(table)
        prepared = [
            validator.check(i, row)[0] for i, row in enumerate(rows_for(table, iter_archive_events(archive)))
        ]
        columns = list(validator.columns)
        loaded_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        copy_sql = f"COPY {table.name} ({', '.join(columns)}, loaded_at) FROM STDIN"
        with engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            started = time.perf_counter()
            with cursor.copy(copy_sql) as copy:
                for row in prepared:
                    copy.write_row((*row.values(), loaded_at))
            total += time.perf_counter() - started
        del prepared
    return total


def empty(engine: sa.Engine) -> None:
    from include.dwh.amplitude_split import TABLES
    from include.dwh.exports import export_loads

    with engine.begin() as conn:
        for table in (*TABLES, export_loads):
            conn.execute(sa.delete(table))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=2_000_000, help="events in the week (default 2,000,000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs of each contender, taking turns (default 3)"
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    from include.dwh.exports import ensure_load_log

    runs: dict[str, list[float]] = {"pipeline": [], "POST": [], "COPY": []}
    peaks: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-amplitude-") as tmp,
        postgres_database(f"bench_{uuid.uuid4().hex[:10]}") as url,
    ):
        archive = build_archive(args.events, Path(tmp))
        zip_mb = archive.stat().st_size / 1e6
        engine = sa.create_engine(url)
        ensure_load_log(engine)
        # Taking turns spreads the machine's other work over all three; single runs of the COPY
        # limit alone ranged from 8.3 to 9.8 s at 200,000 events.
        for _ in range(args.repeat):
            seconds, rss, rows = run_pipeline(url, archive)
            runs["pipeline"].append(seconds)
            peaks.append(rss)
            empty(engine)
            runs["POST"].append(run_post_baseline(url, archive))
            empty(engine)
            runs["COPY"].append(run_copy_limit(engine, archive))
            empty(engine)
        engine.dispose()
    events = rows["events_part"]
    seconds, baseline, limit = (statistics.median(runs[name]) for name in ("pipeline", "POST", "COPY"))
    rss = max(peaks)
    share = limit / seconds
    print(
        f"week of {events:,} events ({zip_mb:.0f} MB zip), {sum(rows.values()):,} rows; medians of {args.repeat} runs"
    )
    print(f"{'contender':<10} {'seconds':>9} {'events/s':>10} {'peak RSS MB':>12}  runs (s)")
    for name, median, peak in (
        ("pipeline", seconds, f"{rss:.0f}"),
        ("POST", baseline, "-"),
        ("COPY", limit, "-"),
    ):
        shown = ", ".join(f"{run:.1f}" for run in runs[name])
        print(f"{name:<10} {median:>9.1f} {events / median:>10,.0f} {peak:>12}  {shown}")
    print(f"pipeline / POST baseline: {baseline / seconds:.2f}x")
    print(
        f"pipeline / limit: {share:.2f}x (target >= {SHARE_TARGET}x); peak RSS {rss:.0f} MB (target < 300 MB)"
    )
    figures = {
        "events": events,
        "repeat": args.repeat,
        "rows": sum(rows.values()),
        "pipeline_events_per_s": round(events / seconds),
        "post_baseline_events_per_s": round(events / baseline),
        "copy_limit_events_per_s": round(events / limit),
        "pipeline_over_baseline": round(baseline / seconds, 3),
        "pipeline_over_limit": round(share, 3),
        "share_target": SHARE_TARGET,
        "peak_rss_mb": round(rss, 1),
        "rss_target_mb": RSS_TARGET_MB,
        "all_targets_met": share >= SHARE_TARGET and rss < RSS_TARGET_MB,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
