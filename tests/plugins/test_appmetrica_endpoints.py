"""``/dwh-helper/appmetrica/...`` over real HTTP, against the AppMetrica Logs API simulator.

One simulator serves the module; each test gets its behaviour back as it was (readiness, availability,
faults). Exports are cached by the simulator for 24 hours, as by AppMetrica, so tests that count polls
use an export window of their own.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dwh_helper.services import AppMetricaAccess, Services, Settings
from include.dwh.appmetrica import AppMetricaSettings
from include.dwh.config import APPMETRICA_CONN_ID
from sandbox.simulators.appmetrica import AppMetricaSimulator
from tests.conftest import set_connection

FIELDS = ["event_name", "event_datetime", "appmetrica_device_id", "city"]


def events(day: int, **changes: Any) -> dict[str, Any]:
    """An export of two days of events from 2024-02-``day``, a window no other test asks for."""
    since, until = f"2024-02-{day:02d}", f"2024-02-{day + 1:02d}"
    return {"resource": "events", "fields": FIELDS, "date_since": since, "date_until": until, **changes}


@dataclass
class Running:
    simulator: AppMetricaSimulator
    base_url: str

    def settings(self, token: str | None = None, base_url: str | None = None) -> AppMetricaSettings:
        return AppMetricaSettings(
            token=token or self.simulator.token,
            base_url=base_url or self.base_url,
            application_id=self.simulator.application_id,
        )

    def exports_sent(self) -> list[Any]:
        return [r for r in self.simulator.api.requests if r.path.startswith("/logs/v1/export/")]


@pytest.fixture(scope="module")
def module_simulator() -> Iterator[Running]:
    simulator = AppMetricaSimulator(ready_after_polls=2, rows_per_day=48)
    with simulator.serve() as base_url:
        yield Running(simulator, base_url)


@pytest.fixture
def running(module_simulator) -> Iterator[Running]:
    simulator = module_simulator.simulator
    yield module_simulator
    simulator.ready_after_polls, simulator.availability = 2, "enabled"
    simulator.faults.clear()


@pytest.fixture
def appmetrica(serve_services, client, running) -> Callable[..., Callable[..., httpx.Response]]:
    """Factory: serve the app with export ``definitions`` (and ``settings``), reaching the simulator
    with ``access`` (default: its token and address); return ``get(path, **params)``."""

    def start(
        definitions: Mapping[str, Any] | None = None,
        access: AppMetricaSettings | None = None,
        **settings: float,
    ) -> Callable[..., httpx.Response]:
        access_ = AppMetricaAccess(access or running.settings(), lambda: definitions or {})
        base = serve_services(Services(settings=Settings(**settings), appmetrica=lambda _conn_id: access_))

        def get(path: str, **params: Any) -> httpx.Response:
            return client.get(f"{base}/appmetrica/{path}", params=params)

        return get

    return start


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


# ------------------------------------------------------------------------------------------- ping


def test_ping_answers_availability_200_or_503(appmetrica, running):
    get = appmetrica()

    up = get("ping")
    running.simulator.availability = "disabled"
    down = get("ping")

    assert up.status_code == 200
    assert list(up.json()) == ["available", "status", "latency_ms", "base_url"]
    assert up.json()["available"] is True and up.json()["status"] == "enabled"
    assert up.json()["latency_ms"] > 0 and up.json()["base_url"] == running.base_url
    assert down.status_code == 503
    assert down.json()["available"] is False and down.json()["status"] == "disabled"


def test_ping_of_an_unreachable_api_is_503_and_of_a_refused_token_502(appmetrica, running):
    unreachable = appmetrica(access=running.settings(base_url=closed_port_url()))("ping")
    refused = appmetrica(access=running.settings(token="wrong-token-4f9a"))("ping")

    assert unreachable.status_code == 503
    assert unreachable.json()["error"] == "Service Unavailable"
    assert "ConnectError" in unreachable.json()["detail"]
    assert refused.status_code == 502 and refused.json()["error"] == "Bad Gateway"
    assert "refused the OAuth token" in refused.json()["detail"]
    assert "wrong-token-4f9a" not in refused.text


# ----------------------------------------------------------------------------------- fetch-export


def test_fetch_export_polls_until_the_export_is_ready(appmetrica, running):
    running.simulator.ready_after_polls = 3
    get = appmetrica({"daily_events": events(1)})

    response = get("fetch-export", export_id="daily_events", poll_interval=0.1, poll_timeout=10)

    assert response.status_code == 200, response.text
    result = response.json()
    assert list(result) == [
        "export_id",
        "resource",
        "format",
        "date_since",
        "date_until",
        "rows",
        "count",
        "polls",
        "elapsed_s",
    ]
    assert (result["export_id"], result["resource"], result["format"]) == ("daily_events", "events", "json")
    assert (result["date_since"], result["date_until"]) == ("2024-02-01 00:00:00", "2024-02-02 23:59:59")
    assert result["polls"] == 4  # three 202s, then the data
    assert result["count"] == len(result["rows"]) == 96  # 48 a day over two days
    assert all(list(row) == FIELDS for row in result["rows"])  # the fields in the order asked
    assert result["elapsed_s"] >= 0.3
    assert running.simulator.token not in response.text


def test_a_ready_export_is_served_again_unless_fresh_is_asked(appmetrica, running):
    get = appmetrica({"weekly": events(3)})
    fast = {"export_id": "weekly", "poll_interval": 0.1}

    first = get("fetch-export", **fast).json()
    again = get("fetch-export", **fast).json()
    fresh = get("fetch-export", **fast, fresh="true").json()

    assert (first["polls"], again["polls"], fresh["polls"]) == (3, 1, 3)
    assert first["rows"] == again["rows"] == fresh["rows"]
    sent = running.exports_sent()[-3:]  # the fresh fetch: it alone asks for a new file
    assert [r.header("cache-control") for r in sent] == ["no-cache", None, None]


def test_a_csv_export_gives_its_rows_as_objects(appmetrica):
    get = appmetrica(
        {"installs": events(5, resource="installations", fields=["install_datetime", "city"], format="csv")}
    )

    result = get("fetch-export", export_id="installs", poll_interval=0.1).json()

    assert result["format"] == "csv" and result["count"] == 96
    assert all(list(row) == ["install_datetime", "city"] for row in result["rows"])


def test_429_and_its_retry_after_are_waited_out(appmetrica, running):
    running.simulator.faults.fail_next(429, headers={"Retry-After": "0.3"})
    get = appmetrica({"throttled": events(7)})

    response = get("fetch-export", export_id="throttled", poll_interval=0.1)

    assert response.status_code == 200, response.text
    assert response.json()["polls"] == 4  # 429, 202, 202, 200
    assert response.json()["elapsed_s"] >= 0.3


def test_an_export_not_ready_within_poll_timeout_is_504_saying_how_long_it_waited(appmetrica, running):
    running.simulator.ready_after_polls = None  # never ready
    get = appmetrica({"slow": events(9)})

    response = get("fetch-export", export_id="slow", poll_interval=0.2, poll_timeout=1)

    assert response.status_code == 504
    body = response.json()
    assert list(body) == ["error", "detail", "export_id", "polls", "elapsed_s"]
    assert body["error"] == "Gateway Timeout" and body["export_id"] == "slow"
    assert "'slow' was not ready within poll_timeout=1 s" in body["detail"]
    assert body["polls"] >= 4 and body["elapsed_s"] >= 1.0


def test_polling_defaults_come_from_the_settings(appmetrica, running):
    """With no poll parameters the settings' interval (0.1 s) and timeout (1 s) apply: a 5 s interval
    would have polled once, and a 300 s timeout would not have given up."""
    running.simulator.ready_after_polls = None
    get = appmetrica(
        {"slow": events(11)}, appmetrica_poll_interval_seconds=0.1, appmetrica_poll_timeout_seconds=1
    )

    response = get("fetch-export", export_id="slow")

    assert response.status_code == 504 and "poll_timeout=1 s" in response.json()["detail"]
    assert response.json()["polls"] >= 5


def test_an_unknown_export_id_is_404_listing_the_defined_ones(appmetrica):
    get = appmetrica({"daily": events(1), "weekly": events(3)})

    response = get("fetch-export", export_id="monthly")

    assert response.status_code == 404
    assert response.json() == {
        "error": "Not Found",
        "detail": "no AppMetrica export is defined with id 'monthly' (defined: daily, weekly)",
    }


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({}, "Query parameter 'export_id' is required"),
        ({"export_id": ""}, "Query parameter 'export_id' is required"),
        (
            {"export_id": "daily", "poll_interval": "soon"},
            "'poll_interval' must be a number of seconds, got 'soon'",
        ),
        (
            {"export_id": "daily", "poll_interval": "0"},
            "poll_interval must be between 0.1 and 60 seconds, got 0",
        ),
        ({"export_id": "daily", "poll_interval": "nan"}, "poll_interval must be a number of seconds"),
        (
            {"export_id": "daily", "poll_timeout": "0.5"},
            "poll_timeout must be between 1 and 3600 seconds, got 0.5",
        ),
        (
            {"export_id": "daily", "poll_timeout": "7200"},
            "poll_timeout must be between 1 and 3600 seconds, got 7200",
        ),
        ({"export_id": "daily", "fresh": "maybe"}, "'fresh' must be true or false, got 'maybe'"),
    ],
)
def test_a_missing_or_invalid_parameter_is_400_naming_it(appmetrica, running, params, detail):
    get = appmetrica({"daily": events(1)})
    sent = len(running.exports_sent())

    response = get("fetch-export", **params)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "Bad Request" and detail in response.json()["detail"]
    assert len(running.exports_sent()) == sent  # refused before AppMetrica was asked anything


def test_what_appmetrica_refuses_is_502_with_its_reason(appmetrica, running):
    definitions = {"daily": events(1), "typo": events(1, fields=["event_name", "no_such_field"])}
    wrong_token = appmetrica(definitions, access=running.settings(token="wrong-token-4f9a"))
    get = appmetrica(definitions)

    refused_token = wrong_token("fetch-export", export_id="daily", poll_interval=0.1)
    refused_fields = get("fetch-export", export_id="typo", poll_interval=0.1)

    assert refused_token.status_code == 502
    assert "AppMetrica refused the OAuth token" in refused_token.json()["detail"]
    assert "wrong-token-4f9a" not in refused_token.text
    assert refused_fields.status_code == 502
    assert "Unknown fields for events: no_such_field" in refused_fields.json()["detail"]


def test_an_api_that_keeps_failing_is_503(appmetrica, running):
    running.simulator.faults.fail_next(500, times=10)
    get = appmetrica({"daily": events(13)})

    response = get("fetch-export", export_id="daily", poll_interval=0.1)

    assert response.status_code == 503
    assert "failed 4 times in a row; last: HTTP 500" in response.json()["detail"]


# ---------------------------------------------------------------------------------------- wiring


def test_airflow_services_use_the_connection_and_the_variables(monkeypatch, serve_services, client, running):
    simulator = running.simulator
    extra = {"application_id": simulator.application_id, "exports": {"daily": events(15)}}
    set_connection(
        monkeypatch, APPMETRICA_CONN_ID, "http", host=running.base_url, password=simulator.token, extra=extra
    )
    monkeypatch.setenv("AIRFLOW_VAR_APPMETRICA_EXPORTS", json.dumps({"weekly": events(17)}))
    monkeypatch.setenv("AIRFLOW_VAR_APPMETRICA_POLL_INTERVAL_SECONDS", "0.1")
    base = serve_services(Services.from_airflow()) + "/appmetrica"

    ping = client.get(f"{base}/ping")
    daily = client.get(f"{base}/fetch-export", params={"export_id": "daily"})
    weekly = client.get(f"{base}/fetch-export", params={"export_id": "weekly"})
    monkeypatch.setenv("AIRFLOW_VAR_APPMETRICA_EXPORTS", json.dumps({"monthly": events(19)}))
    monthly = client.get(f"{base}/fetch-export", params={"export_id": "monthly"})  # no restart needed
    monkeypatch.setenv("AIRFLOW_VAR_APPMETRICA_EXPORTS", '{"broken": {"resource": "events"}}')
    broken = client.get(f"{base}/fetch-export", params={"export_id": "daily"})

    assert ping.status_code == 200 and ping.json()["available"] is True
    assert daily.status_code == 200 and daily.json()["count"] == 96
    assert weekly.status_code == 200 and weekly.json()["date_since"] == "2024-02-17 00:00:00"
    assert monthly.status_code == 200 and monthly.json()["export_id"] == "monthly"
    assert broken.status_code == 503
    assert "Variable appmetrica_exports: export 'broken': fields must be" in broken.json()["detail"]


def test_without_a_connection_the_endpoints_are_503_naming_it(serve_services, client):
    base = serve_services(Services.from_airflow()) + "/appmetrica"

    response = client.get(f"{base}/ping")

    assert response.status_code == 503
    assert response.json() == {
        "error": "Service Unavailable",
        "detail": "the Airflow connection 'appmetrica_api' is not defined",
    }


def test_polling_settings_are_checked_and_read_from_their_variables(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_APPMETRICA_POLL_INTERVAL_SECONDS", "0.5")
    monkeypatch.setenv("AIRFLOW_VAR_APPMETRICA_POLL_TIMEOUT_SECONDS", "60")

    settings = Settings.from_airflow_variables()

    assert (settings.appmetrica_poll_interval_seconds, settings.appmetrica_poll_timeout_seconds) == (0.5, 60)
    with pytest.raises(
        ValueError, match="appmetrica_poll_interval_seconds must be from 0.1 to 60 seconds, got 0"
    ):
        Settings(appmetrica_poll_interval_seconds=0)
    monkeypatch.setenv("AIRFLOW_VAR_APPMETRICA_POLL_TIMEOUT_SECONDS", "5m")
    with pytest.raises(
        ValueError, match="Variable appmetrica_poll_timeout_seconds must be a number, got '5m'"
    ):
        Settings.from_airflow_variables()
