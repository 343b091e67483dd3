"""Fixtures for the dwh_helper plugin: its Flask app served over real HTTP, on throwaway databases.

``serve`` works for any Flask app, so every endpoint group's tests go through real sockets::

    def test_something(serve, sqlite_dwh_engine):
        app = create_app(Services(dwh_engine=sqlite_dwh_engine, s3=lambda conn_id: fake_s3))
        base = serve(app)
        httpx.get(f"{base}/dwh-helper/s3/objects")

``dwh_engine`` runs a test on SQLite, MariaDB and PostgreSQL in turn; ``dwh_api`` serves the app
on an engine with chosen settings and returns the base URL of its ``/dwh-helper`` routes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from flask import Flask

from include.common.db import engine_for
from include.dwh.tables import create_all
from include.sandbox.http import serve_wsgi

# Airflow puts its plugins folder on sys.path; do the same so `dwh_helper` imports as it does there.
PLUGINS_DIR = str(Path(__file__).resolve().parents[2] / "plugins")
if PLUGINS_DIR not in sys.path:
    sys.path.append(PLUGINS_DIR)

from dwh_helper.app import api, create_app  # noqa: E402
from dwh_helper.auth import Principal, use_token_validator  # noqa: E402
from dwh_helper.services import Services, Settings  # noqa: E402


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """Factory: serve a Flask app on 127.0.0.1 (free port, a thread per request) and return its
    base URL, ``http://127.0.0.1:<port>``. Servers stop when the test ends."""
    with contextlib.ExitStack() as running:
        yield lambda app: running.enter_context(serve_wsgi(app))


def _engine(register: Callable[[str], str]) -> Iterator[sa.Engine]:
    engine = engine_for(register("dwh_db"))
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
    """Factory: serve ``create_app`` on ``engine`` with ``Settings(**settings)`` and return the base
    URL of the blueprint, ``http://127.0.0.1:<port>/dwh-helper``."""

    def start(engine: sa.Engine, **settings: int) -> str:
        app = create_app(Services(settings=Settings(**settings), dwh_engine=engine))
        use_token_validator(app, AnyToken())
        return serve(app) + api.url_prefix

    return start


class AnyToken:
    """A token validator that takes any Bearer token as a user who may read and write: for tests of what the
    endpoints do rather than of who may call them (that is ``test_auth.py``)."""

    def authenticate(self, token: str) -> Principal:
        return Principal(name="tester")

    def may_read(self, principal: Principal) -> bool:
        return True

    def may_write(self, principal: Principal) -> bool:
        return True


@pytest.fixture
def serve_services(serve) -> Callable[[Services], str]:
    """Factory: serve ``create_app(services)``, accepting any Bearer token (see :class:`AnyToken`),
    and return the base URL of the blueprint, ``http://127.0.0.1:<port>/dwh-helper``. Call it with
    the ``client`` fixture."""

    def start(dwh_services: Services) -> str:
        app = create_app(dwh_services)
        use_token_validator(app, AnyToken())
        return serve(app) + api.url_prefix

    return start


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """An HTTP client that sends a Bearer token, shared by a module's tests."""
    with httpx.Client(headers={"Authorization": "Bearer test-token"}, timeout=60) as http:
        yield http
