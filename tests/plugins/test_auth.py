"""Authentication and authorization of the DWH helper's endpoints, over real HTTP.

The plugin is served as the API server serves it (see ``conftest.py``). Most tests give it a token
validator of fixed tokens, so they exercise the request rules (credentials, 401/403, origins, logging)
on their own; the Airflow validator is tested against the Simple auth manager in-process here, and end
to end by ``test_plugin_api_server``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy as sa

from dwh_helper.app import api, create_app
from dwh_helper.auth import (
    TOKEN_COOKIE,
    AirflowTokenValidator,
    InvalidTokenError,
    Principal,
)
from dwh_helper.services import Services
from include.dwh.s3 import S3Store
from include.dwh.schema import events_part
from sandbox.http import serve_wsgi
from sandbox.simulators.s3 import s3_client
from tests.conftest import new_bucket
from tests.plugins.conftest import MOUNT, PluginServer

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
            raise InvalidTokenError("unknown token") from None
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
def plugin(serve: Callable[..., PluginServer], sqlite_dwh_engine: sa.Engine) -> PluginServer:
    """The plugin on SQLite, knowing the viewer and editor tokens."""
    return serve(Services(dwh_engine=sqlite_dwh_engine), TOKENS)


@pytest.fixture
def base(plugin: PluginServer) -> str:
    """The URL of the plugin's routes, ``.../pluginsv2/dwh-helper``."""
    return plugin.base


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
    assert (
        "DWH helper: GET /pluginsv2/dwh-helper/dwh/events-part refused: nobody may not read"
        in caplog.messages
    )


def write_every_way(base: str, headers: dict[str, str], key: str) -> dict[str, httpx.Response]:
    """Each write the plugin offers, on the S3 object ``key``: upload, update (PUT), patch (PATCH),
    delete."""
    url, params = f"{base}/s3", {"key": key}
    with httpx.Client(headers=headers, timeout=30) as http:
        return {
            "POST": http.post(f"{url}/upload", params=params, files={"file": ("f", b"new")}),
            "PUT": http.put(f"{url}/update", params=params, files={"file": ("f", b"put")}),
            "PATCH": http.patch(
                f"{url}/patch", params={**params, "offset": "0"}, files={"file": ("f", b"P")}
            ),
            "DELETE": http.delete(f"{url}/delete", params=params),
        }


@pytest.fixture
def bucket(s3_endpoint) -> S3Store:
    """A store on a new bucket of the local S3 server, holding ``kept.txt``."""
    store = S3Store(s3_client(s3_endpoint), new_bucket(s3_endpoint))
    store.upload("kept.txt", io.BytesIO(b"original"))
    return store


def stored(store: S3Store, key: str) -> bytes | None:
    if not store.object_info(key)["exists"]:
        return None
    with store.download(key) as opened:
        return opened.body.read()


def test_a_viewer_may_not_upload_put_patch_or_delete_and_an_editor_may(serve, sqlite_dwh_engine, bucket):
    base = serve(Services(dwh_engine=sqlite_dwh_engine, s3=lambda _conn_id: bucket), TOKENS).base

    refused = write_every_way(base, bearer(VIEWER_TOKEN), "kept.txt")
    after_viewer = stored(bucket, "kept.txt")
    done = write_every_way(base, bearer(EDITOR_TOKEN), "kept.txt")

    for method, response in refused.items():
        assert response.status_code == 403, method
        assert "'viewer' may read but not write" in response.json()["detail"], method
    assert after_viewer == b"original"
    assert {method: response.status_code for method, response in done.items()} == {
        "POST": 201,
        "PUT": 200,
        "PATCH": 200,
        "DELETE": 200,
    }
    assert stored(bucket, "kept.txt") is None


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
        pytest.param({"Referer": "{origin}/pluginsv2/dwh-helper/docs"}, id="same-origin-referer"),
        pytest.param({"Origin": "https://airflow.example.com"}, id="configured-base-url"),
        pytest.param({"Origin": "https://AIRFLOW.example.com:443"}, id="base-url-default-port"),
    ],
)
def test_a_cookie_write_from_this_site_is_accepted(plugin, base, monkeypatch, headers):
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    origin = plugin.url
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
def test_a_cookie_write_from_another_site_is_403(plugin, base, sqlite_dwh_engine, headers):
    origin = plugin.url
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


