"""callio_etl end to end with dag.test(): the Callio simulator over real HTTP and an embedded DuckDB.

What a correct load holds is known from the synthetic world, so the tests compare the warehouse with
it: every valid customer once with its newest version, every call once, staff and groups as in the
snapshot; a re-run changes nothing; a tenant whose login fails is logged and fails the run while the
others load; a backfill leaves the checkpoints alone.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import duckdb
import pytest
from airflow.exceptions import ParamValidationError

from sandbox.dagrun import run_dag
from sandbox.simulators.callio import CallioSimulator
from sandbox.worlds.callio import DAY_MS, CallioWorld
from tests.conftest import set_connection

TENANTS = 3


@pytest.fixture
def world(request) -> CallioWorld:
    """Ends a minute ago and spans 20 days, inside the 30-day first window (DAYS_TO_FETCH_IF_EMPTY);
    a test may change its size with ``indirect`` parametrization."""
    size = {"tenants": TENANTS, "customers": 300, "calls": 600, "burst": 250, **getattr(request, "param", {})}
    return CallioWorld(**size, span_ms=20 * DAY_MS, end_ms=int(time.time() * 1000) - 60_000)


@pytest.fixture
def callio(world, tmp_path, monkeypatch):
    """Serve the world and point callio_api / callio_warehouse at it; yield the DuckDB path."""
    simulator = CallioSimulator(world)
    database = tmp_path / "callio.duckdb"
    with simulator.serve() as base_url:

        def connect(accounts: list[dict], **tunables) -> None:
            set_connection(
                monkeypatch,
                "callio_api",
                "http",
                host=base_url,
                extra={"accounts": accounts, "page_size": 100, **tunables},
            )

        connect(world.accounts())
        set_connection(monkeypatch, "callio_warehouse", "duckdb", host=str(database))
        yield database, connect


def valid(records: list[dict], time_field: str) -> dict[str, dict]:
    """The records a correct load keeps: with an _id and a numeric sort time, the newest per _id."""
    newest: dict[str, dict] = {}
    for record in records:
        if not record.get("_id") or not str(record.get(time_field, "")).strip().isdigit():
            continue
        current = newest.get(record["_id"])
        if current is None or int(record[time_field]) >= int(current[time_field]):
            newest[record["_id"]] = record
    return newest


def xcom_text(run_id: str) -> str:
    """Every XCom value the run wrote, as one text."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=run_id, dag_ids="callio_etl")).all()
        return json.dumps([row.value for row in rows], default=str)


