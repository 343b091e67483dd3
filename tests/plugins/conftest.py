"""Fixtures for the dwh_helper plugin: served the way Airflow's API server serves it, on throwaway databases.

``airflow api-server`` hands every plugin's Flask blueprints to the FAB provider's Flask app and mounts
that app at ``/pluginsv2`` behind Starlette's WSGI bridge (``init_flask_plugins``); the bridge reads
request bodies and runs responses its own way, and the host app has error pages of its own. So the
endpoint tests go through exactly that: Airflow's own ``init_flask_plugins`` on a FastAPI app, served
by uvicorn over real sockets. Each test gets a fresh host app with its own ``Services`` and token
validator, on a uvicorn server the session keeps (starting one per test would cost more than the
test)::

    def test_something(serve, sqlite_dwh_engine):
        plugin = serve(Services(dwh_engine=sqlite_dwh_engine, s3=lambda conn_id: store))
        httpx.get(f"{plugin.base}/s3/objects", headers={"Authorization": "Bearer any"})

``dwh_engine`` runs a test on SQLite, MariaDB and PostgreSQL in turn; ``dwh_api`` serves the plugin
on an engine with chosen settings and returns the base URL of its routes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask

from dwh_helper.app import api
from dwh_helper.auth import Principal, TokenValidator, use_token_validator
from dwh_helper.services import EXTENSION_KEY, Services, Settings
from include.common.db import engine_for
from include.dwh.config import DWH_CONN_ID
from include.dwh.schema import create_all
from sandbox.http import AsgiServer, serve_asgi

#: The plugins folder, which Airflow (and pytest's ``pythonpath``) puts on sys.path.
PLUGINS_DIR = str(Path(__file__).resolve().parents[2] / "plugins")

#: Where the API server mounts the Flask app of the plugins' blueprints.
MOUNT = "/pluginsv2"
WORKDIR_VARIABLE = "AIRFLOW_VAR_DWH_AMPLITUDE_WORKDIR"


class AnyToken:
    """A token validator that takes any Bearer token as a user who may read and write: for tests of what
    the endpoints do rather than of who may call them (that is ``test_auth.py``)."""

    def authenticate(self, token: str) -> Principal:
        return Principal(name="tester")

    def may_read(self, principal: Principal) -> bool:
        return True

    def may_write(self, principal: Principal) -> bool:
        return True


@dataclass
class PluginServer:
    """The plugin inside one host app, as the API server serves it."""

    server: AsgiServer
    flask_app: Flask

    @property
    def url(self) -> str:
        """The API server's root, ``http://127.0.0.1:<port>``."""
        return self.server.url

    @property
    def base(self) -> str:
        """The plugin's routes, ``http://127.0.0.1:<port>/pluginsv2/dwh-helper``."""
        return f"{self.server.url}{MOUNT}{api.url_prefix}"


def airflow_plugin_host(
    services: Services | None,
    validator: TokenValidator | None = AnyToken(),  # noqa: B008 - stateless
    *,
    amplitude_workdir: Path,
) -> tuple[Any, Flask]:
    """A new FastAPI app with the plugins' Flask app mounted by Airflow's own code, and that Flask app,
    given ``services`` and ``validator`` (``None`` keeps what the plugin installs in Airflow:
    ``Services.from_airflow()``, Airflow's auth manager).

    The plugin removes the abandoned Amplitude exports of its work directory when it starts: unless
    the test names one (the Variable ``dwh_amplitude_workdir``), that is ``amplitude_workdir`` rather
    than the temporary directory other processes on this machine share."""
    from airflow.api_fastapi.core_api.app import init_flask_plugins
    from fastapi import FastAPI
    from starlette.routing import Mount

    asgi_app = FastAPI()
    with pytest.MonkeyPatch.context() as patch:
        if WORKDIR_VARIABLE not in os.environ:
            patch.setenv(WORKDIR_VARIABLE, str(amplitude_workdir))
        init_flask_plugins(asgi_app)
    [mount] = [route for route in asgi_app.routes if isinstance(route, Mount) and route.path == MOUNT]
    flask_app = mount.app.app  # Mount -> WSGIMiddleware -> the FAB provider's Flask app
    if services is not None:
        flask_app.extensions[EXTENSION_KEY] = services
    if validator is not None:
        use_token_validator(flask_app, validator)
    return asgi_app, flask_app


