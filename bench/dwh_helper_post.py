"""Part 1 of :mod:`bench.dwh_helper`: ``POST /dwh-helper/dwh/events-part`` into PostgreSQL and SQLite,
beside the driver's ``executemany`` and (PostgreSQL) ``COPY`` of the same rows."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import itertools
import json
import math
import secrets
import tempfile
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import Contender, Measure, interleave, postgres_database, report
from bench.dwh_helper_server import (
    POST_HEADERS,
    WEEK_START,
    DwhServer,
    ServerSetup,
    Target,
    engine_for_url,
    expect_status,
)
from include.dwh.schema import create_all, events_part, row_from_event, writable_columns
from sandbox.simulators.amplitude import AmplitudeSimulator

#: A throwaway name: other people may run the benchmark on the same server at the same time.
DB_NAME = f"bench_dwh_post_{secrets.token_hex(4)}"
POST_PATH = "/dwh-helper/dwh/events-part"
WARM_UP_ROWS = 10
COLUMNS = [column.name for column in writable_columns(events_part)] + ["loaded_at"]
#: ``loaded_at`` of the baselines' rows, as text in the format SQLAlchemy stores on SQLite.
LOADED_AT = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
#: ours / executemany, rows/s, by database; on PostgreSQL ours / COPY too
POST_SHARE_TARGETS = {"PostgreSQL": 1.0, "SQLite": 0.5}
POST_COPY_SHARE_TARGET = 0.5
RSS_GROWTH_TARGET = 4.0  # server RSS growth / payload


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
    engine = engine_for_url(url)
    create_all(engine)
    postgres = engine.dialect.name == "postgresql"
    params = [(*row.values(), LOADED_AT) for row in rows]
    placeholders = ", ".join(["%s" if postgres else "?"] * len(COLUMNS))
    insert_sql = f"INSERT INTO events_part ({', '.join(COLUMNS)}) VALUES ({placeholders})"
    copy_sql = f"COPY events_part ({', '.join(COLUMNS)}) FROM STDIN"
    warm_up_body = json.dumps({"data": rows[:WARM_UP_ROWS]}).encode()

    def send(base_url: str, content: bytes) -> dict[str, Any]:
        response = httpx.post(base_url + POST_PATH, content=content, headers=POST_HEADERS, timeout=600)
        return expect_status(response, 201).json()

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