def test_the_user_is_logged_and_the_token_never(plugin, base, caplog):
    caplog.set_level(logging.DEBUG)
    origin = plugin.url

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
    path = f"{MOUNT}{api.url_prefix}/dwh/events-part"  # as the client sent it
    assert f"DWH helper: GET {path} by editor (bearer)" in messages
    assert f"DWH helper: POST {path} by editor (cookie)" in messages
    assert f"DWH helper: POST {path} refused: viewer may not write" in messages
    assert any("refused: cookie of editor sent from origin 'https://evil.example'" in m for m in messages)
    assert f"DWH helper: GET {path} refused: invalid bearer token" in messages
    assert EDITOR_TOKEN not in caplog.text
    assert VIEWER_TOKEN not in caplog.text


def test_the_openapi_document_and_its_page_are_public(base):
    document = httpx.get(f"{base}/openapi.json")
    page = httpx.get(f"{base}/docs")

    assert document.status_code == 200
    assert document.json()["servers"] == [{"url": f"{MOUNT}{api.url_prefix}"}]
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert f'"{MOUNT}{api.url_prefix}/openapi.json"' in page.text


def test_without_airflow_s_auth_manager_every_request_is_refused(sqlite_dwh_engine, monkeypatch):
    """The plain Flask app (a local run) in a process where no auth manager runs. (Airflow's host app
    creates the auth manager itself, so there the question does not arise.)"""
    from airflow.api_fastapi import app as airflow_app

    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", None)
    with serve_wsgi(create_app(Services(dwh_engine=sqlite_dwh_engine))) as url:
        base = url + api.url_prefix
        refused = httpx.get(f"{base}/dwh/events-part")
        response = httpx.get(f"{base}/dwh/events-part", headers=bearer(EDITOR_TOKEN))

    assert refused.status_code == 401
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
    _forget_jwt_keys()  # signer and validator are cached per class, with the secret of their first use
    yield manager
    _forget_jwt_keys()


def _forget_jwt_keys() -> None:
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager

    BaseAuthManager._get_token_signer.cache_clear()
    BaseAuthManager._get_token_validator.cache_clear()


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
        with pytest.raises(InvalidTokenError, match="not valid"):
            validator.authenticate(bad)
    with pytest.raises(InvalidTokenError, match="expired"):
        validator.authenticate(expired)


def test_airflow_s_viewer_may_not_write_any_way_and_its_admin_may(
    simple_auth_manager, serve, sqlite_dwh_engine, bucket
):
    """Airflow's own tokens and permission check (the Simple auth manager's viewer and admin), through
    the API server's bridge."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    base = serve(Services(dwh_engine=sqlite_dwh_engine, s3=lambda _conn_id: bucket), validator=None).base
    reader = simple_auth_manager.generate_jwt(SimpleAuthManagerUser(username="reader", role="viewer"))
    admin = simple_auth_manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))

    read = httpx.get(f"{base}/s3/objects", headers=bearer(reader))
    refused = write_every_way(base, bearer(reader), "kept.txt")
    after_viewer = stored(bucket, "kept.txt")
    done = write_every_way(base, bearer(admin), "kept.txt")

    assert read.status_code == 200 and read.json()["count"] == 1
    assert {method: response.status_code for method, response in refused.items()} == dict.fromkeys(
        ("POST", "PUT", "PATCH", "DELETE"), 403
    )
    assert after_viewer == b"original"
    assert [response.status_code for response in done.values()] == [201, 200, 200, 200]