class ServerPool:
    """uvicorn servers kept for the whole session and lent to one test at a time: a test may serve
    several host apps at once, and none pays for starting a server."""

    def __init__(self, running: contextlib.ExitStack) -> None:
        self._running = running
        self._idle: list[AsgiServer] = []
        self._lent: list[AsgiServer] = []

    def lend(self) -> AsgiServer:
        server = self._idle.pop() if self._idle else self._running.enter_context(serve_asgi(None))
        self._lent.append(server)
        return server

    def take_back(self) -> None:
        """Let every lent server finish the requests still running (a client may have hung up)."""
        while self._lent:
            server = self._lent.pop()
            server.wait_idle()
            server.app = None
            self._idle.append(server)


@pytest.fixture(scope="session")
def host_workdir(airflow_db, tmp_path_factory) -> Path:
    """What a host app needs: the migrated metadata database, and the session's own directory for
    the plugin's Amplitude exports (see :func:`airflow_plugin_host`)."""
    return tmp_path_factory.mktemp("amplitude-exports")


@pytest.fixture(scope="session")
def server_pool(host_workdir) -> Iterator[ServerPool]:
    with contextlib.ExitStack() as running:
        yield ServerPool(running)


@pytest.fixture
def serve(server_pool, host_workdir) -> Iterator[Callable[..., PluginServer]]:
    """Factory: a new host app serving the plugin with ``services`` and ``validator`` (see
    :func:`airflow_plugin_host`) on a server of its own. When the test ends, each server finishes the
    requests still running before another test gets it."""

    def start(
        services: Services | None,
        validator: TokenValidator | None = AnyToken(),  # noqa: B008 - stateless
    ) -> PluginServer:
        asgi_app, flask_app = airflow_plugin_host(services, validator, amplitude_workdir=host_workdir)
        server = server_pool.lend()
        server.app = asgi_app
        return PluginServer(server, flask_app)

    yield start
    server_pool.take_back()


def _engine(register: Callable[[str], str]) -> Iterator[sa.Engine]:
    engine = engine_for(register(DWH_CONN_ID))
    create_all(engine)  # the app would create them on first use; tests look before that
    yield engine
    engine.dispose()  # before the throwaway database is dropped


@pytest.fixture
def dwh_engine(any_db_conn) -> Iterator[sa.Engine]:
    """An engine on a new database with empty DWH tables: SQLite, MariaDB and PostgreSQL in turn."""
    yield from _engine(any_db_conn)


@pytest.fixture
def sqlite_dwh_engine(sqlite_conn) -> Iterator[sa.Engine]:
    """An engine on a new SQLite file with empty DWH tables, for what does not depend on the database."""
    yield from _engine(sqlite_conn)


@pytest.fixture
def dwh_api(serve) -> Callable[..., str]:
    """Factory: serve the plugin on ``engine`` with ``Settings(**settings)``, accepting any Bearer
    token, and return the base URL of its routes (``.../pluginsv2/dwh-helper``)."""

    def start(engine: sa.Engine, **settings: int) -> str:
        return serve(Services(settings=Settings(**settings), dwh_engine=engine)).base

    return start


@pytest.fixture
def serve_services(serve) -> Callable[[Services], str]:
    """Factory: serve the plugin with ``services``, accepting any Bearer token (see :class:`AnyToken`),
    and return the base URL of its routes. Call it with the ``client`` fixture."""
    return lambda dwh_services: serve(dwh_services).base


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """An HTTP client that sends a Bearer token, shared by a module's tests."""
    with httpx.Client(headers={"Authorization": "Bearer test-token"}, timeout=60) as http:
        yield http
