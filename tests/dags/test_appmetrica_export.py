"""appmetrica_export end to end with dag.test(): the AppMetrica simulator (202 for a while), the local
S3 store and the DWH on SQLite and PostgreSQL: deferral while waiting, load, identical re-run, 429."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from include.common.db import engine_for
from include.dwh import schema
from include.dwh.config import APPMETRICA_CONN_ID, DWH_CONN_ID
from include.dwh.exports import table_fingerprint
from sandbox.dagrun import run_dag
from sandbox.simulators.appmetrica import AppMetricaSimulator
from sandbox.simulators.s3 import s3_client
from tests.conftest import set_connection

ROWS_PER_DAY = 48
RESOURCES = {
    "events": ["event_name", "event_datetime", "event_json", "session_id", "appmetrica_device_id", "os_name",
               "country_iso_code", "city", "profile_id"],
    "installations": ["install_datetime", "appmetrica_device_id", "os_name", "device_model", "operator_name"],
    "sessions_starts": ["session_start_datetime", "session_id", "appmetrica_device_id"],
}  # fmt: skip
CONF = {"day": "2024-02-05", "resources": RESOURCES, "poll_interval_seconds": 0.05, "timeout_seconds": 60}


@pytest.fixture
def appmetrica(monkeypatch):
    simulator = AppMetricaSimulator(ready_after_polls=4, rows_per_day=ROWS_PER_DAY)
    with simulator.serve() as base_url:
        set_connection(
            monkeypatch,
            APPMETRICA_CONN_ID,
            "http",
            host=base_url,
            password=simulator.token,
            extra=json.dumps({"application_id": simulator.application_id}),
        )
        yield simulator


@pytest.fixture
def task_states(monkeypatch) -> list[tuple[str, str]]:
    """(task_id, state) each time a worker hands a task instance back: 'deferred' means the task gave up
    its worker slot and waits in the triggerer."""
    from airflow.sdk.execution_time import supervisor

    seen: list[tuple[str, str]] = []
    original = supervisor.run_task_in_process

    def recording(ti, task):
        result = original(ti, task)
        state = result.ti.state
        seen.append((ti.task_id, getattr(state, "value", str(state))))
        return result

    monkeypatch.setattr(supervisor, "run_task_in_process", recording)
    return seen


def fingerprints(engine: sa.Engine) -> dict:
    return {table.name: table_fingerprint(engine, table) for table in schema.TABLES.values()}


@pytest.mark.parametrize("dwh", ["sqlite", "postgres"])
def test_a_day_defers_while_202_then_loads_and_a_rerun_changes_nothing(
    dwh, request, appmetrica, bucket, s3_endpoint, workdir, task_states
):
    engine = engine_for(request.getfixturevalue(f"{dwh}_conn")(DWH_CONN_ID))
    first = run_dag("appmetrica_export", CONF)
    assert first.state == "success", first.task_states
    assert task_states.count(("export", "deferred")) == 3  # each export waited without a worker
    after_first = fingerprints(engine)
    again = run_dag("appmetrica_export", CONF)
    assert again.state == "success", again.task_states
    assert fingerprints(engine) == after_first

    sources = first.summary["sources"]
    assert sources["events"]["rows"] == {
        "events_part": ROWS_PER_DAY,
        "tmp_event_properties": sources["events"]["rows"]["tmp_event_properties"],
        "user_locations": ROWS_PER_DAY,
    }
    assert 0 < sources["events"]["rows"]["tmp_event_properties"] < ROWS_PER_DAY  # app_open has no event_json
    assert sources["installations"]["rows"] == {"mobile_devices": ROWS_PER_DAY}
    assert sources["sessions_starts"]["rows"] == {}  # stored, not mapped
    assert after_first["events_part"][0] == ROWS_PER_DAY and after_first["mobile_devices"][0] == ROWS_PER_DAY
    key = sources["events"]["key"]
    assert key == "appmetrica/events/2024-02-05/events_2024-02-05.json"
    body = s3_client(s3_endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()
    assert len(body) == sources["events"]["bytes"] and len(json.loads(body)["data"]) == ROWS_PER_DAY
    assert list(workdir.iterdir()) == []


def test_429_while_three_exports_are_queued_is_waited_out(
    sqlite_conn, appmetrica, bucket, workdir, task_states
):
    engine = engine_for(sqlite_conn(DWH_CONN_ID))
    appmetrica.faults.fail_next(429, path="/logs/v1/export/events.json", times=2)
    run = run_dag("appmetrica_export", {**CONF, "resources": {"events": RESOURCES["events"]}})
    assert run.state == "success", run.task_states
    with engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(schema.events_part)) == ROWS_PER_DAY
