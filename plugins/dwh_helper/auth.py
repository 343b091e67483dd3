"""Who may call the DWH helper: Airflow's own users, proven by the JWT Airflow issued them.

Airflow's API server checks nothing under ``/pluginsv2`` (and ``flask_login.current_user`` is always
anonymous there), so every request to the plugin passes :func:`authenticate_request` first:

* **Credentials.** ``Authorization: Bearer <token>`` (scripts: the token comes from
  ``POST /auth/token``), else the ``_token`` cookie the Airflow UI holds after a login. No token, an
  invalid, expired, tampered or revoked one: 401 with ``WWW-Authenticate: Bearer``.
* **Reads** (GET, HEAD, OPTIONS) return warehouse rows and bucket objects and start exports with the
  stored credentials, so they take the right to read DAGs: the auth manager's
  ``is_authorized_dag(method="GET")``, the check behind Airflow's own ``GET /api/v2/dags``. Viewer, User,
  Op and Admin have it; under the FAB auth manager a user with only the Public role, or with no role
  at all (FAB's way to cut someone off, and what an LDAP/OAuth role sync leaves), has not. Else 403:
  a valid token alone proves only that the account exists.
* **Writes** (POST, PUT, PATCH, DELETE) change the warehouse and the bucket, so they take the right to
  change DAGs as well: ``is_authorized_dag(method="PUT")``, which User, Op and Admin have and Viewer
  has not (under the FAB and the Simple auth manager alike). Else 403.
* **Cross-site writes.** Airflow's CSRF protection is switched off for this blueprint (Flask-WTF
  would want a form token no API client has), so a write that rides on the cookie must prove it comes
  from a page of this site: its ``Origin`` (or, without one, its ``Referer``) must be the API server's
  own origin or the origin of ``[api] base_url``. Else 403. A browser never attaches an
  ``Authorization`` header on its own, so Bearer requests need no such check.
* **Public routes.** Views marked with :func:`public` (the OpenAPI document and its docs page) skip
  all of this: they describe the API and hold no data, like Airflow's own ``/docs``.

Each authenticated request is logged with the user's name; a token never reaches a log line, an
error message or a response.

Checking a token is a :class:`TokenValidator`. Inside Airflow that is :class:`AirflowTokenValidator`,
the default; a plain Flask app (tests, a local run) can install another with
:func:`use_token_validator`. Without either (a plain app in a process where Airflow's auth manager does
not run) every request with a token is refused with 503: the API never opens by misconfiguration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

from flask import Flask, current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, ServiceUnavailable, Unauthorized

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager

log = logging.getLogger(__name__)

#: The cookie the Airflow UI keeps its JWT in (``COOKIE_NAME_JWT_TOKEN`` of Airflow's auth managers).
TOKEN_COOKIE = "_token"
#: Methods that change data; the others only read.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Where :func:`use_token_validator` keeps an app's validator.
VALIDATOR_KEY = "dwh_helper.token_validator"
_PUBLIC_ATTRIBUTE = "dwh_helper_public"
_DEFAULT_PORTS = {"http": 80, "https": 443}

Source = Literal["bearer", "cookie"]
View = TypeVar("View", bound=Callable[..., Any])


class InvalidTokenError(Exception):
    """The token proves nothing: malformed, badly signed, expired, revoked, or its user is gone.

    The message is shown to the client, so it says what is wrong and never repeats the token.
    """


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``name`` for logs and messages, ``user`` as the validator knows it."""

    name: str
    user: Any = field(default=None, repr=False, compare=False)


class TokenValidator(Protocol):
    """Turns a token into a :class:`Principal` and says whether that principal may read and write."""

    def authenticate(self, token: str) -> Principal:
        """The token's principal; raises :class:`InvalidTokenError` when the token proves nothing."""
        ...

    def may_read(self, principal: Principal) -> bool:
        """Whether the principal may call the API at all (every request, reads included)."""
        ...

    def may_write(self, principal: Principal) -> bool:
        """Whether the principal may change data (POST, PUT, PATCH, DELETE)."""
        ...


class AirflowTokenValidator:
    """Validates the JWTs of the Airflow API server this plugin runs in, with its auth manager.

    ``get_user_from_token`` checks signature, expiry, audience and revocation (tokens of a logged-out
    session are refused) and loads the user. It is a coroutine; Flask views run in a worker thread
    of the API server with no event loop of their own, so ``asyncio.run`` drives it to the end.
    """

    def authenticate(self, token: str) -> Principal:
        import jwt

        manager = self._manager()
        try:
            user = asyncio.run(manager.get_user_from_token(token))
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("The token has expired; get a new one from /auth/token.") from None
        except jwt.InvalidTokenError:
            raise InvalidTokenError(
                "The token is not valid: malformed, badly signed, revoked, or its user no longer exists."
            ) from None
        return Principal(name=user.get_name(), user=user)

    def may_read(self, principal: Principal) -> bool:
        return self._manager().is_authorized_dag(method="GET", user=principal.user)

    def may_write(self, principal: Principal) -> bool:
        return self._manager().is_authorized_dag(method="PUT", user=principal.user)

    @staticmethod
    def _manager() -> BaseAuthManager[Any]:
        from airflow.api_fastapi.app import get_auth_manager

        try:
            return get_auth_manager()
        except RuntimeError:  # only Airflow's API server initializes it; fail closed anywhere else
            raise ServiceUnavailable(
                "Airflow's auth manager is not running in this process, so no token can be checked."
            ) from None


