"""Authentication and authorization of the DWH helper's endpoints, over real HTTP.

Most tests serve ``create_app`` with a token validator of fixed tokens, so they exercise the request
rules (credentials, 401/403, origins, logging) on their own; the Airflow validator is tested against
the Simple auth manager in-process here, and end to end by ``test_plugin_api_server``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy as sa
from dwh_helper.app import api, create_app
from dwh_helper.auth import (
    TOKEN_COOKIE,
    AirflowTokenValidator,
    InvalidToken,
    Principal,
    use_token_validator,
)
from dwh_helper.services import Services
from flask import Flask

from include.dwh.tables import events_part

VIEWER_TOKEN = "viewer-token-3b1f"  # noqa: S105 - fixed test tokens
EDITOR_TOKEN = "editor-token-9c2e"  # noqa: S105
NO_ROLE_TOKEN = "no-role-token-5d7a"  # noqa: S105
ROW = {"uuid": "u-1", "event_type": "open", "event_time": "2024-02-01 10:00:00"}


class FixedTokens:
    """A validator of fixed tokens: ``{token: (user name, may read, may write)}``."""

    def __init__(self, users: dict[str, tuple[str, bool, bool]]) -> None:
        self._users = users

    def authenticate(self, token: str) -> Principal:
        try:
            name, _, _ = self._users[token]
        except KeyError:
            raise InvalidToken("unknown token") from None
        return Principal(name=name, user=token)

    def may_read(self, principal: Principal) -> bool:
        return self._users[principal.user][1]

    def may_write(self, principal: Principal) -> bool:
        return self._users[principal.user][2]


TOKENS = FixedTokens(
    {
        VIEWER_TOKEN: ("viewer", True, False),
        EDITOR_TOKEN: ("editor", True, True),
        NO_ROLE_TOKEN: ("nobody", False, False),
    }
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def base(serve: Callable[[Flask], str], sqlite_dwh_engine: sa.Engine) -> str:
    """The ``/dwh-helper`` URL of an app on SQLite that knows the viewer and editor tokens."""
    app = create_app(Services(dwh_engine=sqlite_dwh_engine))
    use_token_validator(app, TOKENS)
    return serve(app) + api.url_prefix


def rows_in(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(events_part)).scalar_one()


def test_requests_without_credentials_are_401_in_json(base):
    for response in (
        httpx.get(f"{base}/dwh/events-part"),
        httpx.post(f"{base}/dwh/events-part", json={"data": [ROW]}),
        httpx.get(f"{base}/s3/objects"),
        httpx.delete(f"{base}/s3/delete", params={"key": "a"}),
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"] == "Unauthorized"
        assert "POST /auth/token" in response.json()["detail"]


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        ("Bearer not-a-known-token", "Bearer error=invalid_token"),
        (f"Basic {EDITOR_TOKEN}", "Bearer error=invalid_request"),
        ("Bearer", "Bearer error=invalid_request"),
        (EDITOR_TOKEN, "Bearer error=invalid_request"),
    ],
)
def test_bad_credentials_are_401(base, authorization, challenge):
    response = httpx.get(f"{base}/dwh/events-part", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == challenge
    assert EDITOR_TOKEN not in response.text


def test_an_authorization_header_wins_over_the_cookie(base):
    response = httpx.get(
        f"{base}/dwh/events-part", headers=bearer("wrong"), cookies={TOKEN_COOKIE: EDITOR_TOKEN}
    )

    assert response.status_code == 401


def test_a_viewer_reads_but_may_not_write(base, sqlite_dwh_engine):
    assert httpx.get(f"{base}/dwh/events-part", headers=bearer(VIEWER_TOKEN)).status_code == 200

    for response in (
        httpx.post(f"{base}/dwh/events-part", json={"data": [ROW]}, headers=bearer(VIEWER_TOKEN)),
        httpx.delete(f"{base}/s3/delete", params={"key": "a"}, headers=bearer(VIEWER_TOKEN)),
    ):
        assert response.status_code == 403
        assert response.json()["error"] == "Forbidden"
        assert "'viewer' may read but not write" in response.json()["detail"]
    assert rows_in(sqlite_dwh_engine) == 0


def test_a_user_who_may_not_read_dags_may_neither_read_nor_write(base, sqlite_dwh_engine, caplog):
    caplog.set_level(logging.INFO)
    for response in (
        httpx.get(f"{base}/dwh/events-part", headers=bearer(NO_ROLE_TOKEN)),
        httpx.get(f"{base}/s3/objects", headers=bearer(NO_ROLE_TOKEN)),
        httpx.post(f"{base}/dwh/events-part", json={"data": [ROW]}, headers=bearer(NO_ROLE_TOKEN)),
        httpx.delete(f"{base}/s3/delete", params={"key": "a"}, headers=bearer(NO_ROLE_TOKEN)),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "Forbidden"
        assert "'nobody' may not use the DWH helper" in response.json()["detail"]
    assert rows_in(sqlite_dwh_engine) == 0
    assert "DWH helper: GET /dwh-helper/dwh/events-part refused: nobody may not read" in caplog.messages


def test_an_editor_writes(base, sqlite_dwh_engine):
    response = httpx.post(f"{base}/dwh/events-part", json={"data": [ROW]}, headers=bearer(EDITOR_TOKEN))

    assert response.status_code == 201, response.text
    assert rows_in(sqlite_dwh_engine) == 1


def test_the_ui_cookie_authenticates_reads_from_anywhere(base):
    response = httpx.get(
        f"{base}/dwh/events-part",
        cookies={TOKEN_COOKIE: VIEWER_TOKEN},
        headers={"Origin": "https://elsewhere.example"},
    )

    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "{origin}"}, id="same-origin"),
        pytest.param({"Origin": "{origin}/"}, id="same-origin-slash"),
        pytest.param({"Referer": "{origin}/dwh-helper/docs"}, id="same-origin-referer"),
        pytest.param({"Origin": "https://airflow.example.com"}, id="configured-base-url"),
        pytest.param({"Origin": "https://AIRFLOW.example.com:443"}, id="base-url-default-port"),
    ],
)
def test_a_cookie_write_from_this_site_is_accepted(base, monkeypatch, headers):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    origin = base.removesuffix(api.url_prefix)
    headers = {name: value.format(origin=origin) for name, value in headers.items()}

    response = httpx.post(
        f"{base}/dwh/events-part", json={"data": [ROW]}, cookies={TOKEN_COOKIE: EDITOR_TOKEN}, headers=headers
    )

    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "https://evil.example"}, id="foreign-origin"),
        pytest.param({"Origin": "https://evil.example", "Referer": "{origin}/"}, id="origin-wins"),
        pytest.param({"Origin": "null"}, id="opaque-origin"),
        pytest.param({"Origin": "{origin}.evil.example"}, id="lookalike"),
        pytest.param({"Origin": "https://{host}"}, id="other-scheme"),
        pytest.param({"Referer": "https://evil.example/{origin}"}, id="foreign-referer"),
        pytest.param({}, id="neither"),
    ],
)
def test_a_cookie_write_from_another_site_is_403(base, sqlite_dwh_engine, headers):
    origin = base.removesuffix(api.url_prefix)
    host = origin.removeprefix("http://")
    headers = {name: value.format(origin=origin, host=host) for name, value in headers.items()}

    response = httpx.post(
        f"{base}/dwh/events-part", json={"data": [ROW]}, cookies={TOKEN_COOKIE: EDITOR_TOKEN}, headers=headers
    )

    assert response.status_code == 403
    assert "Authorization: Bearer" in response.json()["detail"]
    assert rows_in(sqlite_dwh_engine) == 0


def test_a_bearer_write_needs_no_origin(base):
    response = httpx.post(
        f"{base}/dwh/events-part",
        json={"data": [ROW]},
        headers={**bearer(EDITOR_TOKEN), "Origin": "https://evil.example"},
    )

    assert response.status_code == 201


def test_the_user_is_logged_and_the_token_never(base, caplog):
    caplog.set_level(logging.DEBUG)
    origin = base.removesuffix(api.url_prefix)

    httpx.get(f"{base}/dwh/events-part", headers=bearer(EDITOR_TOKEN))
    httpx.post(f"{base}/dwh/events-part", json={"data": [ROW]}, headers=bearer(VIEWER_TOKEN))
    httpx.post(
        f"{base}/dwh/events-part",
        json={"data": [ROW]},
        cookies={TOKEN_COOKIE: EDITOR_TOKEN},
        headers={"Origin": "https://evil.example"},
    )
    httpx.post(
        f"{base}/dwh/events-part",
        json={"data": [ROW]},
        cookies={TOKEN_COOKIE: EDITOR_TOKEN},
        headers={"Origin": origin},
    )
    httpx.get(f"{base}/dwh/events-part", headers=bearer(EDITOR_TOKEN + "-tampered"))

    messages = [record.getMessage() for record in caplog.records if record.name == "dwh_helper.auth"]
    assert "DWH helper: GET /dwh-helper/dwh/events-part by editor (bearer)" in messages
    assert "DWH helper: POST /dwh-helper/dwh/events-part by editor (cookie)" in messages
    assert "DWH helper: POST /dwh-helper/dwh/events-part refused: viewer may not write" in messages
    assert any("refused: cookie of editor sent from origin 'https://evil.example'" in m for m in messages)
    assert "DWH helper: GET /dwh-helper/dwh/events-part refused: invalid bearer token" in messages
    assert EDITOR_TOKEN not in caplog.text
    assert VIEWER_TOKEN not in caplog.text


def test_the_openapi_document_and_its_page_are_public(base):
    document = httpx.get(f"{base}/openapi.json")
    page = httpx.get(f"{base}/docs")

    assert document.status_code == 200
    assert document.json()["servers"] == [{"url": "/dwh-helper"}]
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert '"/dwh-helper/openapi.json"' in page.text


def test_without_airflow_s_auth_manager_every_request_is_refused(serve, sqlite_dwh_engine, monkeypatch):
    from airflow.api_fastapi import app as airflow_app

    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)
    base = serve(create_app(Services(dwh_engine=sqlite_dwh_engine))) + api.url_prefix

    assert httpx.get(f"{base}/dwh/events-part").status_code == 401
    response = httpx.get(f"{base}/dwh/events-part", headers=bearer(EDITOR_TOKEN))
    assert response.status_code == 503
    assert "auth manager" in response.json()["detail"]


def test_the_cookie_is_the_one_airflow_sets():
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    assert TOKEN_COOKIE == COOKIE_NAME_JWT_TOKEN


@pytest.fixture
def simple_auth_manager(airflow_db, monkeypatch):
    """Airflow's Simple auth manager, initialized in this process, with an admin and a viewer."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,reader:viewer")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "s" * 64)
    manager = SimpleAuthManager()
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", manager)
    return manager


