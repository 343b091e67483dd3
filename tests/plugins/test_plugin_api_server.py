"""The plugin inside a real ``airflow api-server``: loaded once, served under ``/pluginsv2``, guarded by the
tokens Airflow itself issues, and allowed to each user exactly what Airflow's own API allows them.

The module's tests run twice: under the Simple auth manager (admin, user, viewer) and under the FAB auth
manager, the one docker-compose runs (Admin, User, Viewer, Public, and a user whose roles were all
removed). Each run starts one server (:mod:`tests.plugins.api_server`; 12-20 s with Simple, 15 s more
with FAB on the 2-core machine) with the repository's plugins folder, the DWH tables in a SQLite file of its own and the bucket of
a local S3 server. Also here: the docs pages in headless Chromium without internet, how the plugin fits
the FAB provider's Flask app (CSRF), and how it loads without that provider.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import resources
from urllib.parse import urljoin, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_wtf.csrf import CSRFProtect

import dwh_helper_plugin  # before any test registers the blueprint: as in Airflow, see the CSRF test
from dwh_helper.app import api
from dwh_helper.auth import use_token_validator
from dwh_helper.services import EXTENSION_KEY, Services
from include.dwh.config import AMPLITUDE_WEB_CONN_ID, DWH_CONN_ID, S3_CONN_ID
from include.dwh.schema import events_part
from sandbox.simulators.amplitude import AmplitudeSimulator
from sandbox.simulators.s3 import airflow_connection
from tests.conftest import connection_env, new_bucket
from tests.headless_chromium import render
from tests.plugins.api_server import FAB_USERS, SIMPLE_USERS, ApiServer, AuthSetup, running_api_server
from tests.plugins.conftest import PLUGINS_DIR, AnyToken

PREFIX = "/pluginsv2/dwh-helper"
ROW = {"uuid": "u-1", "event_type": "open", "event_time": "2024-02-01 10:00:00"}
SEED_KEY = "shared/seed.txt"
SEED = b"written by an admin"
#: What Airflow's roles may do, by the user names of SIMPLE_USERS and FAB_USERS.
READERS = {"admin", "user", "viewer"}
AMPLITUDE_DATA_UNTIL = dt.datetime(2024, 3, 31, 23)
WRITERS = {"admin", "user"}


@pytest.fixture(scope="module")
def bucket(s3_endpoint) -> str:
    return new_bucket(s3_endpoint)


@pytest.fixture(scope="module")
def amplitude() -> Iterator[tuple[AmplitudeSimulator, str]]:
    simulator = AmplitudeSimulator(events_per_hour=6, parts_per_hour=3, data_until=AMPLITUDE_DATA_UNTIL)
    with simulator.serve() as base_url:
        yield simulator, base_url


@pytest.fixture(scope="module", params=[SIMPLE_USERS, FAB_USERS], ids=lambda auth: auth.manager)
def server(request, airflow_db, tmp_path_factory, s3_endpoint, bucket, amplitude) -> Iterator[ApiServer]:
    auth: AuthSetup = request.param
    home = tmp_path_factory.mktemp(f"api-server-{auth.manager}")
    (home / "tmp").mkdir()
    s3 = airflow_connection(s3_endpoint, bucket)
    simulator, amplitude_url = amplitude
    project = simulator.projects["web"]
    amplitude_address = urlsplit(amplitude_url)
    env = {
        "TMPDIR": str(home / "tmp"),
        **connection_env(DWH_CONN_ID, "sqlite", host=str(home / "dwh.sqlite")),
        **connection_env(S3_CONN_ID, s3.pop("conn_type"), **s3),
        **connection_env(
            AMPLITUDE_WEB_CONN_ID,
            "http",
            host=amplitude_address.hostname,
            port=amplitude_address.port,
            login=project.api_key,
            password=project.secret_key,
        ),
    }
    with running_api_server(home, airflow_db / "airflow.db", auth, env=env) as running:
        running.expect(
            running.request("POST", f"{PREFIX}/s3/upload?key={SEED_KEY}", user="admin", files={"file": SEED}),
            201,
        )
        yield running


def stored_rows(server: ApiServer, uuid: str) -> int:
    engine = sa.create_engine(f"sqlite:///{server.home / 'dwh.sqlite'}")
    try:
        with engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(events_part).where(events_part.c.uuid == uuid)
            return conn.execute(query).scalar_one()
    finally:
        engine.dispose()


def stored_object(server: ApiServer, key: str) -> bytes | None:
    """The object's bytes as an admin downloads them, or None when there is no such object."""
    response = server.request("GET", f"{PREFIX}/s3/download", params={"key": key}, user="admin")
    if response.status_code == 404:
        return None
    return server.expect(response, 200).content


