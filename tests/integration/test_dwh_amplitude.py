"""The Amplitude weekly export against the Export API simulator, over real HTTP.

What the merged NDJSON must hold is read independently from the simulator's own archive (downloaded
raw over HTTP): the same events, each once, in upload-time order, although the archive lists hour 10
before hour 2 and part #10 before part #2.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
import tracemalloc
import zipfile
from collections.abc import Generator
from pathlib import Path

import httpx
import pytest

from include.dwh.amplitude import (
    EU_BASE_URL,
    AmplitudeAuthError,
    AmplitudeConfigError,
    AmplitudeCredentials,
    AmplitudeError,
    AmplitudeTimeoutError,
    ExportTooLargeError,
    NoDataError,
    export_week,
    load_credentials,
)
from include.dwh.config import AMPLITUDE_MOBILE_CONN_ID, AMPLITUDE_WEB_CONN_ID
from sandbox.http import Response, SimulatedApi
from sandbox.simulators.amplitude import AmplitudeSimulator
from tests.conftest import set_connection

DATA_UNTIL = dt.datetime(2024, 3, 31, 23)


@contextlib.contextmanager
def running(**options) -> Generator[tuple[AmplitudeSimulator, dict[str, AmplitudeCredentials]]]:
    simulator = AmplitudeSimulator(data_since=dt.datetime(2020, 1, 1), data_until=DATA_UNTIL, **options)
    with simulator.serve() as base_url:
        yield (
            simulator,
            {
                source: AmplitudeCredentials(project.api_key, project.secret_key, base_url)
                for source, project in simulator.projects.items()
            },
        )


def merged_lines(path: Path) -> list[bytes]:
    with zipfile.ZipFile(path) as archive:
        [name] = archive.namelist()
        assert name == path.stem + ".ndjson"
        return archive.read(name).splitlines(keepends=True)


def raw_archive_events(
    credentials: AmplitudeCredentials, start: str, end: str
) -> tuple[list[str], list[dict]]:
    """The simulator's archive as served, read without the client: entry names and every event."""
    response = httpx.get(
        credentials.base_url + "/api/2/export",
        params={"start": start, "end": end},
        auth=(credentials.api_key, credentials.secret_key),
    )
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        events = [
            json.loads(line) for name in names for line in gzip.decompress(archive.read(name)).splitlines()
        ]
    return names, events