def table(database, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def snapshot(database) -> dict[str, list[tuple]]:
    return {
        name: table(database, f'SELECT * EXCLUDE (row_hash) FROM "{name}" ORDER BY ALL')
        for name in ("customer", "call_log", "staff", "group")
    }


def test_full_run_loads_every_table_and_rerun_changes_nothing(world, callio):
    database, _ = callio
    first = run_dag("callio_etl", {"job": "all"})
    assert first.state == "success", first.task_states
    assert first.summary["failed"] == {}
    xcoms = xcom_text(first.run_id)
    assert '"window"' in xcoms  # the fetch tasks' windows are there; the accounts' passwords are not
    assert not [a for a in world.accounts() if a["password"] in xcoms]

    for name, tenant in world.tenants.items():
        customers = valid(tenant.customers, "updateTime")
        calls = valid(tenant.calls, "createTime")
        assert table(database, f"SELECT count(*) FROM customer WHERE tenant = '{name}'") == [
            (len(customers),)
        ]
        assert table(database, f"SELECT count(*) FROM call_log WHERE tenant = '{name}'") == [(len(calls),)]
        newest = table(database, f"SELECT _id, updateTime FROM customer WHERE tenant = '{name}'")
        assert dict(newest) == {k: int(v["updateTime"]) for k, v in customers.items()}
        assert first.summary["customer"][name]["loaded"] == len(customers)
        assert table(database, f"SELECT count(*) FROM staff WHERE tenant = '{name}'") == [
            (len(tenant.staff),)
        ]
        assert table(database, f"""SELECT count(*) FROM "group" WHERE tenant = '{name}'""") == [
            (len(tenant.groups),)
        ]
    assert table(database, "SELECT count(*) FROM stg_customer") == [(0,)]
    assert table(database, "SELECT count(*) FROM rejects WHERE reason = 'missing _id'")[0][0] >= TENANTS
    checkpoints = dict(
        table(
            database,
            "SELECT tenant, max(max_updateTime) FROM update_log WHERE table_name = 'customer' GROUP BY 1",
        )
    )
    assert checkpoints == {
        n: max(int(c["updateTime"]) for c in valid(t.customers, "updateTime").values())
        for n, t in world.tenants.items()
    }
    # Every call counts once in the report, for its staff member (or staff_id '' when it has none).
    report = table(database, "SELECT sum(calls_in + calls_out) FROM fact_staff_daily_PK")[0][0]
    assert report == sum(len(valid(t.calls, "createTime")) for t in world.tenants.values())

    before = snapshot(database)
    again = run_dag("callio_etl", {"job": "all"})
    assert again.state == "success", again.task_states
    assert all(v["loaded"] == 0 for v in again.summary["customer"].values())
    assert all(v["loaded"] == 0 for v in again.summary["call"].values())
    assert snapshot(database) == before
    modes = table(
        database,
        f"SELECT DISTINCT mode FROM update_log WHERE run_id = '{again.run_id}' AND table_name = 'customer'",
    )
    assert modes == [("STAGED",), ("NOOP",)] or sorted(modes) == [("NOOP",), ("STAGED",)]


def test_changes_between_runs_are_merged(world, callio):
    database, _ = callio
    assert run_dag("callio_etl", {"job": "customer"}).state == "success"
    change = world.advance(int(time.time() * 1000) - 1_000, customers=40, calls=30)
    second = run_dag("callio_etl", {"job": "all"})
    assert second.state == "success", second.task_states
    for name, ids in change.customers.items():
        assert second.summary["customer"][name]["loaded"] >= len(ids)
        newest = valid(world.tenants[name].customers, "updateTime")
        rows = dict(table(database, f"SELECT _id, updateTime FROM customer WHERE tenant = '{name}'"))
        assert rows == {k: int(v["updateTime"]) for k, v in newest.items()}


def test_failed_login_is_logged_and_fails_the_run_after_the_others_load(world, callio):
    database, connect = callio
    accounts = world.accounts()
    accounts[1] = {**accounts[1], "password": "not-the-password"}
    connect(accounts)
    outcome = run_dag("callio_etl", {"job": "customer"})
    bad = accounts[1]["tenant"]
    assert outcome.state == "failed"
    assert outcome.task_states["check_tenants"] == "failed"
    assert outcome.task_states["merge_customers"] == "success"
    assert outcome.task_states["fetch_customers[1]"] == "failed"
    assert table(
        database, f"SELECT mode FROM update_log WHERE tenant = '{bad}' AND mode = 'ERROR_LOGIN'"
    ) == [("ERROR_LOGIN",)]
    loaded = dict(table(database, "SELECT tenant, count(*) FROM customer GROUP BY 1"))
    assert bad not in loaded and len(loaded) == TENANTS - 1
    logs = table(database, "SELECT string_agg(coalesce(detail, ''), ' ') FROM update_log")[0][0]
    assert "not-the-password" not in logs


CAP = 2_000


@pytest.mark.parametrize("world", [{"tenants": 1, "customers": 6_500, "calls": 50}], indirect=True)
def test_a_capped_run_loads_at_most_the_cap_and_the_next_run_goes_on_without_a_gap(world, callio):
    database, connect = callio
    connect(world.accounts(), limit_records_per_endpoint=CAP)
    [(name, tenant)] = world.tenants.items()
    times = sorted(int(c["updateTime"]) for c in tenant.customers)
    runs: list[tuple[int, int, int]] = []  # per run: records fetched, new records, checkpoint
    while len(runs) < 8:
        outcome = run_dag("callio_etl", {"job": "customer"})
        assert outcome.state == "success", outcome.task_states
        [(since, until, checkpoint)] = table(
            database,
            "SELECT window_from, window_to, max_updateTime FROM update_log "
            f"WHERE run_id = '{outcome.run_id}' AND mode <> 'STAGED'",
        )
        fetched = outcome.summary["customer"][name]["fetched"]
        assert fetched == sum(since <= t <= until for t in times)  # the whole window read: no gap
        previous = runs[-1][2] if runs else -1
        new = [t for t in times if previous < t <= until]
        runs.append((fetched, len(new), checkpoint))
        if until > world.end_ms:  # not capped: read up to the run's start
            break
        assert len(new) >= CAP and sum(t < until for t in new) < CAP  # past the cap: ties only
        assert checkpoint == until  # complete up to the last record loaded
    assert len(runs) == 4, runs
    assert all(fetched < CAP + 200 for fetched, _, _ in runs), runs  # the overlap is read again
    loaded = dict(table(database, f"SELECT _id, updateTime FROM customer WHERE tenant = '{name}'"))
    assert loaded == {k: int(v["updateTime"]) for k, v in valid(tenant.customers, "updateTime").items()}


def test_backfill_refetches_a_window_without_moving_checkpoints(world, callio):
    database, _ = callio
    assert run_dag("callio_etl", {"job": "call"}).state == "success"
    checkpoint_sql = "SELECT tenant, max(max_updateTime) FROM update_log WHERE table_name = 'call_log' GROUP BY 1 ORDER BY 1"
    before = table(database, checkpoint_sql)
    loaded = table(database, "SELECT count(*) FROM call_log")[0][0]
    # calls newer than the checkpoints: a backfill that read them and wrote its maximum would move them
    change = world.advance(int(time.time() * 1000) - 1_000, customers=0, calls=20)
    outcome = run_dag("callio_etl", {"job": "call", "from": "2020-01-01T00:00:00Z", "to": None})
    assert outcome.state == "success", outcome.task_states
    assert outcome.summary["backfill"] is True
    assert table(database, "SELECT count(*) FROM call_log") == [
        (loaded + sum(map(len, change.calls.values())),)
    ]
    assert table(database, checkpoint_sql) == before
    assert table(
        database,
        f"SELECT count(*) FROM update_log WHERE run_id = '{outcome.run_id}' AND max_updateTime IS NOT NULL",
    ) == [(0,)]


def test_a_manual_run_with_default_params_runs_every_job(world, callio):
    database, _ = callio
    outcome = run_dag("callio_etl")  # as the trigger form or the REST API start it, params untouched
    assert outcome.state == "success", outcome.task_states
    assert outcome.summary["jobs"] == ["customer", "call", "staffgroup"]
    staff = dict(table(database, "SELECT tenant, count(*) FROM staff GROUP BY 1"))
    assert staff == {name: len(tenant.staff) for name, tenant in world.tenants.items()}


def test_a_scheduled_run_does_staff_and_groups_only_in_their_slot(world, callio):
    database, _ = callio
    yesterday = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(days=1)
    later = run_dag("callio_etl", scheduled_at=yesterday.replace(hour=4, minute=0))
    assert later.state == "success", later.task_states
    assert later.run_id.startswith("scheduled__")
    assert later.summary["jobs"] == ["customer", "call"]
    assert later.task_states["fetch_staffgroup[0]"] == "skipped"
    assert table(database, "SELECT count(*) FROM staff") == [(0,)]
    first = run_dag("callio_etl", scheduled_at=yesterday.replace(hour=2, minute=30))
    assert first.state == "success", first.task_states
    assert first.summary["jobs"] == ["customer", "call", "staffgroup"]
    assert table(database, "SELECT count(DISTINCT tenant) FROM staff") == [(TENANTS,)]


def test_from_and_to_take_a_date_and_date_times_without_and_with_an_offset(world, callio):
    database, _ = callio
    day = dt.datetime.fromtimestamp(world.start_ms / 1000, dt.UTC).date() + dt.timedelta(days=3)
    conf = {"job": "call", "from": day.isoformat(), "to": f"{day + dt.timedelta(days=2)}T12:00:00"}
    outcome = run_dag("callio_etl", conf)
    assert outcome.state == "success", outcome.task_states
    since = dt.datetime.combine(day, dt.time(), dt.UTC)  # a date is its midnight, UTC
    until = since + dt.timedelta(days=2, hours=12)  # no offset: UTC
    window = {
        "from": since.isoformat(timespec="milliseconds"),
        "to": until.isoformat(timespec="milliseconds"),
    }
    assert all(result["window"] == window for result in outcome.summary["call"].values())
    lo, hi = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    for name, tenant in world.tenants.items():
        calls = [c for c in valid(tenant.calls, "createTime").values() if lo <= int(c["createTime"]) <= hi]
        assert outcome.summary["call"][name]["loaded"] == len(calls) > 0
    offset = run_dag("callio_etl", {**conf, "to": f"{day + dt.timedelta(days=2)}T19:00:00+07:00"})
    assert offset.state == "success" and offset.summary["call"] == {
        name: {**result, "loaded": 0} for name, result in outcome.summary["call"].items()
    }  # the same window: 19:00 at UTC+7 is 12:00 UTC, and every call is there already


@pytest.mark.parametrize("value", ["31/05/2024", "2024-02-30", "2024-05-31T24:00:00", "yesterday"])
def test_a_from_that_is_no_date_is_refused_before_the_run_with_the_forms_it_takes(value, callio):
    with pytest.raises(ParamValidationError) as refused:
        run_dag("callio_etl", {"job": "call", "from": value})
    message = str(refused.value)
    assert message.startswith(f"Invalid input for param from: {value!r} is not valid under any")
    for form in ("a date: 2024-05-31 (midnight UTC)", "in UTC: 2024-05-31T08:00:00", "with offset: "):
        assert f"'title': '{form}" in message


def test_update_log_keeps_its_history_unless_a_retention_is_set(world, callio):
    from include.callio.warehouse.duckdb_backend import DuckDBWarehouse

    database, connect = callio
    DuckDBWarehouse(database).ensure_schema()
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=200)).replace(tzinfo=None)
    with duckdb.connect(str(database)) as conn:
        conn.executemany(
            "INSERT INTO update_log (table_name, tenant, updated_at, rows_loaded, mode, run_id) "
            "VALUES ('call_log', ?, ?, 7, ?, 'long-ago')",
            [(name, long_ago, mode) for name in world.tenants for mode in ("STAGED", "APPEND")],
        )
    history = "SELECT count(*) FROM update_log WHERE run_id = 'long-ago'"
    kept = run_dag("callio_etl", {"job": "call"})
    assert kept.state == "success", kept.task_states
    assert table(database, history) == [(2 * TENANTS,)] and kept.summary["report"]["update_log_pruned"] == 0
    checkpoints = "SELECT tenant, max(max_updateTime) FROM update_log GROUP BY 1 ORDER BY 1"
    before = table(database, checkpoints)
    connect(world.accounts(), update_log_retention_days=100)
    pruned = run_dag("callio_etl", {"job": "call"})
    assert pruned.state == "success", pruned.task_states
    assert table(database, history) == [(0,)] and pruned.summary["report"]["update_log_pruned"] == 2 * TENANTS
    assert table(database, checkpoints) == before
    assert table(database, f"SELECT count(*) FROM update_log WHERE run_id = '{kept.run_id}'")[0][0] > 0