def airflow_reads(server: ApiServer, user: str) -> int:
    """Airflow's answer to ``user`` listing DAGs: the same ``is_authorized_dag(method="GET")`` check."""
    return server.request("GET", "/api/v2/dags", params={"limit": 1}, user=user).status_code


def airflow_writes(server: ApiServer, user: str) -> int:
    """Airflow's answer to ``user`` pausing DAGs (``is_authorized_dag(method="PUT")``). Without a
    ``dag_id_pattern`` the PATCH matches no DAG, so an allowed user changes nothing."""
    return server.request("PATCH", "/api/v2/dags", json={"is_paused": False}, user=user).status_code


def test_the_plugin_is_loaded_once_with_its_blueprint_and_its_docs_page_in_the_menu(server):
    plugins = server.expect(server.request("GET", "/api/v2/plugins", user="admin"), 200).json()["plugins"]
    errors = server.expect(server.request("GET", "/api/v2/plugins/importErrors", user="admin"), 200).json()

    ours = [plugin for plugin in plugins if plugin["name"] == "dwh_helper"]
    assert len(ours) == 1, plugins
    assert ours[0]["flask_blueprints"] == [
        "<flask.blueprints.Blueprint: name='dwh_helper' import_name='dwh_helper.app'>"
    ]
    [view] = ours[0]["external_views"]
    assert {name: view[name] for name in dwh_helper_plugin.DOCS_VIEW} == dwh_helper_plugin.DOCS_VIEW
    assert view["category"] == "docs" and view["destination"] == "nav"
    assert errors["total_entries"] == 0, errors
    # The UI frames the view's href resolved against its <base href>: that must be the docs page.
    ui = server.expect(server.request("GET", "/"), 200).text
    base = re.search(r'<base href="([^"]*)"', ui).group(1)
    page = server.expect(server.request("GET", urlsplit(urljoin(server.url + base, view["href"])).path), 200)
    assert "SwaggerUIBundle" in page.text


def test_airflow_s_own_api_allows_each_role_what_its_documentation_says(server):
    """The reference the next two tests compare the plugin with, pinned: so they cannot pass because
    every user is refused (or allowed) everything."""
    answers = {
        user: (airflow_reads(server, user), airflow_writes(server, user)) for user in server.auth.users
    }

    assert answers == {
        user: (200 if user in READERS else 403, 200 if user in WRITERS else 403) for user in server.auth.users
    }


def test_reads_need_the_right_to_read_dags_as_airflow_s_api_does(server):
    reads = [
        ("GET", f"{PREFIX}/dwh/events-part", {}),
        ("GET", f"{PREFIX}/s3/objects", {}),
        ("GET", f"{PREFIX}/s3/object-info", {"key": SEED_KEY}),
        ("GET", f"{PREFIX}/s3/download", {"key": SEED_KEY}),
    ]
    observed, expected = {}, {}
    for user in server.auth.users:
        allowed = airflow_reads(server, user) == 200
        responses = [server.request(method, path, params=params, user=user) for method, path, params in reads]
        observed[user] = [response.status_code for response in responses]
        expected[user] = [200 if allowed else 403] * len(reads)
        if not allowed:
            assert all(f"{user!r} may not use the DWH helper" in r.json()["detail"] for r in responses)

    assert observed == expected
    assert stored_object(server, SEED_KEY) == SEED


def test_without_the_right_to_read_dags_no_operation_answers(server):
    """Every GET of the OpenAPI document but the public ones, exports included (they would spend the
    stored AppMetrica and Amplitude credentials), is 403 for users Airflow refuses to list DAGs to."""
    document = server.expect(server.request("GET", f"{PREFIX}/openapi.json"), 200).json()
    paths = [
        path.replace("{table}", "events-part")
        for path, item in document["paths"].items()
        if "get" in item and item["get"].get("security") != []
    ]
    refused_users = [user for user in server.auth.users if airflow_reads(server, user) == 403]
    assert len(paths) >= 7 and {"/appmetrica/fetch-export", "/amplitude/export"} <= set(paths)
    assert refused_users == [user for user in server.auth.users if user not in READERS]

    answers = {
        (user, path): server.request("GET", PREFIX + path, user=user).status_code
        for user in refused_users
        for path in paths
    }

    assert answers == dict.fromkeys(answers, 403)


