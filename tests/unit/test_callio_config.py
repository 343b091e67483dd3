"""Callio settings: the schedule, the callio_api connection's fields, the legacy .env keys, and the
per-run choices the plan task makes (jobs, windows, backfill)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from include.callio.config import CallioConfigError, RunSettings, config_from, parse_accounts
from include.callio.plan import backfill_window, incremental_window, jobs_for, report_days
from include.callio.schedule import crons, parse_times, schedule_times
from include.common.legacy_env import LegacyEnvError, import_env

ACCOUNTS = [
    {"tenant": "anphat", "email": "admin@anphat.vn", "password": "s3cret-one"},
    {"tenant": "binhminh", "email": "admin@binhminh.vn", "password": "s3cret-two"},
]


def test_default_schedule_is_the_seeds_five_slots_with_staff_at_the_first():
    times, staff = schedule_times({})
    assert times == ["02:30", "04:00", "06:00", "08:00", "11:00"] and staff == "02:30"
    assert crons(times) == ["30 2 * * *", "0 4 * * *", "0 6 * * *", "0 8 * * *", "0 11 * * *"]


def test_schedule_from_environment_adds_a_staff_time_outside_the_run_times():
    times, staff = schedule_times(
        {"CALLIO_RUN_TIMES_UTC": "9:15, 03:00", "CALLIO_STAFF_GROUP_TIME_UTC": "01:05"}
    )
    assert times == ["01:05", "03:00", "09:15"] and staff == "01:05"


@pytest.mark.parametrize("text", ["25:00", "10:61", "noon", ",", "10-30"])
def test_bad_times_are_refused_by_name(text):
    with pytest.raises(CallioConfigError, match="CALLIO_RUN_TIMES_UTC"):
        parse_times(text)


def test_config_from_connection_extra():
    config = config_from(
        "http://127.0.0.1:1",
        None,
        None,
        {"page_size": "300", "overlap_ms": 0, "days_to_fetch_if_empty": 7},
        ACCOUNTS,
    )
    assert config.api.base_url == "http://127.0.0.1:1" and config.api.page_size == 300
    assert config.run == RunSettings(overlap_ms=0, days_to_fetch_if_empty=7)
    assert config.tenants == ["anphat", "binhminh"]
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("accounts", "message"),
    [
        ("[", "not valid JSON"),
        ([], "non-empty list"),
        ([{"tenant": "a", "email": "e"}], "lacks password"),
        ([ACCOUNTS[0], ACCOUNTS[0]], "appears twice"),
    ],
)
def test_bad_accounts_are_named_without_their_passwords(accounts, message):
    with pytest.raises(CallioConfigError, match=message) as error:
        parse_accounts(accounts, "callio_api")
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"page_size": "many"}, "callio_api extra page_size must be a whole number, got 'many'"),
        ({"overlap_ms": -1}, "callio_api extra overlap_ms must be 0 or more, got -1"),
        ({"concurrency": 0}, "callio_api extra concurrency must be positive, got 0"),
        ({"api_timeout": "nan"}, "callio_api extra api_timeout must be a number of seconds, got 'nan'"),
        (
            {"page_size": 20000},
            "callio_api extra page_size 20000 is more than the Callio API pages through: it answers no "
            "record past the first 10,000 of a query (its result window), so use 10,000 or less",
        ),
    ],
)
def test_a_bad_tunable_is_named_by_its_extra_key_with_the_rule_it_breaks(extra, message):
    with pytest.raises(CallioConfigError) as error:
        config_from(None, None, None, extra, ACCOUNTS)
    assert str(error.value).startswith(message)


def test_tunables_at_their_bounds_are_accepted():
    config = config_from(
        None, None, None, {"overlap_ms": 0, "page_size": 10_000, "api_timeout": 12.5}, ACCOUNTS
    )
    assert (config.run.overlap_ms, config.api.page_size, config.api.timeout) == (0, 10_000, 12.5)
    assert config.run.update_log_retention_days is None  # the load history is kept
    with pytest.raises(CallioConfigError, match="update_log_retention_days must be positive"):
        config_from(None, None, None, {"update_log_retention_days": 0}, ACCOUNTS)


def test_legacy_env_maps_accounts_file_tunables_bigquery_and_schedule(tmp_path):
    (tmp_path / "accounts.json").write_text(json.dumps(ACCOUNTS))
    key = {"type": "service_account", "project_id": "p1", "private_key": "-----BEGIN", "client_email": "x@p1"}
    (tmp_path / "sa.json").write_text(json.dumps(key))
    env = tmp_path / ".env"
    env.write_text(
        "CALLIO_ACCOUNTS_FILE=accounts.json\nSERVICE_ACCOUNT_KEY_FILE=sa.json\nBQ_DATASET_ID=prod_callio\n"
        "API_PAGE_SIZE=500\nAPI_TIMEOUT=12.5\nOVERLAP_MS=60000\nLIMIT_RECORDS_PER_ENDPOINT=100000\n"
        "SCHEDULER_RUN_TIMES_UTC=02:30,04:00\nSCHEDULER_STAFF_GROUP_TIME_UTC=02:30\n"
    )
    from include.common.legacy_env import import_file

    result = import_file(env)
    api = result.connections["callio_api"]
    assert api["conn_type"] == "http" and api["conn_host"] == "https://clientapi.phonenet.io"
    assert api["conn_extra"] == {
        "accounts": ACCOUNTS,
        "page_size": 500,
        "api_timeout": 12.5,
        "overlap_ms": 60000,
        "limit_records_per_endpoint": 100000,
    }
    warehouse = result.connections["callio_warehouse"]
    assert warehouse["conn_type"] == "google_cloud_platform"
    assert warehouse["conn_extra"]["dataset"] == "prod_callio" and warehouse["conn_extra"]["project"] == "p1"
    assert json.loads(warehouse["conn_extra"]["keyfile_dict"]) == key
    assert (
        "set CALLIO_RUN_TIMES_UTC=02:30,04:00 in the scheduler/dag-processor environment (UTC)"
        in result.notes
    )
    assert not [n for n in result.notes if n.startswith("ignored")]
    assert all("s3cret" not in note for note in result.notes)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('CALLIO_ACCOUNTS_JSON=[{"tenant": "a"}]', "lacks email, password"),
        ("CALLIO_ACCOUNTS_FILE=missing.json", "cannot read"),
        ("API_PAGE_SIZE=lots", "must be a number"),
        ("SERVICE_ACCOUNT_KEY_JSON={}", "needs private_key"),
        ("SCHEDULER_RUN_TIMES_UTC=24:00", "not a time of day"),
    ],
)
def test_legacy_env_errors_name_the_key(text, message, tmp_path):
    with pytest.raises(LegacyEnvError, match=message) as error:
        import_env(text, tmp_path)
    assert text.split("=")[0] in str(error.value)


RUN_AT = dt.datetime(2026, 11, 20, 2, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("job", "run_type", "run_after", "expected"),
    [
        ("auto", "scheduled", RUN_AT, ["customer", "call", "staffgroup"]),
        ("auto", "scheduled", RUN_AT.replace(hour=4, minute=0), ["customer", "call"]),
        ("auto", "backfill", RUN_AT.replace(hour=4, minute=0), ["customer", "call"]),
        ("auto", "manual", RUN_AT.replace(hour=4, minute=0), ["customer", "call", "staffgroup"]),
        ("auto", "asset_triggered", RUN_AT.replace(hour=4, minute=0), ["customer", "call", "staffgroup"]),
        ("all", "scheduled", RUN_AT.replace(hour=4), ["customer", "call", "staffgroup"]),
        ("staffgroup", "manual", RUN_AT, ["staffgroup"]),
    ],
)
def test_jobs_for(job, run_type, run_after, expected):
    assert jobs_for(job, run_after, "02:30", run_type=run_type) == expected


def test_windows():
    config = config_from(None, None, None, {}, ACCOUNTS)
    now = 1_800_000_000_000
    assert incremental_window(None, now, config) == (now - 30 * 86_400_000, now)
    assert incremental_window(now - 1_000, now, config) == (now - 1_000 - 180_000, now)
    assert backfill_window({"from": None, "to": None}, now) is None
    assert backfill_window({"from": "2026-11-01", "to": "2026-11-02T07:00:00+07:00"}, now) == (
        1_793_491_200_000,
        1_793_491_200_000 + 86_400_000,
    )
    with pytest.raises(CallioConfigError, match="before"):
        backfill_window({"from": "2026-11-02", "to": "2026-11-01"}, now)


def test_report_days_cover_every_window_in_business_days():
    plan = {"windows": {"customer": {"a": [1_793_491_200_000 - 3_600_000, 1_793_491_200_000]}}}
    # 2026-10-31 23:00 UTC is 2026-11-01 06:00 in UTC+7.
    assert report_days(plan, dt.date(2026, 11, 3)) == (dt.date(2026, 11, 1), dt.date(2026, 11, 3))
    assert report_days({"windows": {}}, dt.date(2026, 11, 3)) == (dt.date(2026, 10, 27), dt.date(2026, 11, 3))
