"""``/dwh-helper/amplitude/export`` over real HTTP, against the Amplitude Export API simulator.

The simulator splits every hour into 12 parts, so its archive lists hour 10 before hour 2 and part #10
before part #2; the endpoint's NDJSON must hold every event once, in upload-time order all the same.

Each export is built in a private work directory; once the server has finished a request (an event
the test server counts, see ``conftest.py``), nothing of it may be left there, nor held open.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from dwh_helper.services import Services, Settings
from include.common.workdir import work_directory
from include.dwh.amplitude import AmplitudeCredentials
from include.dwh.config import AMPLITUDE_MOBILE_CONN_ID
from sandbox.simulators.amplitude import AmplitudeSimulator
from tests.conftest import set_connection
from tests.plugins.conftest import PluginServer

DATA_UNTIL = dt.datetime(2024, 3, 31, 23)
EVENTS_PER_HOUR = 24


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[AmplitudeSimulator, str]]:
    simulator = AmplitudeSimulator(
        events_per_hour=EVENTS_PER_HOUR, parts_per_hour=12, data_until=DATA_UNTIL, cached_exports=8
    )
    with simulator.serve() as base_url:
        yield simulator, base_url


@pytest.fixture
def simulator(running) -> Iterator[AmplitudeSimulator]:
    simulator, _ = running
    max_export_bytes = simulator.max_export_bytes
    yield simulator
    simulator.max_export_bytes = max_export_bytes
    simulator.faults.clear()


def credentials(running: tuple[AmplitudeSimulator, str], source: str) -> AmplitudeCredentials:
    simulator, base_url = running
    project = simulator.projects[source]
    return AmplitudeCredentials(project.api_key, project.secret_key, base_url)


@pytest.fixture
def workdir(tmp_path) -> Path:
    return tmp_path / "amplitude"


@pytest.fixture
def plugin(serve, running, workdir) -> PluginServer:
    """The plugin with the simulator's keys and its work directory in ``workdir``."""
    return serve(
        Services(
            settings=Settings(amplitude_workdir=str(workdir)),
            amplitude=lambda conn_id: credentials(running, conn_id.removeprefix("amplitude_")),
        )
    )


@pytest.fixture
def export(plugin, client) -> Callable[..., httpx.Response]:
    """``GET /amplitude/export`` of :func:`plugin`."""

    def get(**params: Any) -> httpx.Response:
        return client.get(f"{plugin.base}/amplitude/export", params=params)

    return get


def ndjson(response: httpx.Response) -> tuple[str, list[dict[str, Any]]]:
    """The only entry of the downloaded zip: its name and its events."""
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        [name] = archive.namelist()
        return name, [json.loads(line) for line in archive.read(name).splitlines()]


def left_behind(plugin: PluginServer, directory: Path) -> list[str]:
    """What the server left of its exports once it has finished every request: the entries under
    ``directory``, and the files under it that the server (this process) still holds open, removed
    ones included (those still take their disk space)."""
    plugin.server.wait_idle()
    entries = [str(path) for path in directory.rglob("*")] if directory.exists() else []
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target.startswith(f"{directory}{os.sep}"):
            held.append(f"open: {target}")
    return entries + held


def test_a_week_downloads_as_one_ndjson_in_time_order(export, simulator, plugin, workdir):
    response = export(start="20240205", end="20240211", source="web")

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Disposition"] == "attachment; filename=2024_week_6.zip"
    assert response.headers["Content-Length"] == str(len(response.content))
    name, events = ndjson(response)
    assert name == "2024_week_6.ndjson"
    assert len(events) == 7 * 24 * EVENTS_PER_HOUR
    assert len({event["uuid"] for event in events}) == len(events)
    upload_times = [event["server_upload_time"] for event in events]
    assert upload_times == sorted(upload_times)
    assert upload_times[0][:10] == "2024-02-05" and upload_times[-1][:10] == "2024-02-11"
    assert {event["app"] for event in events} == {simulator.projects["web"].project_id}
    assert left_behind(plugin, workdir) == []