def test_writes_need_the_right_to_edit_dags_as_airflow_s_api_does(server):
    """POST, PUT, PATCH, DELETE per user. Those Airflow lets pause DAGs go through a whole object's
    life; the others are refused on the admin's object, which stays as it was."""
    observed, expected = {}, {}
    for user in server.auth.users:
        key = f"by/{server.auth.manager}-{user}.txt"
        uuid = f"{server.auth.manager}-{user}"
        allowed = airflow_writes(server, user) == 200
        target = key if allowed else SEED_KEY

        def send(method: str, path: str, content: bytes | None = None, user=user, **params):
            files = {"file": content} if content is not None else None
            return server.request(method, f"{PREFIX}{path}", params=params, files=files, user=user)

        responses = [
            server.request(
                "POST", f"{PREFIX}/dwh/events-part", json={"data": [{**ROW, "uuid": uuid}]}, user=user
            ),
            send("POST", "/s3/upload", b"first version", key=key),
            send("PUT", "/s3/update", b"second version", key=target),
            send("PATCH", "/s3/patch", b"S", key=target, offset=0),
        ]
        patched = stored_object(server, target)
        responses.append(send("DELETE", "/s3/delete", key=target))
        stored = [stored_rows(server, uuid), patched, stored_object(server, key)]
        observed[user] = [r.status_code for r in responses] + stored
        expected[user] = (
            [201, 201, 200, 200, 200, 1, b"Second version", None] if allowed else [403] * 5 + [0, SEED, None]
        )
        if not allowed:
            detail = (
                "may read but not write"
                if airflow_reads(server, user) == 200
                else "may not use the DWH helper"
            )
            assert all(f"{user!r} {detail}" in r.json()["detail"] for r in responses)

    assert observed == expected
    assert stored_object(server, SEED_KEY) == SEED


def test_requests_without_a_valid_token_are_401(server):
    anonymous = server.expect(server.request("GET", f"{PREFIX}/dwh/events-part"), 401)
    forged = server.request("GET", f"{PREFIX}/dwh/events-part", headers={"Authorization": "Bearer x.y.z"})

    assert anonymous.json()["error"] == "Unauthorized"
    server.expect(forged, 401)


def test_the_ui_cookie_writes_only_from_this_site(server):
    path = f"{PREFIX}/dwh/events-part"
    cookie = {"_token": server.tokens["admin"]}

    foreign = server.request(
        "POST", path, cookies=cookie, headers={"Origin": "https://evil.example"}, json={"data": [ROW]}
    )
    own = server.request("POST", path, cookies=cookie, headers={"Origin": server.url}, json={"data": [ROW]})

    server.expect(foreign, 403)
    server.expect(own, 201)  # and not 400: the FAB app's CSRF check is off for the plugin's blueprints


class _Links(HTMLParser):
    """Every ``src`` and ``href`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href"} and value]


def test_the_docs_pages_load_everything_from_the_plugin_without_a_token(server):
    document = server.expect(server.request("GET", f"{PREFIX}/openapi.json"), 200).json()
    assert document["servers"] == [{"url": PREFIX}]
    assert "/dwh/{table}" in document["paths"]

    for page_path in (f"{PREFIX}/docs", f"{PREFIX}/redoc"):
        page = server.expect(server.request("GET", page_path), 200)
        links = _Links()
        links.feed(page.text)
        policy = page.headers["Content-Security-Policy"]

        assert f'"{PREFIX}/openapi.json"' in page.text
        assert "default-src 'self'" in policy and "img-src 'self' data:" in policy and "http" not in policy
        assert links.urls and all(url.startswith(f"{PREFIX}/") for url in links.urls), links.urls
        for url in links.urls:
            asset = server.expect(server.request("GET", url), 200)
            if url.split("?")[0].endswith(".css"):
                referenced = re.findall(r"url\(\s*['\"]?([^'\")]+)", asset.text) + re.findall(
                    r"@import", asset.text
                )
                assert all(ref.startswith("data:") for ref in referenced), referenced


def test_the_docs_assets_are_the_pinned_packages_files(server):
    files = {
        "swagger-ui-bundle.js": resources.files("flask_swagger_ui") / "dist" / "swagger-ui-bundle.js",
        "swagger-ui.css": resources.files("flask_swagger_ui") / "dist" / "swagger-ui.css",
        "redoc.standalone.js": resources.files("flask_openapi_redoc")
        / "templates/redoc/js/redoc.standalone.js",
    }
    for name, packaged in files.items():
        served = server.expect(server.request("GET", f"{PREFIX}/docs/assets/{name}"), 200)
        assert served.content == packaged.read_bytes(), name
    server.expect(server.request("GET", f"{PREFIX}/docs/assets/index.html"), 404)


def test_swagger_ui_and_redoc_render_every_operation_in_a_browser_without_internet(server, tmp_path):
    document = server.expect(server.request("GET", f"{PREFIX}/openapi.json"), 200).json()
    operations = {
        (method.upper(), path, item[method]["operationId"])
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }

    swagger = render(f"{server.url}{PREFIX}/docs", tmp_path / "swagger")
    redoc = render(f"{server.url}{PREFIX}/redoc", tmp_path / "redoc")

    shown = set(re.findall(r'opblock-summary-method">(\w+)</span>.*?data-path="([^"]+)"', swagger.dom, re.S))
    assert shown == {(method, path) for method, path, _ in operations}
    anchors = set(re.findall(r'href="#tag/\w+/operation/(\w+)"', redoc.dom))
    assert anchors == {operation_id for _, _, operation_id in operations}
    for page in (swagger, redoc):
        assert f"{server.url}{PREFIX}/openapi.json" in page.requests, page.requests
        assert all(url.startswith(f"{server.url}/") for url in page.requests), page.requests


def test_a_week_s_amplitude_export_leaves_the_server_s_temporary_directory_empty(server):
    """The export is built under the server's ``TMPDIR`` and streamed through Starlette's WSGI bridge,
    which never calls the response's ``close()``: the files must go all the same, and none may stay
    open in the server's processes (a removed file still holds its disk space)."""
    response = server.expect(
        server.request(
            "GET",
            f"{PREFIX}/amplitude/export",
            user="viewer",
            params={"start": "20240304", "end": "20240310", "source": "web"},
        ),
        200,
    )
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        [name] = archive.namelist()
        events = archive.read(name).splitlines()
    assert name == "2024_week_10.ndjson" and len(events) == 7 * 24 * 6
    tmp = server.home / "tmp"
    assert [path.name for path in tmp.iterdir() if path.name.startswith("amplitude")] == []
    assert [target for target in open_files(server) if target.startswith(f"{tmp}{os.sep}")] == []