def test_airflow_s_tokens_are_checked_by_its_auth_manager(simple_auth_manager):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    validator = AirflowTokenValidator()
    admin = simple_auth_manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    reader = simple_auth_manager.generate_jwt(SimpleAuthManagerUser(username="reader", role="viewer"))

    admin_principal = validator.authenticate(admin)
    reader_principal = validator.authenticate(reader)

    assert admin_principal.name == "admin"
    assert validator.may_read(admin_principal)
    assert validator.may_write(admin_principal)
    assert reader_principal.name == "reader"
    assert validator.may_read(reader_principal)
    assert not validator.may_write(reader_principal)


def test_tampered_expired_and_unsigned_tokens_are_invalid(simple_auth_manager):
    import jwt
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    validator = AirflowTokenValidator()
    user = SimpleAuthManagerUser(username="admin", role="admin")
    token = simple_auth_manager.generate_jwt(user)
    claims = jwt.decode(token, options={"verify_signature": False})
    header, payload, signature = token.split(".")
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    expired = simple_auth_manager.generate_jwt(user, expiration_time_in_seconds=-3600)

    for bad in (f"{header}.{payload}.{signature[:-4]}AAAA", unsigned, "not-a-jwt", ""):
        with pytest.raises(InvalidToken, match="not valid"):
            validator.authenticate(bad)
    with pytest.raises(InvalidToken, match="expired"):
        validator.authenticate(expired)
