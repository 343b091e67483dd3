"""The plugin inside a real ``airflow api-server``: loaded once, served under ``/pluginsv2``, and guarded
by the tokens Airflow itself issues (the Simple auth manager's, with an admin and a viewer). Also how the
plugin fits the FAB provider's Flask app (CSRF) and copes without it.

One server is started for the module (about 15 s), on a free port, with the repository's plugins folder
and the test metadata database; the DWH tables live in a SQLite file of the module's own
(``AIRFLOW_CONN_DWH_DB``). Its output goes to a file whose tail every failure message carries.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dwh_helper_plugin  # before any test registers the blueprint: as in Airflow, see the CSRF test
import httpx
import pytest
import sqlalchemy as sa
from dwh_helper.app import api
from dwh_helper.auth import use_token_validator
from dwh_helper.services import EXTENSION_KEY, Services
from flask import Flask
from flask_wtf.csrf import CSRFProtect

from include.dwh.tables import events_part
from tests.plugins.conftest import AnyToken

STARTUP_TIMEOUT_S = 60.0
PREFIX = "/pluginsv2/dwh-helper"
ROW = {"uuid": "u-1", "event_type": "open", "event_time": "2024-02-01 10:00:00"}
USERS = {"admin": "admin", "viewer": "viewer"}  # name -> Simple auth manager role


@dataclass
class Server:
    url: str
    log: Path
    dwh_file: Path
    tokens: dict[str, str]

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def request(self, method: str, path: str, *, user: str | None = None, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def expect(self, response: httpx.Response, status: int) -> httpx.Response:
        assert response.status_code == status, (
            f"{response.request.method} {response.request.url.path} answered {response.status_code}, "
            f"expected {status}: {response.text[:500]}\n--- API server log tail ---\n{self.tail()}"
        )
        return response


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"airflow api-server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"airflow api-server not healthy after {STARTUP_TIMEOUT_S:.0f} s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and the workers it forked (its own process group, started by this module)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def server(airflow_db, tmp_path_factory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("api-server")
    passwords = {name: secrets.token_urlsafe(12) for name in USERS}
    passwords_file = home / "passwords.json"
    passwords_file.write_text(json.dumps(passwords))
    dwh_file = home / "dwh.sqlite"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{r}" for n, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # the plugin logs each caller at INFO
        "AIRFLOW_CONN_DWH_DB": json.dumps({"conn_type": "sqlite", "host": str(dwh_file)}),
    }
    log = home / "api-server.log"
    airflow = Path(sys.executable).with_name("airflow")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(airflow), "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_healthy(process, url, log)
        tokens = {}
        for name, password in passwords.items():
            response = httpx.post(
                f"{url}/auth/token", json={"username": name, "password": password}, timeout=30
            )
            assert response.status_code == 201, (
                f"no token for {name}: {response.text}\n{log.read_text()[-4000:]}"
            )
            tokens[name] = response.json()["access_token"]
        yield Server(url=url, log=log, dwh_file=dwh_file, tokens=tokens)
    finally:
        _stop(process)


def test_the_plugin_is_loaded_once_with_its_blueprint(server):
    plugins = server.expect(server.request("GET", "/api/v2/plugins", user="admin"), 200).json()["plugins"]
    errors = server.expect(server.request("GET", "/api/v2/plugins/importErrors", user="admin"), 200).json()

    ours = [plugin for plugin in plugins if plugin["name"] == "dwh_helper"]
    assert len(ours) == 1, plugins
    assert ours[0]["flask_blueprints"] == [
        "<flask.blueprints.Blueprint: name='dwh_helper' import_name='dwh_helper.app'>"
    ]
    assert errors["total_entries"] == 0, errors


def test_reads_need_a_token_and_any_user_may_read(server):
    anonymous = server.expect(server.request("GET", f"{PREFIX}/dwh/events-part"), 401)
    forged = server.request("GET", f"{PREFIX}/dwh/events-part", headers={"Authorization": "Bearer x.y.z"})

    assert anonymous.json()["error"] == "Unauthorized"
    server.expect(forged, 401)
    read = server.expect(server.request("GET", f"{PREFIX}/dwh/events-part", user="viewer"), 200)
    assert set(read.json()) == {"rows", "count"}


def test_a_viewer_may_not_write_and_an_admin_may(server):
    path = f"{PREFIX}/dwh/events-part"
    refused = server.expect(server.request("POST", path, user="viewer", json={"data": [ROW]}), 403)
    written = server.expect(server.request("POST", path, user="admin", json={"data": [ROW, ROW]}), 201)

    assert "'viewer' may read but not write" in refused.json()["detail"]
    assert written.json()["count"] == 2
    engine = sa.create_engine(f"sqlite:///{server.dwh_file}")
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.select(events_part.c.id, events_part.c.uuid)).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in stored] == [(i, "u-1") for i in written.json()["inserted_ids"]]


def test_the_ui_cookie_writes_only_from_this_site(server):
    path = f"{PREFIX}/dwh/events-part"
    cookie = {"_token": server.tokens["admin"]}

    foreign = server.request(
        "POST", path, cookies=cookie, headers={"Origin": "https://evil.example"}, json={"data": [ROW]}
    )
    own = server.request("POST", path, cookies=cookie, headers={"Origin": server.url}, json={"data": [ROW]})

    server.expect(foreign, 403)
    server.expect(own, 201)  # and not 400: the FAB app's CSRF check is off for the plugin's blueprints


def test_the_openapi_document_and_its_page_are_served_without_a_token(server):
    document = server.expect(server.request("GET", f"{PREFIX}/openapi.json"), 200).json()
    page = server.expect(server.request("GET", f"{PREFIX}/docs"), 200)

    assert document["servers"] == [{"url": PREFIX}]
    assert "/dwh/{table}" in document["paths"]
    assert f'"{PREFIX}/openapi.json"' in page.text


def test_the_server_log_names_the_user_and_holds_no_token(server):
    server.expect(server.request("GET", f"{PREFIX}/dwh/events-part", user="admin"), 200)

    log = server.log.read_text(errors="replace")
    assert "DWH helper: GET /pluginsv2/dwh-helper/dwh/events-part by admin (bearer)" in log, server.tail()
    for name, token in server.tokens.items():
        assert token not in log, f"the token of {name} is in the server log"
        assert token.split(".")[2] not in log, f"the signature of {name}'s token is in the server log"


def test_the_plugin_exempts_its_blueprints_from_csrf_and_nothing_else(sqlite_dwh_engine, caplog):
    """The FAB provider's Flask app checks a CSRF token on every write (Flask-WTF); the plugin exempts
    the DWH helper's blueprint and each child (Flask-WTF compares a view's own blueprint), only them.
    The plugin module is imported at the top of this file: like Airflow, it must hook into ``api``
    before an app registers it, and tests register it only after collection."""
    app = Flask(__name__)
    app.secret_key = "test"
    CSRFProtect(app)
    app.extensions[EXTENSION_KEY] = Services(dwh_engine=sqlite_dwh_engine)
    use_token_validator(app, AnyToken())
    app.register_blueprint(api)
    app.add_url_rule("/other", "other", lambda: "written", methods=["POST"])
    client = app.test_client()

    written = client.post(
        "/dwh-helper/dwh/events-part", json={"data": [ROW]}, headers={"Authorization": "Bearer t"}
    )
    other = client.post("/other")

    assert written.status_code == 201, written.get_data(as_text=True)
    assert other.status_code == 400
    assert b"CSRF" in other.data


def test_without_the_fab_provider_the_plugin_loads_and_serves_nothing(monkeypatch, caplog):
    monkeypatch.setattr(dwh_helper_plugin.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(
        dwh_helper_plugin.DwhHelperPlugin,
        "flask_blueprints",
        [api] if dwh_helper_plugin._fab_installed() else [],
    )

    dwh_helper_plugin.DwhHelperPlugin.on_load()

    assert dwh_helper_plugin.DwhHelperPlugin.flask_blueprints == []
    assert "pip install apache-airflow-providers-fab" in caplog.text
