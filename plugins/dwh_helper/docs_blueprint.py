"""``/openapi.json`` and ``/docs``: the DWH helper's OpenAPI document and a page to read and try it.

Both are public, as Airflow's own ``/docs`` and ``/openapi.json`` are: they describe the API and hold
no data, and tools (client generators, schema checkers) can fetch the document without a token.

The document's server URL is where this request reached the blueprint (``/pluginsv2/dwh-helper``
inside Airflow, ``/dwh-helper`` in a plain Flask app), so "Try it out" calls the same server. The
page is Swagger UI, loaded from a CDN like the one of Airflow's REST API; "Try it out" works with a
token (the Authorize button) or, for a user logged in to the Airflow UI, with the UI's cookie.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, url_for
from markupsafe import escape

from dwh_helper.auth import public
from dwh_helper.openapi import TITLE, openapi_document
from dwh_helper.services import json_response, services

docs = Blueprint("docs", __name__)

SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="{swagger}/swagger-ui.css">
</head>
<body>
  <noscript>This page needs JavaScript; the API is described in <a href="{spec}">{spec}</a>.</noscript>
  <div id="swagger-ui"></div>
  <script src="{swagger}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: {spec_js}, dom_id: "#swagger-ui"}});
  </script>
</body>
</html>
"""


@docs.get("/openapi.json")
@public
def openapi_json() -> Response:
    server_url = url_for(".openapi_json").removesuffix("/openapi.json")
    return json_response(openapi_document(server_url, services().settings))


@docs.get("/docs")
@public
def docs_page() -> Response:
    spec = url_for(".openapi_json")
    # The URL goes into a script as a JSON string, with "<" escaped so it cannot close the script.
    spec_js = json.dumps(spec).replace("<", "\\u003c")
    page = _PAGE.format(title=TITLE, swagger=SWAGGER_UI, spec=escape(spec), spec_js=spec_js)
    return current_app.response_class(page, mimetype="text/html")