def test_each_source_uses_its_own_project_even_for_the_same_week_at_once(export, simulator, plugin, workdir):
    """Both answers are built at the same time for the same week; neither gets the other's file."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = dict(
            zip(
                ("web", "mobile"),
                pool.map(
                    lambda source: export(start="20240212", end="20240212", source=source), ("web", "mobile")
                ),
                strict=True,
            )
        )

    for source, response in responses.items():
        assert response.status_code == 200, response.text
        name, events = ndjson(response)
        assert name == "2024_week_7.ndjson" and len(events) == 24 * EVENTS_PER_HOUR
        assert {event["app"] for event in events} == {simulator.projects[source].project_id}
    assert left_behind(plugin, workdir) == []


def test_a_range_without_data_is_404(export, plugin, workdir):
    response = export(start="20190101", end="20190107", source="mobile")

    assert response.status_code == 404
    assert response.json() == {
        "error": "Not Found",
        "detail": "Amplitude mobile export 20190101..20190107: no data in this range",
    }
    assert left_behind(plugin, workdir) == []


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"end": "20240201", "source": "web"}, "Query parameter 'start' is required"),
        ({"start": "20240201", "source": "web"}, "Query parameter 'end' is required"),
        ({"start": "20240201", "end": "20240207"}, "Query parameter 'source' is required"),
        ({"start": "2024-02-01", "end": "20240207", "source": "web"}, "start must be a date as YYYYMMDD"),
        ({"start": "20240201", "end": "20240231", "source": "web"}, "end '20240231' is not a calendar date"),
        ({"start": "20240207", "end": "20240201", "source": "web"}, "start 20240207 is after end 20240201"),
        ({"start": "20230101", "end": "20240201", "source": "web"}, "longer than 365 days"),
        ({"start": "20240201", "end": "20240207", "source": "ios"}, "source must be one of web, mobile"),
    ],
)
def test_a_missing_or_invalid_parameter_is_400_naming_it(export, simulator, params, detail):
    sent = len(simulator.api.requests)

    response = export(**params)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "Bad Request" and detail in response.json()["detail"]
    assert len(simulator.api.requests) == sent  # refused before Amplitude was asked anything


def test_an_export_amplitude_finds_too_large_is_400(export, simulator, plugin, workdir):
    simulator.max_export_bytes = 10_000

    response = export(start="20240201", end="20240229", source="web")

    assert response.status_code == 400
    assert "too large" in response.json()["detail"] and "limit of 10000 bytes" in response.json()["detail"]
    assert left_behind(plugin, workdir) == []


def test_an_amplitude_timeout_is_504_and_refused_keys_502(
    export, simulator, plugin, workdir, serve_services, client, running
):
    simulator.faults.fail_next(504)
    timed_out = export(start="20240201", end="20240201", source="web")
    wrong = AmplitudeCredentials("api-key", "wrong-secret-77c1", running[1])
    base = serve_services(Services(amplitude=lambda _conn_id: wrong))
    refused = client.get(
        f"{base}/amplitude/export", params={"start": "20240201", "end": "20240201", "source": "web"}
    )

    assert timed_out.status_code == 504 and timed_out.json()["error"] == "Gateway Timeout"
    assert "timed out preparing the export" in timed_out.json()["detail"]
    assert refused.status_code == 502 and refused.json()["error"] == "Bad Gateway"
    assert "refused the api key / secret key" in refused.json()["detail"]
    assert "wrong-secret-77c1" not in refused.text
    assert left_behind(plugin, workdir) == []


def test_airflow_services_use_the_source_connection_and_the_workdir_variable(
    monkeypatch, serve, client, running, tmp_path
):
    simulator, base_url = running
    project = simulator.projects["mobile"]
    set_connection(
        monkeypatch,
        AMPLITUDE_MOBILE_CONN_ID,
        "http",
        host=base_url,
        login=project.api_key,
        password=project.secret_key,
    )
    monkeypatch.setenv("AIRFLOW_VAR_DWH_AMPLITUDE_WORKDIR", str(tmp_path / "exports"))
    plugin = serve(Services.from_airflow())
    base = f"{plugin.base}/amplitude/export"

    mobile = client.get(base, params={"start": "20240301", "end": "20240301", "source": "mobile"})
    web = client.get(base, params={"start": "20240301", "end": "20240301", "source": "web"})

    assert mobile.status_code == 200 and ndjson(mobile)[0] == "2024_week_9.ndjson"
    assert {event["app"] for event in ndjson(mobile)[1]} == {project.project_id}
    assert left_behind(plugin, tmp_path / "exports") == []
    assert web.status_code == 503
    assert web.json()["detail"] == "the Airflow connection 'amplitude_web' is not defined"


def test_a_client_that_hangs_up_mid_download_leaves_nothing_behind(plugin, workdir):
    """The client reads the first bytes of the archive and closes the connection. Airflow's WSGI bridge
    neither tells the app nor closes the response: the export must clean up after itself all the same."""
    with httpx.Client(headers={"Authorization": "Bearer any"}, timeout=60) as http:
        with http.stream(
            "GET",
            f"{plugin.base}/amplitude/export",
            params={"start": "20240205", "end": "20240211", "source": "web"},
        ) as response:
            assert response.status_code == 200
            first = next(response.iter_raw(64 * 1024))
            size = int(response.headers["Content-Length"])

    assert len(first) < size // 4  # most of the archive was never read
    assert left_behind(plugin, workdir) == []


def test_exports_abandoned_by_a_killed_server_are_removed_when_the_plugin_starts(
    monkeypatch, serve, tmp_path
):
    """A server killed while building an export leaves its work directory behind; the next start removes
    it, but not the export another API server worker sharing the directory is building right now."""
    workdir = tmp_path / "exports"
    monkeypatch.setenv("AIRFLOW_VAR_DWH_AMPLITUDE_WORKDIR", str(workdir))
    abandoned = workdir / "amplitude-export-k1ll3d"
    (abandoned / "2024_week_6.download.x").parent.mkdir(parents=True)
    (abandoned / "2024_week_6.download.x").write_bytes(b"\x1f\x8b" * 1000)
    unrelated = workdir / "notes.txt"
    unrelated.write_text("not an export")

    with work_directory(workdir, "amplitude-export-") as in_use:
        serve(None)  # the plugin starts in a new host app, with the Airflow Variable's work directory

        assert not abandoned.exists()
        assert in_use.is_dir()
        assert unrelated.read_text() == "not an export"