def open_files(server: ApiServer) -> list[str]:
    """The files the server's processes (its own process group) hold open."""
    group = os.getpgid(server.pid)
    targets = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.getpgid(int(pid)) != group:
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone meanwhile
            continue
        for fd in fds:
            try:
                targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
    return targets


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


#: Imports the plugin module in a fresh interpreter, optionally with ``airflow.providers.fab`` made
#: unimportable, runs ``on_load`` as Airflow does, and prints what Airflow would see of the plugin.
#: Airflow itself is imported first: it reads every installed provider's metadata on import, which an
#: uninstalled provider would not have. Then the FAB modules it loaded are dropped and a finder answers
#: "no such module" for them before the real finders look, as for a provider that is not installed.
_LOAD_PLUGIN = """
import importlib.abc, json, logging, sys
import airflow.plugins_manager

class NoFabProvider(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "airflow.providers.fab" or name.startswith("airflow.providers.fab."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

if sys.argv[1] == "without-fab":
    for name in [name for name in sys.modules if name.startswith("airflow.providers.fab")]:
        del sys.modules[name]
    sys.meta_path.insert(0, NoFabProvider())
    try:
        import airflow.providers.fab
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("the FAB provider is still importable")

class Collect(logging.Handler):
    records = []
    def emit(self, record):
        self.records.append((record.levelname, record.getMessage()))

logging.getLogger("dwh_helper_plugin").addHandler(Collect())
from dwh_helper_plugin import DwhHelperPlugin
DwhHelperPlugin.on_load()
print(json.dumps({
    "flask_blueprints": [blueprint.name for blueprint in DwhHelperPlugin.flask_blueprints],
    "external_views": [view["href"] for view in DwhHelperPlugin.external_views],
    "log": Collect.records,
}))
"""


def _load_plugin(*modes: str) -> list[dict]:
    """What :data:`_LOAD_PLUGIN` prints in each mode; the interpreters run side by side."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([PLUGINS_DIR, os.environ["PYTHONPATH"]])}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _LOAD_PLUGIN, mode],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in modes
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-4000:]
    return [json.loads(stdout.splitlines()[-1]) for stdout, _ in outputs]


def test_without_the_fab_provider_the_plugin_loads_and_serves_nothing():
    without, with_fab = _load_plugin("without-fab", "with-fab")

    assert without["flask_blueprints"] == [] and without["external_views"] == []
    assert [level for level, _ in without["log"]] == ["WARNING"]
    assert "pip install apache-airflow-providers-fab" in without["log"][0][1]
    assert with_fab == {
        "flask_blueprints": ["dwh_helper"],
        "external_views": ["pluginsv2/dwh-helper/docs"],
        "log": [],
    }
