"""The OpenAPI 3.1 document of the DWH helper: every endpoint, its parameters, bodies and errors.

The rows of the ``/dwh/<table>`` endpoints are not written out here: their schemas are generated from
:func:`include.dwh.validation.column_rules` (required, type, length, integer range) and the column
comments of :mod:`include.dwh.schema`, the same rules the endpoint enforces, so a column added to a
table is documented the moment it is accepted. Limits that a deployment can change (rows per page,
request size) come from the :class:`~dwh_helper.services.Settings` in force.

The S3, AppMetrica and Amplitude operations describe the contracts of :mod:`include.dwh.s3`,
:mod:`include.dwh.appmetrica` and :mod:`include.dwh.amplitude`, in the response shapes of
the DWH helper service. Errors are always ``{"error", "detail"}`` JSON; 502, 503 and 504 report the upstream
(S3, AppMetrica, Amplitude) failing, missing from this deployment, or too slow.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from dwh_helper.auth import TOKEN_COOKIE
from dwh_helper.http_io import MAX_OFFSET
from dwh_helper.services import Settings
from include.dwh.amplitude import MAX_RANGE_DAYS
from include.dwh.appmetrica import POLL_INTERVAL_RANGE, POLL_TIMEOUT_RANGE
from include.dwh.s3 import MAX_LIST_KEYS
from include.dwh.s3_keys import MAX_KEY_BYTES
from include.dwh.schema import TABLES
from include.dwh.validation import ColumnRule, column_rules

Schema = dict[str, Any]

TITLE = "DWH helper"
VERSION = "1.0.0"

#: What ``datetime.fromisoformat`` reads in the forms the DWH sees (Amplitude's ``2024-02-01
#: 10:00:00.123456``, RFC 3339 with ``T`` and an offset or ``Z``); digits are ASCII on purpose.
TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?$"
)
#: The largest offset a database takes (a signed 64-bit integer, BIGINT everywhere).
_NO_NUL = "^[^\\u0000]*$"

_KIND_SCHEMAS: dict[str, Schema] = {
    "string": {"type": "string", "pattern": _NO_NUL},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "timestamp": {
        "type": "string",
        "pattern": TIMESTAMP_PATTERN,
        "description": "ISO 8601; UTC unless it carries an offset, which is converted to UTC",
        "examples": ["2024-02-01 10:00:00.123456"],
    },
    "json": {"type": "object", "description": "Any JSON object, stored as JSON text"},
}

_ERROR_RESPONSES: dict[str, tuple[str, str]] = {
    # component name -> (status, description)
    "BadRequest": ("400", "A parameter or the body is invalid; `detail` names it."),
    "Unauthorized": (
        "401",
        "No token, or an invalid, expired or revoked one. Get a token from `POST /auth/token`.",
    ),
    "Forbidden": (
        "403",
        "The user may only read (Airflow's Viewer role), or a cookie-authenticated write came from "
        "another site.",
    ),
    "NotFound": ("404", "No such table, object, export or data."),
    "Conflict": ("409", "Another writer changed the object meanwhile; nothing was written, retry."),
    "PayloadTooLarge": ("413", "The body is larger than the server accepts."),
    "UnsupportedMediaType": ("415", "The body has another content type than the operation takes."),
    "RangeNotSatisfiable": ("416", "The offset lies beyond the end of the object."),
    "BadGateway": ("502", "The upstream service failed or refused this deployment's credentials."),
    "ServiceUnavailable": (
        "503",
        "The upstream service is not configured in this deployment, or the server cannot check tokens.",
    ),
    "GatewayTimeout": ("504", "The upstream service did not answer in time."),
}


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
            **_dwh_paths(settings),
            **_s3_paths(),
            **_appmetrica_paths(settings),
            **_amplitude_paths(),
            **_docs_paths(),
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
            "schemas": {**_common_schemas(), **_table_schemas()},
            "responses": _error_responses(),
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


# ------------------------------------------------------------------------------------------- /dwh


def _dwh_paths(settings: Settings) -> dict[str, Any]:
    table = {
        "name": "table",
        "in": "path",
        "required": True,
        "description": "The table, by its URL slug.",
        "schema": {"type": "string", "enum": list(TABLES)},
    }
    stored_rows = [_ref(f"{_schema_name(t)}StoredRow") for t in TABLES.values()]
    rows = [_ref(f"{_schema_name(t)}Row") for t in TABLES.values()]
    return {
        "/dwh/{table}": {
            "parameters": [table],
            "get": {
                "tags": ["dwh"],
                "operationId": "listRows",
                "summary": "Read a page of a table's rows, in the order they were written",
                "parameters": [
                    _query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": settings.max_read_limit,
                            "default": settings.default_read_limit,
                        },
                        "Rows to return.",
                    ),
                    _query(
                        "offset",
                        {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
                        "Rows to skip.",
                    ),
                ],
                "responses": {
                    "200": _json_response(
                        "The page, its number of rows, and the number of rows in the table.",
                        {
                            "type": "object",
                            "required": ["rows", "count", "total"],
                            "additionalProperties": False,
                            "properties": {
                                "rows": {
                                    "type": "array",
                                    "items": {"anyOf": stored_rows},
                                    "description": "Rows of the table in the path; timestamps in UTC.",
                                },
                                "count": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "maximum": settings.max_read_limit,
                                    "description": "Rows in this answer (the length of `rows`).",
                                },
                                "total": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "description": "Rows in the table, to page through it with `offset`.",
                                },
                            },
                        },
                    ),
                    **_errors("BadRequest", "Unauthorized", "NotFound", "ServiceUnavailable"),
                },
            },
            "post": {
                "tags": ["dwh"],
                "operationId": "insertRows",
                "summary": "Append rows to a table, all or none",
                "description": (
                    "The rows must match the row schema of the table in the path (one of the "
                    "alternatives below). They are written in batches of at most "
                    f"{settings.max_rows_per_insert} rows and {settings.max_write_batch_bytes} bytes, in "
                    "one transaction: an invalid row writes nothing and answers 422 listing every problem "
                    f"by row and field. Bodies over {settings.max_request_bytes} bytes are refused."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["data"],
                                "additionalProperties": False,
                                "properties": {
                                    "data": {"type": "array", "minItems": 1, "items": {"anyOf": rows}}
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json_response("The rows were written.", _ref("InsertResult")),
                    **_errors(
                        "BadRequest",
                        "Unauthorized",
                        "Forbidden",
                        "NotFound",
                        "PayloadTooLarge",
                        "UnsupportedMediaType",
                    ),
                    "422": _json_response(
                        "Rows that cannot be written; nothing was written.", _ref("ValidationFailed")
                    ),
                    **_errors("ServiceUnavailable"),
                },
            },
        }
    }


def _schema_name(table: sa.Table) -> str:
    """``events_part`` -> ``EventsPart``."""
    return "".join(word.capitalize() for word in table.name.split("_"))


def _table_schemas() -> dict[str, Schema]:
    """``<Table>Row`` (what a POST takes) and ``<Table>StoredRow`` (what a GET returns) per table.
    Names are made plain ``str``: SQLAlchemy's column names are a subclass that not every JSON Schema
    tool takes."""
    schemas: dict[str, Schema] = {}
    for table in TABLES.values():
        rules = column_rules(table)
        properties = {str(column): _column_schema(rule, table.c[column]) for column, rule in rules.items()}
        schema_name = _schema_name(table)
        schemas[f"{schema_name}Row"] = {
            "title": f"{table.name} row",
            "description": f"{table.comment}. Leave out or send null for an optional field.",
            "type": "object",
            "required": [str(column) for column, rule in rules.items() if rule.required],
            "additionalProperties": False,
            "properties": properties,
        }
        stored = {
            "id": {"type": "integer", "minimum": 1, "description": f"{table.c.id.comment}."},
            **properties,
            "loaded_at": {**_KIND_SCHEMAS["timestamp"], "description": f"{table.c.loaded_at.comment}."},
        }
        schemas[f"{schema_name}StoredRow"] = {
            "title": f"{table.name} row as stored",
            "type": "object",
            "required": list(stored),
            "additionalProperties": False,
            "properties": stored,
        }
    return schemas


def _column_schema(rule: ColumnRule, column: sa.Column) -> Schema:
    schema = dict(_KIND_SCHEMAS[rule.kind])
    if rule.max_length is not None:
        schema["maxLength"] = rule.max_length
    if rule.min_value is not None:
        schema["minimum"] = rule.min_value
    if rule.max_value is not None:
        schema["maximum"] = rule.max_value
    if column.comment:
        schema["description"] = ". ".join(filter(None, [column.comment, schema.get("description")])) + "."
    return schema if rule.required else _nullable(schema)


def _nullable(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


# -------------------------------------------------------------------------------------------- /s3


def _s3_paths() -> dict[str, Any]:
    key = _query(
        "key",
        {"type": "string", "minLength": 1, "maxLength": MAX_KEY_BYTES},
        "Object key: at most 1024 bytes of UTF-8, no control characters, no backslash, no leading "
        "`/`, no `.` or `..` segment.",
        required=True,
    )
    upload_body = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
    written = _ref("S3WriteResult")
    return {
        "/s3/objects": {
            "get": {
                "tags": ["s3"],
                "operationId": "listObjects",
                "summary": "List the keys under a prefix, one page at a time, in key order",
                "parameters": [
                    _query("prefix", {"type": "string", "default": ""}, "Only keys starting with it."),
                    _query(
                        "max_keys",
                        {"type": "integer", "minimum": 1, "maximum": MAX_LIST_KEYS, "default": MAX_LIST_KEYS},
                        "Keys per page.",
                    ),
                    _query(
                        "continuation",
                        {"type": "string"},
                        "The `next_token` of the previous page (with the same `prefix`), to get the "
                        "next one; any other value is refused (400).",
                    ),
                ],
                "responses": {
                    "200": _json_response("One page of the listing.", _ref("S3Listing")),
                    **_errors("BadRequest", "Unauthorized", "BadGateway", "ServiceUnavailable"),
                },
            }
        },
        "/s3/object-info": {
            "get": {
                "tags": ["s3"],
                "operationId": "objectInfo",
                "summary": "Whether an object exists, and its metadata",
                "parameters": [key],
                "responses": {
                    "200": _json_response("The object's metadata, or `exists: false`.", _ref("S3ObjectInfo")),
                    **_errors("BadRequest", "Unauthorized", "BadGateway", "ServiceUnavailable"),
                },
            }
        },
        "/s3/download": {
            "get": {
                "tags": ["s3"],
                "operationId": "downloadObject",
                "summary": "Download an object, streamed",
                "parameters": [key],
                "responses": {
                    "200": {
                        "description": "The object's bytes, with its content type.",
                        "headers": {
                            "Content-Disposition": {"schema": {"type": "string"}},
                            "ETag": {"schema": {"type": "string"}},
                        },
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **_errors("BadRequest", "Unauthorized", "NotFound", "BadGateway", "ServiceUnavailable"),
                },
            }
        },
        "/s3/upload": {
            "post": {
                "tags": ["s3"],
                "operationId": "uploadObject",
                "summary": "Create or replace an object (last writer wins)",
                "parameters": [key],
                "requestBody": upload_body,
                "responses": {
                    "201": _json_response("The object was written.", written),
                    **_s3_write_errors(),
                },
            }
        },
        "/s3/update": {
            "put": {
                "tags": ["s3"],
                "operationId": "updateObject",
                "summary": "Replace an existing object, keeping its content type and metadata",
                "parameters": [key],
                "requestBody": upload_body,
                "responses": {
                    "200": _json_response("The object was replaced.", written),
                    **_s3_write_errors("NotFound", "Conflict"),
                },
            }
        },
        "/s3/patch": {
            "patch": {
                "tags": ["s3"],
                "operationId": "patchObject",
                "summary": "Overwrite bytes of an existing object from an offset (offset = size appends)",
                "parameters": [
                    key,
                    _query(
                        "offset",
                        {"type": "integer", "minimum": 0},
                        "Where the new bytes go; they extend the object if they run past its end.",
                        required=True,
                    ),
                ],
                "requestBody": upload_body,
                "responses": {
                    "200": _json_response("The object was rewritten.", written),
                    **_s3_write_errors("NotFound", "Conflict", "RangeNotSatisfiable"),
                },
            }
        },
        "/s3/delete": {
            "delete": {
                "tags": ["s3"],
                "operationId": "deleteObject",
                "summary": "Delete an object",
                "parameters": [key],
                "responses": {
                    "200": _json_response("The object was deleted.", _ref("S3DeleteResult")),
                    **_errors(
                        "BadRequest",
                        "Unauthorized",
                        "Forbidden",
                        "NotFound",
                        "BadGateway",
                        "ServiceUnavailable",
                    ),
                },
            }
        },
    }


def _s3_write_errors(*extra: str) -> dict[str, Any]:
    return _errors(
        "BadRequest",
        "Unauthorized",
        "Forbidden",
        *extra,
        "PayloadTooLarge",
        "UnsupportedMediaType",
        "BadGateway",
        "ServiceUnavailable",
    )


# ------------------------------------------------------------------------------------ /appmetrica


def _appmetrica_paths(settings: Settings) -> dict[str, Any]:
    return {
        "/appmetrica/ping": {
            "get": {
                "tags": ["appmetrica"],
                "operationId": "appmetricaPing",
                "summary": "Whether the Logs API is available to the configured token",
                "responses": {
                    "200": _json_response("The Logs API is enabled.", _ref("AppMetricaPing")),
                    **_errors("Unauthorized", "BadGateway"),
                    "503": _json_response(
                        "AppMetrica says the Logs API is disabled (the status, `available` false), or it "
                        "cannot be reached, or the connection is not configured (an error).",
                        {"anyOf": [_ref("AppMetricaPing"), _ref("Error")]},
                    ),
                },
            }
        },
        "/appmetrica/fetch-export": {
            "get": {
                "tags": ["appmetrica"],
                "operationId": "appmetricaFetchExport",
                "summary": "Fetch a saved export, polling until AppMetrica has prepared it",
                "description": (
                    "Export definitions are saved under an id in the Airflow Variable "
                    "`appmetrica_exports` or the `appmetrica_api` connection's extra `exports`."
                ),
                "parameters": [
                    _query(
                        "export_id",
                        {"type": "string", "minLength": 1},
                        "The saved export's id.",
                        required=True,
                    ),
                    _query(
                        "poll_interval",
                        _seconds(POLL_INTERVAL_RANGE, settings.appmetrica_poll_interval_seconds),
                        "Seconds between polls.",
                    ),
                    _query(
                        "poll_timeout",
                        _seconds(POLL_TIMEOUT_RANGE, settings.appmetrica_poll_timeout_seconds),
                        "Seconds to wait for the export in all.",
                    ),
                    _query(
                        "fresh",
                        {"type": "boolean", "default": False},
                        "Ask for a new file instead of one AppMetrica prepared in the last 24 hours.",
                    ),
                ],
                "responses": {
                    "200": _json_response("The export's rows.", _ref("AppMetricaExport")),
                    **_errors("BadRequest", "Unauthorized", "NotFound", "BadGateway", "ServiceUnavailable"),
                    "504": _json_response(
                        "The export was not ready within `poll_timeout`; AppMetrica keeps preparing it, so "
                        "asking again later polls the same export.",
                        _ref("ExportTimeout"),
                    ),
                },
            }
        },
    }


# ------------------------------------------------------------------------------------- /amplitude


def _amplitude_paths() -> dict[str, Any]:
    day = {"type": "string", "pattern": "^[0-9]{8}$", "examples": ["20240201"]}
    return {
        "/amplitude/export": {
            "get": {
                "tags": ["amplitude"],
                "operationId": "amplitudeExport",
                "summary": "Download a range of days of a project's events as one zipped NDJSON",
                "description": (
                    f"Events uploaded from `start` 00h to `end` 23h (UTC), at most {MAX_RANGE_DAYS} days, merged in "
                    "time order into `{year}_week_{week}.ndjson` inside `{year}_week_{week}.zip` (the ISO "
                    "week of `start`)."
                ),
                "parameters": [
                    _query("start", day, "First day, YYYYMMDD.", required=True),
                    _query("end", day, "Last day, YYYYMMDD (inclusive).", required=True),
                    _query(
                        "source",
                        {"type": "string", "enum": ["web", "mobile"]},
                        "Which Amplitude project (its credentials).",
                        required=True,
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "The archive.",
                        "headers": {"Content-Disposition": {"schema": {"type": "string"}}},
                        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    "400": _error_response(
                        "A bad date, range or source, or the export is larger than Amplitude allows."
                    ),
                    **_errors("Unauthorized"),
                    "404": _error_response("Amplitude has no data in this range."),
                    **_errors("BadGateway", "ServiceUnavailable", "GatewayTimeout"),
                },
            }
        }
    }


# ------------------------------------------------------------------------------------------ /docs


def _docs_paths() -> dict[str, Any]:
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
                    **_errors("NotFound"),
                },
            }
        },
    }


# ---------------------------------------------------------------------------------------- shared


def _common_schemas() -> dict[str, Schema]:
    string = {"type": "string"}
    integer = {"type": "integer", "minimum": 0}
    return {
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {
                "error": {"type": "string", "description": "The HTTP status phrase, e.g. `Not Found`."},
                "detail": {"type": "string", "description": "What went wrong, naming the field."},
            },
        },
        "ExportTimeout": {
            "allOf": [_ref("Error")],
            "type": "object",
            "required": ["export_id", "polls", "elapsed_s"],
            "properties": {
                "export_id": string,
                "polls": integer,
                "elapsed_s": {"type": "number", "minimum": 0},
            },
        },
        "ValidationFailed": {
            "type": "object",
            "required": ["error", "detail", "errors", "truncated"],
            "properties": {
                "error": {"const": "validation failed"},
                "detail": {"type": "string", "description": "The first problem and how many more."},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["row", "field", "message"],
                        "properties": {
                            "row": {
                                "type": "integer",
                                "minimum": 0,
                                "description": "0-based index in `data`.",
                            },
                            "field": {"type": ["string", "null"]},
                            "message": string,
                        },
                    },
                },
                "truncated": {
                    "type": "boolean",
                    "description": "Validation stopped at its error limit; later rows were not checked.",
                },
            },
        },
        "InsertResult": {
            "type": "object",
            "required": ["inserted_ids", "count", "batches"],
            "properties": {
                "inserted_ids": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "description": "In row order.",
                },
                "count": integer,
                "batches": {"type": "integer", "minimum": 1, "description": "INSERT statements used."},
            },
        },
        "S3Object": {
            "type": "object",
            "required": ["Key", "LastModified", "Size", "ETag"],
            "properties": {
                "Key": string,
                "LastModified": {"type": "string", "format": "date-time"},
                "Size": integer,
                "ETag": string,
            },
        },
        "S3Listing": {
            "type": "object",
            "required": ["prefix", "objects", "count"],
            "properties": {
                "prefix": string,
                "objects": {"type": "array", "items": _ref("S3Object")},
                "count": integer,
                "next_token": {"type": "string", "description": "Present when more keys follow."},
            },
        },
        "S3ObjectInfo": {
            "type": "object",
            "required": ["key", "exists"],
            "properties": {
                "key": string,
                "exists": {"type": "boolean"},
                "size": integer,
                "etag": string,
                "last_modified": {"type": "string", "format": "date-time"},
                "content_type": {"type": ["string", "null"]},
            },
        },
        "S3WriteResult": {
            "type": "object",
            "required": ["key", "etag", "version_id", "size"],
            "properties": {
                "key": string,
                "etag": string,
                "version_id": {
                    "type": ["string", "null"],
                    "description": "Null unless the bucket is versioned.",
                },
                "size": integer,
            },
        },
        "S3DeleteResult": {
            "type": "object",
            "required": ["key", "deleted"],
            "properties": {
                "key": string,
                "deleted": {"const": True},
                "version_id": {"type": "string", "description": "The delete marker, in a versioned bucket."},
            },
        },
        "AppMetricaPing": {
            "type": "object",
            "required": ["available", "status", "latency_ms", "base_url"],
            "properties": {
                "available": {"type": "boolean"},
                "status": {"type": "string", "description": "`enabled` or `disabled`."},
                "latency_ms": {"type": "number", "minimum": 0},
                "base_url": string,
            },
        },
        "AppMetricaExport": {
            "type": "object",
            "required": [
                "export_id",
                "resource",
                "format",
                "date_since",
                "date_until",
                "rows",
                "count",
                "polls",
                "elapsed_s",
            ],
            "properties": {
                "export_id": string,
                "resource": string,
                "format": {"type": "string", "enum": ["json", "csv"]},
                "date_since": string,
                "date_until": string,
                "rows": {"type": "array", "items": {"type": "object"}},
                "count": integer,
                "polls": {"type": "integer", "minimum": 1},
                "elapsed_s": {"type": "number", "minimum": 0},
            },
        },
    }


def _seconds(bounds: tuple[float, float], default: float) -> Schema:
    return {"type": "number", "minimum": bounds[0], "maximum": bounds[1], "default": default}


def _error_responses() -> dict[str, Any]:
    responses = {name: _error_response(description) for name, (_, description) in _ERROR_RESPONSES.items()}
    responses["Unauthorized"]["headers"] = {
        "WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`, with an error code."}
    }
    return responses


def _errors(*names: str) -> dict[str, Any]:
    return {_ERROR_RESPONSES[name][0]: {"$ref": f"#/components/responses/{name}"} for name in names}


def _error_response(description: str) -> dict[str, Any]:
    return _json_response(description, _ref("Error"))


def _json_response(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: Schema, description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}