def test_merges_every_part_once_in_time_order(tmp_path):
    with running(events_per_hour=36, parts_per_hour=12) as (simulator, credentials):
        result = export_week("20240205", "20240207", "web", credentials["web"], tmp_path)
        names, served = raw_archive_events(credentials["web"], "20240205T00", "20240207T23")
    assert names.index("400000/400000_2024-02-05_10#0.json.gz") < names.index(
        "400000/400000_2024-02-05_2#0.json.gz"
    )
    assert names.index("400000/400000_2024-02-05_0#10.json.gz") < names.index(
        "400000/400000_2024-02-05_0#2.json.gz"
    )

    lines = merged_lines(result.path)
    events = [json.loads(line) for line in lines]
    assert all(line.endswith(b"\n") for line in lines)
    assert (
        len(events)
        == result.events
        == 3 * 24 * 36
        == simulator.expected_events(dt.datetime(2024, 2, 5), dt.datetime(2024, 2, 7, 23))
    )
    assert result.parts == len(names) == 3 * 24 * 12
    assert sorted(e["uuid"] for e in events) == sorted(e["uuid"] for e in served)  # every event, once
    assert len({e["uuid"] for e in events}) == len(events)
    uploads = [e["server_upload_time"] for e in events]
    assert uploads == sorted(uploads) and len(set(uploads)) == len(uploads)  # strictly in time order
    assert uploads[0] == "2024-02-05 00:00:00.000000" and uploads[-1].startswith("2024-02-07 23:")
    assert {e["app"] for e in events} == {simulator.projects["web"].project_id}
    assert {"event_type", "user_id", "device_id", "session_id", "event_properties", "user_properties"} <= set(
        events[0]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2024_week_6.zip"]  # no temporary file left


def test_each_source_reads_its_own_project(tmp_path):
    with running(events_per_hour=10) as (simulator, credentials):
        mobile = export_week("20240205", "20240205", "mobile", credentials["mobile"], tmp_path / "m")
    events = [json.loads(line) for line in merged_lines(mobile.path)]
    assert {e["app"] for e in events} == {simulator.projects["mobile"].project_id}
    assert {e["platform"] for e in events} <= {"iOS", "Android"} and mobile.source == "mobile"


@pytest.mark.parametrize(
    ("start", "end", "name"),
    [
        ("20240205", "20240211", "2024_week_6.zip"),  # Monday to Sunday
        ("20240208", "20240214", "2024_week_6.zip"),  # crosses into week 7: named after its start
        ("20240101", "20240101", "2024_week_1.zip"),
        ("20210101", "20210103", "2020_week_53.zip"),  # the ISO year, not the calendar year
    ],
)
def test_archive_is_named_after_the_iso_week_of_start(tmp_path, start, end, name):
    with running(events_per_hour=2) as (_, credentials):
        result = export_week(start, end, "web", credentials["web"], tmp_path)
    assert result.name == name and result.path == tmp_path / name
    with zipfile.ZipFile(result.path) as archive:
        assert archive.comment.decode() == f"amplitude web {start}T00-{end}T23 events={result.events}"
    assert result.summary()["file"] == name and result.summary()["events"] == result.events > 0


def test_no_data_in_range_is_no_data(tmp_path):
    with running() as (simulator, credentials):
        with pytest.raises(NoDataError, match=r"Amplitude web export 20191201\.\.20191231: no data"):
            export_week("20191201", "20191231", "web", credentials["web"], tmp_path)
        with pytest.raises(NoDataError):
            export_week("20240401", "20240407", "web", credentials["web"], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_export_over_the_size_limit_is_too_large(tmp_path):
    # One day of 100 events an hour is about 3.9 MB of NDJSON; two days are over a 5 MB limit.
    with running(events_per_hour=100, max_export_bytes=5_000_000) as (_, credentials):
        assert export_week("20240205", "20240205", "web", credentials["web"], tmp_path).events == 2_400
        with pytest.raises(ExportTooLargeError, match="HTTP 400.*exceed the limit of 5000000 bytes"):
            export_week("20240205", "20240206", "web", credentials["web"], tmp_path / "two-days")
    assert list((tmp_path / "two-days").iterdir()) == []


def test_timeouts_and_wrong_credentials(tmp_path):
    with running(events_per_hour=5) as (simulator, credentials):
        simulator.faults.fail_next(504)
        with pytest.raises(AmplitudeTimeoutError, match="HTTP 504"):
            export_week("20240205", "20240205", "web", credentials["web"], tmp_path)
        web = credentials["web"]
        for wrong in (
            AmplitudeCredentials(web.api_key, "not-the-secret", web.base_url),
            AmplitudeCredentials(credentials["mobile"].api_key, web.secret_key, web.base_url),
        ):
            with pytest.raises(AmplitudeAuthError, match="HTTP 401") as caught:
                export_week("20240205", "20240205", "web", wrong, tmp_path)
            assert wrong.secret_key not in str(caught.value) and wrong.api_key not in str(caught.value)
            assert wrong.secret_key not in repr(wrong)
        assert httpx.get(web.base_url + "/api/2/export?start=20240205T00&end=20240205T01").status_code == 401
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("start", "end", "source", "message"),
    [
        ("2024-02-05", "20240207", "web", "start must be a date as YYYYMMDD"),
        ("20240230", "20240301", "web", "start '20240230' is not a calendar date"),
        ("20240207", "20240205", "web", "start 20240207 is after end 20240205"),
        ("20230101", "20240101", "web", "longer than 365 days"),
        ("20240205", "20240207", "ios", "source must be one of web, mobile"),
    ],
)
def test_bad_ranges_and_sources_fail_before_any_request(tmp_path, start, end, source, message):
    with running() as (simulator, credentials):
        with pytest.raises(AmplitudeConfigError, match=message):
            export_week(start, end, source, credentials["web"], tmp_path)
    assert simulator.api.requests == []


@contextlib.contextmanager
def serving(entries: dict[str, bytes]) -> Generator[AmplitudeCredentials]:
    """An Export API that answers every request with a zip of ``entries``, as given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    api = SimulatedApi("amplitude-handmade")
    api.route("GET", "/api/2/export")(lambda request: Response(200, buffer.getvalue()))
    with api.serve() as base_url:
        yield AmplitudeCredentials("key", "secret", base_url)


def test_parts_without_a_final_newline_do_not_fuse_events(tmp_path):
    entries = {
        "7/": b"",
        "7/7_2024-02-05_10#0.json.gz": gzip.compress(b'{"n":3}\n{"n":4}'),
        "7/7_2024-02-05_9#0.json.gz": gzip.compress(b'{"n":1}\n')
        + gzip.compress(b'{"n":2}\n'),  # two members
    }
    with serving(entries) as credentials:
        result = export_week("20240205", "20240205", "web", credentials, tmp_path)
    assert merged_lines(result.path) == [b'{"n":1}\n', b'{"n":2}\n', b'{"n":3}\n', b'{"n":4}\n']
    assert (result.events, result.parts) == (4, 2)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"7/7_2024-02-05_9#0.json.gz": gzip.compress(b'{"n":1}\n' * 100)[:-30]}, "is corrupt"),
        ({"7/7_2024-02-05_9#0.json.gz": b"not gzip"}, "is corrupt"),
        ({"7/readme.txt": b"hello"}, "unexpected entry '7/readme.txt'"),
    ],
)
def test_a_broken_archive_is_an_error_and_leaves_nothing_behind(tmp_path, entries, message):
    with serving(entries) as credentials, pytest.raises(AmplitudeError, match=message):
        export_week("20240205", "20240205", "web", credentials, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_memory_stays_flat_on_a_large_export(tmp_path):
    """About 50 MB of NDJSON goes through the client; its traced peak stays a small fraction of that."""
    with running(events_per_hour=1_300, parts_per_hour=2) as (simulator, credentials):
        day = dt.datetime(2024, 2, 5)
        simulator.prepare("web", day, day.replace(hour=23))  # built before tracing: only the client counts
        tracemalloc.start()
        try:
            result = export_week("20240205", "20240205", "web", credentials["web"], tmp_path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    with zipfile.ZipFile(result.path) as archive:
        uncompressed = archive.getinfo("2024_week_6.ndjson").file_size
    assert result.events == 24 * 1_300 and uncompressed > 45_000_000
    assert peak < 8_000_000, (
        f"peak traced memory {peak / 1e6:.1f} MB for {uncompressed / 1e6:.0f} MB of NDJSON"
    )


def test_a_connection_uri_without_a_scheme_in_its_host_exports_over_plain_http(monkeypatch, tmp_path):
    with running(events_per_hour=2) as (simulator, credentials):
        web = credentials["web"]
        address = web.base_url.removeprefix("http://")
        monkeypatch.setenv("AIRFLOW_CONN_AMPLITUDE_WEB", f"http://{web.api_key}:{web.secret_key}@{address}")
        result = export_week("20240205", "20240205", "web", load_credentials("web"), tmp_path)
    assert result.events == simulator.expected_events(dt.datetime(2024, 2, 5), dt.datetime(2024, 2, 5, 23))


def test_credentials_come_from_the_source_connection(monkeypatch):
    set_connection(monkeypatch, AMPLITUDE_WEB_CONN_ID, "http", login="web-key", password="web-secret-key")
    set_connection(
        monkeypatch,
        AMPLITUDE_MOBILE_CONN_ID,
        "http",
        login="m-key",
        password="m-secret-key",
        extra=json.dumps({"region": "eu"}),
    )
    web, mobile = load_credentials("web"), load_credentials("mobile")
    assert (web.api_key, web.base_url) == ("web-key", "https://amplitude.com")
    assert "web-secret-key" not in repr(web)
    assert (mobile.api_key, mobile.secret_key, mobile.base_url) == ("m-key", "m-secret-key", EU_BASE_URL)
    set_connection(
        monkeypatch, AMPLITUDE_WEB_CONN_ID, "http", login="k", password="s", host="127.0.0.1", port=8080
    )
    assert load_credentials("web").base_url == "http://127.0.0.1:8080"  # no scheme, no schema: http
    set_connection(
        monkeypatch, AMPLITUDE_WEB_CONN_ID, "http", login="k", password="s", host="eu.example", schema="https"
    )
    assert load_credentials("web").base_url == "https://eu.example"
    set_connection(monkeypatch, AMPLITUDE_WEB_CONN_ID, "http", login="web-key", password="", host="x")
    with pytest.raises(AmplitudeConfigError, match="amplitude_web: login .* and password .* are required"):
        load_credentials("web")
