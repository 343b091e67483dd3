"""The OpenAPI 3.1 document of the DWH helper, assembled: every endpoint, its parameters, bodies and errors.

Each blueprint describes its own paths beside its views (``openapi_paths`` in
``dwh_helper/*_blueprint.py``); :mod:`dwh_helper.openapi_parts` holds the shared schemas, error responses
and the row schemas generated from the table definitions that validate requests. This module only puts
them together. Limits that a deployment can change (rows per page, request size) come from the
:class:`~dwh_helper.services.Settings` in force. Errors are always ``{"error", "detail"}`` JSON; 502, 503
and 504 report the upstream (S3, AppMetrica, Amplitude) failing, missing from this deployment, or too slow.
"""

from __future__ import annotations

from typing import Any

from dwh_helper.amplitude_blueprint import openapi_paths as amplitude_paths
from dwh_helper.appmetrica_blueprint import openapi_paths as appmetrica_paths
from dwh_helper.auth import TOKEN_COOKIE
from dwh_helper.docs_blueprint import openapi_paths as docs_paths
from dwh_helper.dwh_blueprint import openapi_paths as dwh_paths
from dwh_helper.openapi_parts import TITLE, VERSION, common_schemas, error_responses, table_schemas
from dwh_helper.s3_blueprint import openapi_paths as s3_paths
from dwh_helper.services import Settings


def openapi_document(server_url: str, settings: Settings) -> dict[str, Any]:
    """The whole document, with paths relative to ``server_url`` (the ``/dwh-helper`` blueprint's
    URL as the client reaches it, e.g. ``/pluginsv2/dwh-helper`` inside Airflow)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": _DESCRIPTION},
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}, {"airflowCookie": []}],
        "tags": [
            {"name": "dwh", "description": "Read and append rows of the seven DWH tables."},
            {"name": "s3", "description": "Objects of the DWH bucket (connection `dwh_s3`)."},
            {"name": "appmetrica", "description": "AppMetrica Logs API (connection `appmetrica_api`)."},
            {
                "name": "amplitude",
                "description": "Amplitude Export API (`amplitude_web` / `amplitude_mobile`).",
            },
            {"name": "docs", "description": "This document; public."},
        ],
        "paths": {
            **dwh_paths(settings),
            **s3_paths(),
            **appmetrica_paths(settings),
            **amplitude_paths(),
            **docs_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": 'An Airflow API token: `POST /auth/token` with `{"username", "password"}`.',
                },
                "airflowCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": TOKEN_COOKIE,
                    "description": "The Airflow UI's session token; writes must come from this site's pages.",
                },
            },
            "schemas": {**common_schemas(), **table_schemas()},
            "responses": error_responses(),
        },
    }


_DESCRIPTION = """\
The DWH helper's endpoints, served by the Airflow API server under `/pluginsv2/dwh-helper`.

**Authentication.** Every operation but this document and its pages needs an Airflow user:
`Authorization: Bearer <token>` with a token from `POST /auth/token`, or the Airflow UI's session
cookie. Every operation needs a role that may read DAGs (Viewer, User, Op or Admin; not Public, not a
user without roles); writes (POST, PUT, PATCH, DELETE) need one that may edit DAGs as well (User, Op or
Admin). Writes authenticated by the cookie must come from a page of this site.

**Errors** are JSON: `{"error": "<HTTP status phrase>", "detail": "<what went wrong>"}`.
"""