_AIRFLOW_VALIDATOR = AirflowTokenValidator()


def use_token_validator(app: Flask, validator: TokenValidator) -> None:
    """Make ``app`` check tokens with ``validator`` instead of Airflow's auth manager."""
    app.extensions[VALIDATOR_KEY] = validator


def public(view: View) -> View:
    """Mark a view as answering without authentication (only for what holds no data)."""
    setattr(view, _PUBLIC_ATTRIBUTE, True)
    return view


def authenticate_request() -> None:
    """Authenticate and authorize the current request, or raise 401 / 403 (see the module docstring).

    Runs before every view of the ``/dwh-helper`` blueprint and its children, after routing (unknown
    URLs and wrong methods are answered 404 / 405 without it). It returns nothing: a value returned by
    a ``before_request`` hook would become the response.
    """
    if getattr(current_app.view_functions.get(request.endpoint or ""), _PUBLIC_ATTRIBUTE, False):
        return
    token, source = _credentials()
    validator: TokenValidator = current_app.extensions.get(VALIDATOR_KEY, _AIRFLOW_VALIDATOR)
    try:
        principal = validator.authenticate(token)
    except InvalidTokenError as exc:
        log.warning("DWH helper: %s refused: invalid %s token", _request_line(), source)
        raise Unauthorized(str(exc), www_authenticate=_challenge("invalid_token")) from None
    if not validator.may_read(principal):
        log.warning("DWH helper: %s refused: %s may not read", _request_line(), principal.name)
        raise Forbidden(
            f"User {principal.name!r} may not use the DWH helper: it needs an Airflow role that may read "
            "DAGs (Viewer, User, Op or Admin)."
        )
    if request.method in WRITE_METHODS:
        if source == "cookie":
            _require_same_origin(principal)
        if not validator.may_write(principal):
            log.warning("DWH helper: %s refused: %s may not write", _request_line(), principal.name)
            raise Forbidden(
                f"User {principal.name!r} may read but not write: changes need Airflow's User, Op or "
                "Admin role (permission to edit DAGs)."
            )
    log.info("DWH helper: %s by %s (%s)", _request_line(), principal.name, source)


def _request_line() -> str:
    """Method and path as the client sent them (inside Airflow, with the ``/pluginsv2`` mount point)."""
    return f"{request.method} {request.script_root}{request.path}"


def _credentials() -> tuple[str, Source]:
    """The request's token and where it came from. An ``Authorization`` header, when present, is the
    only credential considered: a client that sends one means it, even alongside a UI cookie."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(
                "Send the token as 'Authorization: Bearer <token>'.",
                www_authenticate=_challenge("invalid_request"),
            )
        return token.strip(), "bearer"
    cookie = request.cookies.get(TOKEN_COOKIE)
    if cookie:
        return cookie, "cookie"
    raise Unauthorized(
        "Authentication required: send 'Authorization: Bearer <token>' with a token from "
        "POST /auth/token, or log in to the Airflow UI.",
        www_authenticate=_challenge(None),
    )


def _challenge(error: str | None) -> WWWAuthenticate:
    """The ``WWW-Authenticate`` header of a 401 (RFC 6750): Bearer, with the error code if any."""
    return WWWAuthenticate("Bearer", {"error": error} if error else None)


def _require_same_origin(principal: Principal) -> None:
    """Refuse a cookie-authenticated write that a page of another site may have sent."""
    claimed = request.headers.get("Origin")
    if claimed is None:  # browsers omit Origin on some same-origin requests; Referer then tells
        claimed = request.headers.get("Referer")
    origin = _origin(claimed) if claimed else None
    if origin is None or origin not in _own_origins():
        log.warning(
            "DWH helper: %s refused: cookie of %s sent from origin %r",
            _request_line(),
            principal.name,
            claimed,
        )
        raise Forbidden(
            "A write authenticated by the Airflow UI's cookie must come from a page of this site "
            "(Origin or Referer header). API clients send 'Authorization: Bearer <token>' instead."
        )


def _own_origins() -> set[str]:
    """This server's origin as the request reached it, and the public one Airflow is configured with
    (a proxy may pass another Host than the one the browser used)."""
    from airflow.configuration import conf

    origins = {_origin(f"{request.scheme}://{request.host}")}
    if base_url := conf.get("api", "base_url", fallback=""):
        origins.add(_origin(base_url))
    return {origin for origin in origins if origin is not None}


def _origin(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower-cased and without a default port; ``None`` for
    anything that is not an http(s) URL with a host (including the opaque origin ``null``)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[scheme] else "")
