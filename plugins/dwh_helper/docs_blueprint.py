"""``/openapi.json``, ``/docs`` and ``/redoc``: the DWH helper's OpenAPI document and two pages to read it.

All are public, as Airflow's own ``/docs`` and ``/openapi.json`` are: they describe the API and hold
no data, and tools (client generators, schema checkers) can fetch the document without a token.

The document's server URL is where this request reached the blueprint (``/pluginsv2/dwh-helper``
inside Airflow, ``/dwh-helper`` in a plain Flask app), so "Try it out" calls the same server.
``/docs`` is Swagger UI ("Try it out" works with a token from the Authorize button or, for a user
logged in to the Airflow UI, with the UI's cookie); ``/redoc`` is ReDoc, the original service's reading
view. Data platforms often have no internet, so both pages load everything from this blueprint: the
Swagger UI and ReDoc files come from the pinned ``flask-swagger-ui`` and ``flask-openapi-redoc``
packages, and each page's Content-Security-Policy lets the browser fetch nothing from another origin
(Swagger UI's validator badge and ReDoc's footer logo would otherwise reach for the internet).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, send_from_directory, url_for
from markupsafe import escape
from werkzeug.exceptions import NotFound

from dwh_helper.auth import public
from dwh_helper.http_io import json_response
from dwh_helper.openapi_parts import TITLE, errors
from dwh_helper.services import services

docs = Blueprint("docs", __name__)


def _package_dir(package: str, *parts: str) -> Path:
    return Path(str(resources.files(package).joinpath(*parts)))


@dataclass(frozen=True)
class Asset:
    """A file the pages load: the distribution that ships it, its folder there, and its media type."""

    distribution: str
    directory: Path
    mimetype: str


_SWAGGER_UI = _package_dir("flask_swagger_ui", "dist")
#: The files the pages load, by the name they are served under (``/docs/assets/<name>``).
ASSETS = {
    "swagger-ui-bundle.js": Asset("flask-swagger-ui", _SWAGGER_UI, "text/javascript"),
    "swagger-ui.css": Asset("flask-swagger-ui", _SWAGGER_UI, "text/css"),
    "redoc.standalone.js": Asset(
        "flask-openapi-redoc",
        _package_dir("flask_openapi_redoc", "templates", "redoc", "js"),
        "text/javascript",
    ),
}
ASSET_MAX_AGE_S = 86_400  # the URL carries the package's version, so an upgrade is never served stale

#: Same origin only. Scripts: the served files plus the page's own inline start-up script (by nonce);
#: styles inline too (both UIs set element styles); images also as data: URIs (Swagger UI's icons);
#: ReDoc runs its search in a worker built from a blob. Framing by the Airflow UI (same origin) only.
_POLICY = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'self'"
)

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{css}">
</head>
<body>
  <noscript>This page needs JavaScript; the API is described in <a href="{spec}">{spec}</a>.</noscript>
  <div id="swagger-ui"></div>
  <script src="{bundle}"></script>
  <script nonce="{nonce}">
    window.ui = SwaggerUIBundle({{url: {spec_js}, dom_id: "#swagger-ui", validatorUrl: null}});
  </script>
</body>
</html>
"""

_REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
</head>
<body style="margin: 0">
  <noscript>This page needs JavaScript; the API is described in <a href="{spec}">{spec}</a>.</noscript>
  <div id="redoc"></div>
  <script src="{bundle}"></script>
  <script nonce="{nonce}">
    Redoc.init({spec_js}, {{}}, document.getElementById("redoc"));
  </script>
</body>
</html>
"""


@docs.get("/openapi.json")
@public
def openapi_json() -> Response:
    server_url = url_for(".openapi_json").removesuffix("/openapi.json")
    from dwh_helper.openapi import openapi_document  # it assembles this module's paths too

    return json_response(openapi_document(server_url, services().settings))


@docs.get("/docs")
@public
def docs_page() -> Response:
    return _page(_SWAGGER_PAGE, css=_asset_url("swagger-ui.css"), bundle=_asset_url("swagger-ui-bundle.js"))


@docs.get("/redoc")
@public
def redoc_page() -> Response:
    return _page(_REDOC_PAGE, bundle=_asset_url("redoc.standalone.js"))


@docs.get("/docs/assets/<name>")
@public
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"No documentation asset {name!r}.")
    found = ASSETS[name]
    return send_from_directory(found.directory, name, mimetype=found.mimetype, max_age=ASSET_MAX_AGE_S)


def _asset_url(name: str) -> str:
    return url_for(".asset", name=name, v=metadata.version(ASSETS[name].distribution))


def _page(template: str, **urls: str) -> Response:
    spec = url_for(".openapi_json")
    # The URL goes into a script as a JSON string, with "<" escaped so it cannot close the script.
    spec_js = json.dumps(spec).replace("<", "\\u003c")
    nonce = secrets.token_urlsafe(16)
    page = template.format(
        title=TITLE,
        spec=escape(spec),
        spec_js=spec_js,
        nonce=nonce,
        **{key: escape(url) for key, url in urls.items()},
    )
    response = current_app.response_class(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = _POLICY.format(nonce=nonce)
    return response


# ------------------------------------------------------------------------------------------ OpenAPI


def openapi_paths() -> dict[str, Any]:
    from dwh_helper.docs_blueprint import ASSETS  # here: that module imports this one

    return {
        "/openapi.json": {
            "get": {
                "tags": ["docs"],
                "operationId": "openapiDocument",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {"description": "The OpenAPI document.", "content": {"application/json": {}}}
                },
            }
        },
        "/docs": {
            "get": {
                "tags": ["docs"],
                "operationId": "docsPage",
                "summary": "This document, readable and to try out (Swagger UI)",
                "security": [],
                "responses": {"200": {"description": "An HTML page.", "content": {"text/html": {}}}},
            }
        },
        "/redoc": {
            "get": {
                "tags": ["docs"],
                "operationId": "redocPage",
                "summary": "This document, readable (ReDoc)",
                "security": [],
                "responses": {"200": {"description": "An HTML page.", "content": {"text/html": {}}}},
            }
        },
        "/docs/assets/{name}": {
            "get": {
                "tags": ["docs"],
                "operationId": "docsAsset",
                "summary": "A script or style sheet of the docs pages (served here: no CDN)",
                "security": [],
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": sorted(ASSETS)},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            mimetype: {} for mimetype in sorted({a.mimetype for a in ASSETS.values()})
                        },
                    },
                    **errors("NotFound"),
                },
            }
        },
    }
