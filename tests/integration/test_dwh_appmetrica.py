"""The AppMetrica client against the Logs API simulator, over real HTTP: polling, throttling, faults.

The simulator answers as the real API does (202 until ready, 429 when three exports wait, 401/403/400
with the API's error bodies), so every assertion is on what went over the wire or came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import threading
from collections.abc import Generator

import httpx
import pytest

from include.dwh.appmetrica import (
    AppMetricaAuthError,
    AppMetricaRequestError,
    AppMetricaSettings,
    AppMetricaUnavailableError,
    ExportTimeoutError,
    fetch_export,
    load_settings,
    ping,
    validate_polling,
)
from include.dwh.appmetrica_exports import (
    AppMetricaConfigError,
    UnknownExportError,
    load_definitions,
    lookup_export,
    parse_definition,
    parse_definitions,
)
from include.dwh.config import APPMETRICA_CONN_ID
from sandbox.simulators.appmetrica import AppMetricaSimulator
from tests.conftest import set_connection

FIELDS = ["event_name", "event_datetime", "appmetrica_device_id", "city"]
EVENTS = {"resource": "events", "fields": FIELDS, "date_since": "2024-02-01", "date_until": "2024-02-02"}
FAST = {"poll_interval": 0.1, "poll_timeout": 10}


@contextlib.contextmanager
def running(**options) -> Generator[tuple[AppMetricaSimulator, AppMetricaSettings]]:
    simulator = AppMetricaSimulator(**options)
    with simulator.serve() as base_url:
        yield (
            simulator,
            AppMetricaSettings(
                token=simulator.token, base_url=base_url, application_id=simulator.application_id
            ),
        )


def fetch(settings: AppMetricaSettings, raw: dict | None = None, export_id: str = "events", **kwargs) -> dict:
    definition = parse_definition(export_id, raw or EVENTS)
    return asyncio.run(fetch_export(definition, settings, **{**FAST, **kwargs}))


def export_requests(simulator: AppMetricaSimulator) -> list:
    return [r for r in simulator.api.requests if r.path.startswith("/logs/v1/export/")]


# --- polling --------------------------------------------------------------------------------------


def test_polls_while_the_api_answers_202_then_returns_the_rows():
    with running(ready_after_polls=3, rows_per_day=48) as (simulator, settings):
        result = fetch(settings)
    assert result["polls"] == 4  # three 202s, then the data
    assert result["count"] == len(result["rows"]) == 96  # 48 a day over two days
    assert all(list(row) == FIELDS for row in result["rows"])
    assert {row["event_datetime"][:10] for row in result["rows"]} == {"2024-02-01", "2024-02-02"}
    assert (result["export_id"], result["date_since"], result["date_until"]) == (
        "events",
        "2024-02-01 00:00:00",
        "2024-02-02 23:59:59",
    )
    sent = export_requests(simulator)
    assert len({tuple(sorted(r.query.items())) for r in sent}) == 1  # every poll is the same request
    assert sent[0].query["fields"] == ",".join(FIELDS)
    assert all(r.header("authorization") == f"OAuth {simulator.token}" for r in sent)


def test_csv_export_gives_the_same_rows_as_json():
    raw = {**EVENTS, "filters": {"city": "Berlin"}, "limit": 7}
    with running(ready_after_polls=1) as (_, settings):
        as_json = fetch(settings, raw)
        as_csv = fetch(settings, {**raw, "format": "csv"})
    assert as_csv["format"] == "csv" and as_csv["count"] == 7
    assert as_csv["rows"] == as_json["rows"]  # the simulator's JSON values are strings too
    assert {row["city"] for row in as_csv["rows"]} == {"Berlin"}


def test_a_ready_export_is_served_again_unless_fresh_is_asked():
    with running(ready_after_polls=2) as (simulator, settings):
        first = fetch(settings)
        again = fetch(settings)
        fresh = fetch(settings, fresh=True)
    assert (first["polls"], again["polls"], fresh["polls"]) == (3, 1, 3)
    assert again["rows"] == first["rows"] == fresh["rows"]
    no_cache = [r.header("cache-control") for r in export_requests(simulator)[-3:]]
    assert no_cache == ["no-cache", None, None]  # polls must not restart the export


def test_runs_under_asyncio_run_in_a_worker_thread():
    """As a Flask view does: a thread with no event loop of its own."""
    outcome: dict = {}
    with running(ready_after_polls=1) as (_, settings):
        definition = lookup_export("events", {"events": EVENTS})

        def view() -> None:
            outcome["ping"] = asyncio.run(ping(settings))
            outcome["export"] = asyncio.run(fetch_export(definition, settings, **FAST))

        threads = [threading.Thread(target=view) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert outcome["ping"]["available"] is True
    assert outcome["export"]["count"] == 96


# --- throttling, faults, timeouts ------------------------------------------------------------------


def test_a_full_queue_answers_429_and_the_client_waits_for_room():
    with running(ready_after_polls=None, ready_after_s=0.8) as (simulator, settings):
        headers = {"Authorization": f"OAuth {simulator.token}"}
        base = settings.base_url + "/logs/v1/export/events.json"
        for day in (3, 4, 5):
            params = {
                "application_id": simulator.application_id,
                "date_since": f"2024-02-0{day} 00:00:00",
                "date_until": f"2024-02-0{day} 23:59:59",
                "fields": "event_name",
            }
            assert httpx.get(base, params=params, headers=headers).status_code == 202
        refused = httpx.get(base, params={**params, "fields": "city"}, headers=headers)
        assert refused.status_code == 429 and "queued" in refused.text
        assert refused.headers["content-type"].startswith("text/plain")
        result = fetch(settings)
    assert result["count"] == 96
    assert result["polls"] >= 3  # 429 at least once, then 202 at least once, then 200
    assert result["elapsed_s"] >= 0.8


def test_retry_after_is_honoured_and_5xx_are_retried_a_bounded_number_of_times():
    with running(ready_after_polls=1) as (simulator, settings):
        simulator.faults.fail_next(429, headers={"Retry-After": "1"})
        simulator.faults.fail_next(503, times=2)
        result = fetch(settings)
        assert result["polls"] == 5 and result["elapsed_s"] >= 1.0  # 429, 503, 503, 202, 200

        simulator.faults.fail_next(500, times=10)
        with pytest.raises(AppMetricaUnavailableError, match="failed 4 times in a row; last: HTTP 500"):
            fetch(settings, fresh=True)
        simulator.faults.clear()


def test_no_answer_within_poll_timeout_raises_export_timeout():
    with running(ready_after_polls=None) as (_, settings):
        with pytest.raises(ExportTimeoutError, match=r"not ready within poll_timeout=1 s") as caught:
            fetch(settings, poll_interval=0.2, poll_timeout=1)
    assert caught.value.export_id == "events" and caught.value.polls >= 4
    assert 1.0 <= caught.value.elapsed_s < 3


def test_a_retry_after_beyond_the_deadline_fails_at_once():
    with running() as (simulator, settings):
        simulator.faults.fail_next(429, headers={"Retry-After": "30"})
        with pytest.raises(ExportTimeoutError, match="next try is due in 30 s") as caught:
            fetch(settings, poll_timeout=5)
    assert caught.value.polls == 1 and caught.value.elapsed_s < 2


def test_an_unreachable_api_is_reported_after_the_retries():
    with running() as (_, settings):
        pass  # the simulator is gone: its port refuses connections
    with pytest.raises(AppMetricaUnavailableError, match="ConnectError"):
        fetch(settings)


# --- refusals ---------------------------------------------------------------------------------------


def test_a_wrong_token_is_an_auth_error_that_does_not_show_the_token():
    with running() as (simulator, settings):
        wrong = AppMetricaSettings(
            token="wrong-secret-token", base_url=settings.base_url, application_id=simulator.application_id
        )
        with pytest.raises(AppMetricaAuthError, match="HTTP 401") as caught:
            fetch(wrong)
        with pytest.raises(AppMetricaAuthError, match="HTTP 401"):
            asyncio.run(ping(wrong))
        with pytest.raises(AppMetricaAuthError, match="HTTP 403.*denied"):
            fetch(settings, {**EVENTS, "application_id": 999})
    assert "wrong-secret-token" not in str(caught.value) and "wrong-secret-token" not in repr(wrong)


def test_parameters_the_api_refuses_are_a_request_error_with_its_message():
    with running() as (_, settings):
        with pytest.raises(AppMetricaRequestError, match="Unknown fields for events: no_such_field"):
            fetch(settings, {**EVENTS, "fields": ["event_name", "no_such_field"]})
        with pytest.raises(AppMetricaRequestError, match="Unknown resource"):
            fetch(settings, {**EVENTS, "resource": "nonsense"})


def test_the_simulator_validates_parameters_like_the_api():
    with running() as (simulator, settings):
        headers = {"Authorization": f"OAuth {simulator.token}"}
        url = settings.base_url + "/logs/v1/export/events.json"
        good = {
            "application_id": str(simulator.application_id),
            "date_since": "2024-02-01 00:00:00",
            "date_until": "2024-02-01 23:59:59",
            "fields": "event_name",
        }
        assert httpx.get(url, params=good).status_code == 401
        assert httpx.get(url, params=good, headers={"Authorization": "Bearer x"}).status_code == 401
        for change, message in (
            ({"date_since": "2024-02-01"}, "yyyy-mm-dd hh:mm:ss"),
            ({"date_until": "2024-01-01 00:00:00"}, "date_since must not be later"),
            ({"fields": ""}, "fields is required"),
            ({"limit": "-1"}, "limit must be a positive integer"),
            ({"bogus": "1"}, "Unknown parameters: bogus"),
        ):
            answer = httpx.get(url, params={**good, **change}, headers=headers)
            assert answer.status_code == 400 and message in answer.json()["message"]
        assert httpx.get(url.replace(".json", ".xml"), params=good, headers=headers).status_code == 400


# --- ping -------------------------------------------------------------------------------------------


def test_ping_reports_availability_and_latency():
    with running() as (simulator, settings):
        up = asyncio.run(ping(settings))
        simulator.availability = "disabled"
        down = asyncio.run(ping(settings))
        simulator.faults.fail_next(503)
        with pytest.raises(AppMetricaUnavailableError, match="HTTP 503"):
            asyncio.run(ping(settings))
    assert up["available"] is True and up["status"] == "enabled" and up["latency_ms"] > 0
    assert down["available"] is False and down["status"] == "disabled"
    assert up["base_url"] == settings.base_url


def test_a_connection_uri_without_a_scheme_in_its_host_pings_over_plain_http(monkeypatch):
    with running() as (simulator, settings):
        address = settings.base_url.removeprefix("http://")
        monkeypatch.setenv("AIRFLOW_CONN_APPMETRICA_API", f"http://:{simulator.token}@{address}")
        assert asyncio.run(ping(load_settings()))["available"] is True
        monkeypatch.setenv("AIRFLOW_CONN_APPMETRICA_API", f"http://:{simulator.token}@{address}/https")
        assert load_settings().base_url == f"https://{address}"  # the schema field (URI path) wins


# --- definitions, settings, bounds ------------------------------------------------------------------


def test_unknown_export_id():
    with pytest.raises(UnknownExportError, match="'nope'.*defined: daily, weekly"):
        lookup_export("nope", {"daily": EVENTS, "weekly": EVENTS})
    assert lookup_export("daily", {"daily": EVENTS}).fields == tuple(FIELDS)


def test_relative_periods_resolve_to_whole_days_in_the_definition_time_zone():
    now = dt.datetime(2024, 3, 10, 22, 30, tzinfo=dt.UTC)  # already March 11th in Moscow
    base = {"resource": "events", "fields": ["event_name"]}
    windows = {
        period: parse_definition("x", {**base, "period": period, "timezone": "Europe/Moscow"}).window(now)
        for period in ("today", "yesterday", "last_7_days")
    }
    assert windows == {
        "today": ("2024-03-11 00:00:00", "2024-03-11 01:30:00"),
        "yesterday": ("2024-03-10 00:00:00", "2024-03-10 23:59:59"),
        "last_7_days": ("2024-03-04 00:00:00", "2024-03-10 23:59:59"),
    }
    assert parse_definition("x", {**base, "period": "yesterday"}).window(now)[0] == "2024-03-09 00:00:00"


def test_relative_periods_are_resolved_once_per_fetch():
    with running(ready_after_polls=2) as (simulator, settings):
        result = fetch(settings, {"resource": "events", "fields": ["event_name"], "period": "today"})
    assert len({r.query["date_until"] for r in export_requests(simulator)}) == 1
    assert result["date_until"] == export_requests(simulator)[0].query["date_until"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**EVENTS, "period": "yesterday"}, "either period or date_since/date_until"),
        ({"resource": "events", "fields": FIELDS}, "a period or both date_since and date_until"),
        ({**EVENTS, "date_since": "2024-13-01"}, "yyyy-mm-dd"),
        ({**EVENTS, "date_since": "2024-03-01"}, "later than date_until"),
        ({**EVENTS, "fields": []}, "fields must be a non-empty list"),
        ({**EVENTS, "format": "xml"}, "format must be one of"),
        ({**EVENTS, "resource": "Events; DROP"}, "resource must be"),
        ({**EVENTS, "limit": 0}, "limit must be a positive integer"),
        ({**EVENTS, "timezone": "Mars/Olympus"}, "IANA"),
        ({**EVENTS, "date_dimension": "upload"}, "date_dimension"),
        ({**EVENTS, "filters": {"city": ["a"]}}, "filters must map"),
        ({**EVENTS, "filters": {"limit": 5}}, "filters cannot set the request parameters ['limit']"),
        ({**EVENTS, "colour": "red"}, "unknown keys ['colour']"),
        ({"resource": "events", "fields": FIELDS, "period": "last_0_days"}, "last_<N>_days"),
    ],
)
def test_invalid_definitions_name_the_problem(raw, message):
    with pytest.raises(AppMetricaConfigError, match=r"export 'x'.*" + re.escape(message)):
        parse_definition("x", raw)


def test_a_definition_needs_an_application_from_itself_or_the_connection():
    definition = parse_definition("x", EVENTS)
    with pytest.raises(AppMetricaConfigError, match="names no application_id"):
        definition.params(None)
    assert definition.params(5)["application_id"] == "5"
    assert parse_definition("x", {**EVENTS, "application_id": "7"}).params(5)["application_id"] == "7"


@pytest.mark.parametrize(
    ("interval", "timeout", "message"),
    [
        (0.05, 10, "poll_interval must be between 0.1 and 60"),
        (61, 100, "poll_interval must be between 0.1 and 60"),
        (1, 0.5, "poll_timeout must be between 1 and 3600"),
        (1, 3601, "poll_timeout must be between 1 and 3600"),
        (float("nan"), 10, "poll_interval must be a number"),
        (True, 10, "poll_interval must be a number"),
    ],
)
def test_polling_bounds(interval, timeout, message):
    with pytest.raises(AppMetricaConfigError, match=message):
        validate_polling(interval, timeout)


def test_settings_and_definitions_come_from_the_connection_and_the_variable(monkeypatch):
    extra_exports = {"daily": EVENTS, "shared": {**EVENTS, "limit": 1}}
    set_connection(
        monkeypatch,
        APPMETRICA_CONN_ID,
        "http",
        host="appmetrica.example.test",
        password="a-secret-oauth-token",
        extra=json.dumps({"application_id": "42", "exports": extra_exports}),
    )
    monkeypatch.setenv("AIRFLOW_VAR_APPMETRICA_EXPORTS", json.dumps({"shared": {**EVENTS, "limit": 2}}))
    settings = load_settings()
    definitions = load_definitions()
    assert (settings.base_url, settings.application_id) == ("http://appmetrica.example.test", 42)
    assert "a-secret-oauth-token" not in repr(settings)
    assert (
        sorted(definitions) == ["daily", "shared"] and definitions["shared"].limit == 2
    )  # the Variable wins
    monkeypatch.setenv("AIRFLOW_VAR_APPMETRICA_EXPORTS", "{not json")
    with pytest.raises(AppMetricaConfigError, match="Variable appmetrica_exports: not valid JSON"):
        load_definitions()
    with pytest.raises(AppMetricaConfigError, match="appmetrica extra exports: export 'bad'"):
        parse_definitions({"bad": {"resource": "events"}}, "appmetrica extra exports")
