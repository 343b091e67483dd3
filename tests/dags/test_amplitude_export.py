"""amplitude_export end to end with dag.test(): the Amplitude simulator, the local S3 store and the DWH
on SQLite (and on PostgreSQL): load, identical re-run, no data (404), too large (400), 429 / 5xx."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import zipfile
from collections.abc import Generator

import pytest
import sqlalchemy as sa

from include.common.db import engine_for
from include.dwh import schema
from include.dwh.amplitude_split import TABLES
from include.dwh.config import AMPLITUDE_CONN_IDS, DWH_CONN_ID
from include.dwh.exports import LoadKey, loads_of, table_fingerprint
from sandbox.dagrun import run_dag
from sandbox.simulators.amplitude import AmplitudeSimulator
from sandbox.simulators.s3 import s3_client
from tests.conftest import set_connection

EVENTS_PER_HOUR = 4
WEEK_EVENTS = 7 * 24 * EVENTS_PER_HOUR


@contextlib.contextmanager
def amplitude(monkeypatch, **options) -> Generator[AmplitudeSimulator]:
    simulator = AmplitudeSimulator(
        events_per_hour=EVENTS_PER_HOUR,
        parts_per_hour=2,
        data_since=dt.datetime(2024, 1, 1),
        data_until=dt.datetime(2024, 3, 31, 23),
        **options,
    )
    with simulator.serve() as base_url:
        for source, project in simulator.projects.items():
            set_connection(
                monkeypatch,
                AMPLITUDE_CONN_IDS[source],
                "http",
                host=base_url,
                login=project.api_key,
                password=project.secret_key,
            )
        yield simulator


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.scalar(sa.select(sa.func.count()).select_from(t)) for t in TABLES}


def fingerprints(engine: sa.Engine) -> dict[str, tuple[int, str]]:
    return {table.name: table_fingerprint(engine, table) for table in TABLES}


@pytest.mark.parametrize("dwh", ["sqlite", "postgres"])
def test_a_week_of_both_sources_loads_and_a_rerun_changes_nothing(
    dwh, request, bucket, s3_endpoint, workdir, monkeypatch
):
    engine = engine_for(request.getfixturevalue(f"{dwh}_conn")(DWH_CONN_ID))
    with amplitude(monkeypatch):
        first = run_dag("amplitude_export", {"week": "2024-W06", "backoff_seconds": 0})
        assert first.state == "success", first.task_states
        after_first = fingerprints(engine)
        again = run_dag("amplitude_export", {"week": "2024-W06", "backoff_seconds": 0})
    assert again.state == "success", again.task_states
    assert fingerprints(engine) == after_first  # counts and checksums

    summary = first.summary
    assert summary["events"] == 2 * WEEK_EVENTS and summary["no_data"] == []
    web, mobile = summary["sources"]["web"], summary["sources"]["mobile"]
    assert web["key"] == "amplitude/web/2024-W06/2024_week_6.zip"
    assert (web["status"], web["events"], web["start"], web["end"]) == (
        "loaded",
        WEEK_EVENTS,
        "20240205",
        "20240211",
    )
    assert web["split_by_day"] is False
    total = counts(engine)
    for table in TABLES:
        assert web["rows"][table.name] + mobile["rows"][table.name] == total[table.name]
    assert total["events_part"] == total["technical_data"] == 2 * WEEK_EVENTS
    assert web["rows"]["mobile_devices"] == 0 and mobile["rows"]["mobile_devices"] == WEEK_EVENTS
    assert again.summary == summary

    stored = s3_client(s3_endpoint).get_object(Bucket=bucket, Key=web["key"])
    body = stored["Body"].read()
    assert len(body) == web["bytes"]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.namelist() == ["2024_week_6.ndjson"]
        assert archive.read("2024_week_6.ndjson").count(b"\n") == WEEK_EVENTS
    logged = {
        row["table_name"]: row["rows"] for row in loads_of(engine, LoadKey("amplitude", "web", "2024-W06"))
    }
    assert logged == web["rows"]
    assert list(workdir.iterdir()) == []  # no temporary file outlives its task
    with engine.connect() as conn:
        uuids = conn.scalars(sa.select(schema.events_part.c.uuid)).all()
    assert len(set(uuids)) == len(uuids)


def test_no_data_ends_the_branch_with_a_summary_saying_so(sqlite_conn, bucket, workdir, monkeypatch):
    engine = engine_for(sqlite_conn(DWH_CONN_ID))
    with amplitude(monkeypatch):
        run = run_dag("amplitude_export", {"week": "2023-W40", "sources": ["web"], "backoff_seconds": 0})
    assert run.state == "success", run.task_states
    web = run.summary["sources"]["web"]
    assert (web["status"], web["events"], web["key"]) == ("no data", 0, None)
    assert run.summary["no_data"] == ["web"]
    assert counts(engine)["events_part"] == 0


def test_too_large_a_week_is_exported_day_by_day(sqlite_conn, bucket, workdir, monkeypatch):
    engine = engine_for(sqlite_conn(DWH_CONN_ID))
    with amplitude(monkeypatch) as simulator:
        simulator.max_export_bytes = 2 * 24 * EVENTS_PER_HOUR * int(simulator._mean_event_bytes())
        run = run_dag("amplitude_export", {"start": "20240205", "end": "20240211", "sources": ["mobile"]})
    assert run.state == "success", run.task_states
    mobile = run.summary["sources"]["mobile"]
    assert mobile["split_by_day"] is True and mobile["events"] == WEEK_EVENTS
    assert mobile["key"] == "amplitude/mobile/2024-W06/2024_week_6.zip"
    assert counts(engine)["events_part"] == WEEK_EVENTS
    assert list(workdir.iterdir()) == []


def test_429_and_5xx_are_retried_with_backoff(sqlite_conn, bucket, workdir, monkeypatch):
    engine = engine_for(sqlite_conn(DWH_CONN_ID))
    with amplitude(monkeypatch) as simulator:
        simulator.faults.fail_next(429, headers={"Retry-After": "0"})
        simulator.faults.fail_next(503)
        simulator.faults.fail_next(504)
        run = run_dag(
            "amplitude_export",
            {"week": "2024-W06", "sources": ["web"], "backoff_seconds": 0.01, "attempts": 4},
        )
    assert run.state == "success", run.task_states
    assert run.summary["sources"]["web"]["events"] == WEEK_EVENTS
    assert counts(engine)["events_part"] == WEEK_EVENTS
