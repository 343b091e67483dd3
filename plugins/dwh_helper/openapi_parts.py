"""The building blocks of the DWH helper's OpenAPI document: shared schemas, error responses, and the
row schemas generated from :data:`include.dwh.schema.TABLES` by the same rules
(:func:`include.dwh.validation.column_rules`) that validate a ``POST /dwh/<table>`` body, so a column
added to a table is documented and enforced alike. Each blueprint describes its own paths with these
helpers; :mod:`dwh_helper.openapi` assembles the document.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

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
NO_NUL = "^[^\\u0000]*$"

KIND_SCHEMAS: dict[str, Schema] = {
    "string": {"type": "string", "pattern": NO_NUL},
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

ERROR_RESPONSES: dict[str, tuple[str, str]] = {
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


# ------------------------------------------------------------------------------------------- /dwh


def schema_name(table: sa.Table) -> str:
    """``events_part`` -> ``EventsPart``."""
    return "".join(word.capitalize() for word in table.name.split("_"))


def table_schemas() -> dict[str, Schema]:
    """``<Table>Row`` (what a POST takes) and ``<Table>StoredRow`` (what a GET returns) per table.
    Names are made plain ``str``: SQLAlchemy's column names are a subclass that not every JSON Schema
    tool takes."""
    schemas: dict[str, Schema] = {}
    for table in TABLES.values():
        rules = column_rules(table)
        properties = {str(column): _column_schema(rule, table.c[column]) for column, rule in rules.items()}
        name = schema_name(table)
        schemas[f"{name}Row"] = {
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
            "loaded_at": {**KIND_SCHEMAS["timestamp"], "description": f"{table.c.loaded_at.comment}."},
        }
        schemas[f"{name}StoredRow"] = {
            "title": f"{table.name} row as stored",
            "type": "object",
            "required": list(stored),
            "additionalProperties": False,
            "properties": stored,
        }
    return schemas


def _column_schema(rule: ColumnRule, column: sa.Column) -> Schema:
    schema = dict(KIND_SCHEMAS[rule.kind])
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


# ------------------------------------------------------------------------------------ /appmetrica


# ------------------------------------------------------------------------------------- /amplitude


# ------------------------------------------------------------------------------------------ /docs


# ---------------------------------------------------------------------------------------- shared


def common_schemas() -> dict[str, Schema]:
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
            "allOf": [ref("Error")],
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
                "objects": {"type": "array", "items": ref("S3Object")},
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


def seconds(bounds: tuple[float, float], default: float) -> Schema:
    return {"type": "number", "minimum": bounds[0], "maximum": bounds[1], "default": default}


def error_responses() -> dict[str, Any]:
    responses = {name: error_response(description) for name, (_, description) in ERROR_RESPONSES.items()}
    responses["Unauthorized"]["headers"] = {
        "WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`, with an error code."}
    }
    return responses


def errors(*names: str) -> dict[str, Any]:
    return {ERROR_RESPONSES[name][0]: {"$ref": f"#/components/responses/{name}"} for name in names}


def error_response(description: str) -> dict[str, Any]:
    return json_content(description, ref("Error"))


def json_content(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def query(name: str, schema: Schema, description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}
