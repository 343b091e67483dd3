"""The DWH helper's HTTP API: the parent blueprint ``/dwh-helper``, its children, and a plain Flask app.

Inside Airflow (with the FAB provider) the plugin lists :data:`api` in ``flask_blueprints`` and it
answers under ``/pluginsv2/dwh-helper/...``; registering it installs :meth:`Services.from_airflow`
in the host app. :func:`create_app` serves the same blueprint from a plain Flask app, with the
``Services`` a test or a local run hands it.

Every route of every child shares what the parent sets up: the :func:`authenticate` hook, the
request-size limit, and JSON errors ``{"error": ..., "detail": ...}`` with the right status.

Inside Airflow the host app (the FAB provider's) has HTML error pages of its own, registered by status
code, which Flask would prefer to a blueprint's handler registered by class; and it answers paths no
route matches (unknown URLs, wrong methods) before any blueprint is involved. So the parent registers
its JSON handler for every status code too, and answers the routing errors of paths under its own
prefix in JSON; Airflow's pages stay as they are everywhere else.

Adding an endpoint group (``/s3``, ``/appmetrica``, ``/amplitude``)::

    # dwh_helper/s3_blueprint.py
    s3 = Blueprint("s3", __name__, url_prefix="/s3")

    @s3.get("/objects")
    def list_objects():
        client = services().s3()   # dwh_helper.services.services
        ...

    def openapi_paths() -> dict[str, Any]:   # its operations, tagged "s3"
        ...

    # here, next to the /dwh line below, and in dwh_helper.openapi.openapi_document
    api.register_blueprint(s3)

Children must be registered here, at import time: Flask refuses new children once the parent has
been registered on an app.
"""

from __future__ import annotations

import io
import logging

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, jsonify, request
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, default_exceptions
from werkzeug.routing import RequestRedirect

from dwh_helper.amplitude_blueprint import amplitude
from dwh_helper.appmetrica_blueprint import appmetrica
from dwh_helper.auth import authenticate_request
from dwh_helper.docs_blueprint import docs
from dwh_helper.dwh_blueprint import dwh
from dwh_helper.s3_blueprint import s3
from dwh_helper.services import EXTENSION_KEY, ServiceNotConfiguredError, Services, services

log = logging.getLogger(__name__)

_DB_ERROR_DETAIL_CHARS = 500

api = Blueprint("dwh_helper", __name__, url_prefix="/dwh-helper")
api.register_blueprint(dwh)
api.register_blueprint(docs)
api.register_blueprint(s3)
api.register_blueprint(appmetrica)
api.register_blueprint(amplitude)


@api.record_once
def _install_services(state: BlueprintSetupState) -> None:
    """Give a host app without DWH helper services (Airflow's) the ones built from Airflow itself."""
    state.app.extensions.setdefault(EXTENSION_KEY, Services.from_airflow())


@api.record_once
def _answer_routing_errors_in_json(state: BlueprintSetupState) -> None:
    """Answer a request under this blueprint's prefix that matches no route (an unknown path, a wrong
    method) with JSON. The host app sees such a request before any blueprint does, so this is an
    app-wide hook, and it leaves every other path to the host app."""
    prefix = state.url_prefix or ""

    def routing_error() -> tuple[Response, int] | None:
        error = request.routing_exception
        if not isinstance(error, HTTPException) or isinstance(error, RequestRedirect):
            return None
        if request.path != prefix and not request.path.startswith(prefix + "/"):
            return None
        return json_error(error)

    state.app.before_request(routing_error)


@api.before_request
def authenticate() -> None:
    """Authentication and authorization; runs first, before every request to every child blueprint.

    Airflow checks nothing under ``/pluginsv2``, so :func:`dwh_helper.auth.authenticate_request`
    validates Airflow's JWT (``Authorization: Bearer`` or the UI's ``_token`` cookie) and raises
    ``Unauthorized`` / ``Forbidden``, which the error handlers turn into JSON 401 / 403.
    """
    authenticate_request()


@api.before_request
def limit_request_body() -> None:
    """Refuse a body over ``max_request_bytes`` by its ``Content-Length``, before anything reads it;
    and make Werkzeug's readers (``request.get_data``, form parsing) refuse a body without one (chunked
    transfer) once they have read more than the limit.

    Werkzeug reads a body without ``Content-Length`` only from a server that says it ends the input
    itself (``wsgi.input_terminated``); otherwise it reads nothing, and a chunked POST would look
    empty. Starlette's WSGI bridge, through which Airflow serves the plugin, hands over the whole
    body already read, in memory (a ``BytesIO``), but does not say so; such an input is marked here.
    """
    limit = services().settings.max_request_bytes
    # Werkzeug refuses a body without Content-Length once it has read max_content_length bytes and
    # is asked for more: one byte over the limit tells "too large" from "exactly the limit".
    request.max_content_length = limit + 1
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(
            f"The body has {request.content_length} bytes; at most {limit} are accepted."
        )
    if request.content_length is None and isinstance(request.environ["wsgi.input"], io.BytesIO):
        request.environ["wsgi.input_terminated"] = True


def json_error(exc: HTTPException) -> tuple[Response, int]:
    """Any HTTP error as ``{"error": <status phrase>, "detail": <what went wrong>}``."""
    response = jsonify(error=exc.name, detail=exc.description)
    for name, value in exc.get_headers():  # Allow (405), WWW-Authenticate (401), Retry-After, ...
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, exc.code or 500


def _not_configured(exc: ServiceNotConfiguredError) -> tuple[Response, int]:
    return jsonify(error="Service Unavailable", detail=str(exc)), 503


def _database_error(exc: sa.exc.SQLAlchemyError) -> tuple[Response, int]:
    log.exception("DWH helper: database error")
    # The driver's own message only: SQLAlchemy's would repeat the statement and every parameter.
    detail = str(getattr(exc, "orig", None) or type(exc).__name__)[:_DB_ERROR_DETAIL_CHARS]
    return jsonify(error="Database Error", detail=detail), 500


def _internal_error(exc: Exception) -> tuple[Response, int]:
    log.exception("DWH helper: unhandled error")
    return jsonify(error="Internal Server Error", detail="The error was logged by the server."), 500


api.register_error_handler(HTTPException, json_error)
for _code in default_exceptions:  # before the host app's handlers of a status code (Airflow's HTML pages)
    api.register_error_handler(_code, json_error)
api.register_error_handler(ServiceNotConfiguredError, _not_configured)
api.register_error_handler(sa.exc.SQLAlchemyError, _database_error)
api.register_error_handler(Exception, _internal_error)


def create_app(dwh_services: Services | None = None) -> Flask:
    """A plain Flask app serving :data:`api` with ``dwh_services`` (default: connection ``dwh_db``
    and default settings, no Airflow Variables). Paths outside the blueprint's routes (unknown URLs,
    wrong methods) answer JSON as well."""
    app = Flask(__name__)
    app.extensions[EXTENSION_KEY] = dwh_services or Services()
    app.register_blueprint(api)
    app.register_error_handler(HTTPException, json_error)
    return app
