"""``/dwh/<table>``: read and append rows of the seven DWH tables, as the DWH Helper did.

``GET /dwh/<table>?limit=100&offset=0`` -> ``200 {"rows": [...], "count": <rows in this answer>,
"total": <rows in the table>}`` (``count`` as the DWH Helper meant it; ``total`` to page by), rows in
id order, timestamps as ISO 8601 UTC text, JSON columns as objects. ``limit`` defaults to
``default_read_limit`` (100) and may not exceed ``max_read_limit`` (1000); a bad ``limit`` or
``offset`` gives 400 naming it.

``POST /dwh/<table>`` with ``{"data": [{...}, ...]}`` -> ``201 {"inserted_ids", "count", "batches"}``
(201: the rows are new resources, and the ids say which). All rows or none are written; invalid rows
give ``422 {"error": "validation failed", "detail", "errors": [{"row", "field", "message"}, ...],
"truncated"}``. A body that is not a JSON object with a non-empty ``data`` list (and nothing else)
gives 400, another content type than JSON 415, an unknown table 404.

``<table>`` is a slug of :data:`include.dwh.schema.TABLES` (``events-part``, ``mobile-devices``,
``permanent-user-properties``, ``technical-data``, ``event-properties``, ``user-properties``,
``user-locations``).

A large body is read once (bounded by ``max_request_bytes``) and its rows are decoded one at a time
while the batch writer consumes them, so memory holds the body and one chunk of rows instead of every
row as a Python object (which takes several times the size of its JSON). A body shaped
``{"data": [...]}`` is split into its rows' texts by msgspec in one pass (the rows are not decoded
then, but the JSON is checked), and the writer decodes and checks each valid row in one step
(:mod:`include.dwh.json_rows`). Any other body, and a row's text that msgspec took but Python's
decoder does not, goes through :func:`data_rows`, Python's decoder row by row, which words the
errors: the answers are the same either way, only their speed differs.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import msgspec
import sqlalchemy as sa
from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import BadRequest, NotFound, UnsupportedMediaType

from dwh_helper.http_io import MAX_OFFSET, int_arg, read_body
from dwh_helper.openapi_parts import errors, json_content, query, ref, schema_name
from dwh_helper.services import Settings, services
from include.dwh.batch_writer import read_rows, write_rows
from include.dwh.schema import TABLES
from include.dwh.validation import ValidationError, json_type_name

dwh = Blueprint("dwh", __name__, url_prefix="/dwh")

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_BODY_SHAPE = 'The body must be a JSON object {"data": [row, ...]}.'
_END = object()
#: ``{"data": [`` (up to the list) and ``]}`` at the end, as bytes: what the fast path takes.
_BODY_HEAD = re.compile(rb'[ \t\n\r]*\{[ \t\n\r]*"data"[ \t\n\r]*:[ \t\n\r]*(?=\[)')
_BODY_TAIL = re.compile(rb"\][ \t\n\r]*\}[ \t\n\r]*\Z")
_TAIL_BYTES = 64  # the tail is looked for among the last bytes only; more whitespace takes the slow path
_RAW_ROWS = msgspec.json.Decoder(list[msgspec.Raw])


class BodyError(ValueError):
    """The request body is not valid JSON or not shaped ``{"data": [...]}``; nothing was written."""


@dwh.get("/<slug>")
def list_rows(slug: str) -> Response:
    table = _table(slug)
    settings = services().settings
    limit = int_arg("limit", settings.default_read_limit, minimum=1, maximum=settings.max_read_limit)
    offset = int_arg("offset", 0, minimum=0, maximum=MAX_OFFSET)
    rows, total = read_rows(services().dwh_engine(), table, limit, offset, max_limit=settings.max_read_limit)
    return _json({"rows": rows, "count": len(rows), "total": total})


@dwh.post("/<slug>")
def insert_rows(slug: str) -> Response:
    table = _table(slug)
    settings = services().settings
    try:
        body = RequestRows(_body_bytes())
        rows = body.rows()
        if isinstance(rows, list):  # split by msgspec: the writer knows how many
            empty = not rows
        else:  # parsed one row at a time: is there a first?
            first = next(rows, _END)
            empty, rows = first is _END, itertools.chain([first], rows)
        if empty:
            raise BodyError("The data list is empty: send at least one row.")
        result = write_rows(
            services().dwh_engine(),
            table,
            rows,
            max_rows=settings.max_rows_per_insert,
            max_bytes=settings.max_write_batch_bytes,
            decode_raw=body.decode_row,
        )
    except BodyError as exc:
        raise BadRequest(str(exc)) from None
    except ValidationError as exc:
        body = {
            "error": "validation failed",
            "detail": str(exc),
            "errors": [error.as_dict() for error in exc.errors],
            "truncated": exc.truncated,
        }
        return _json(body, 422)
    return _json({"inserted_ids": result.inserted_ids, "count": result.count, "batches": result.batches}, 201)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    """A JSON response with keys in the order given (rows keep their table's column order), whatever
    JSON settings the host app has."""
    return current_app.response_class(
        json.dumps(body, ensure_ascii=False), status, mimetype="application/json"
    )


def _table(slug: str) -> sa.Table:
    table = TABLES.get(slug)
    if table is None:
        raise NotFound(f"Unknown table {slug!r}; the tables are {', '.join(TABLES)}.")
    return table


def _body_bytes() -> bytes:
    """The whole body, checked to be UTF-8 text."""
    if not request.is_json:
        raise UnsupportedMediaType("Send the rows as application/json.")
    body = read_body()
    if not body.isascii():  # ASCII is UTF-8; isascii costs a thirtieth of decoding
        _text(body)
    return body


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"The body is not UTF-8 text (byte {exc.start}: {exc.reason}).") from None


class RequestRows:
    """The rows of a UTF-8 request body, for :func:`~include.dwh.batch_writer.write_rows`."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._text: str | None = None

    def _decoded(self) -> str:
        if self._text is None:
            self._text = _text(self._body)
        return self._text

    def rows(self) -> list[msgspec.Raw] | Iterator[Any]:
        """The rows: a list of their texts (:class:`msgspec.Raw`) when the body is shaped
        ``{"data": [...]}`` and msgspec reads it (so the writer knows their number), else (the body
        then holds an error, or text msgspec does not take, such as NaN or an unpaired surrogate) each
        row as :func:`data_rows` decodes it, errors in their turn."""
        raw_rows = self._raw_rows()
        if raw_rows is not None:
            return raw_rows
        text = self._decoded()
        self._body = b""  # the text is all that is needed now
        return data_rows(text)

    def _raw_rows(self) -> list[msgspec.Raw] | None:
        body = self._body
        head = _BODY_HEAD.match(body)
        if head is None:
            return None
        tail = _BODY_TAIL.search(body, max(head.end(), len(body) - _TAIL_BYTES))
        if tail is None:
            return None
        try:  # one JSON array exactly: the data list, proven to be the only key
            return _RAW_ROWS.decode(memoryview(body)[head.end() : tail.start() + 1])
        except (msgspec.DecodeError, RecursionError):
            return None

    def decode_row(self, index: int, raw: msgspec.Raw) -> Any:
        """The row ``index`` of the body, whose text is ``raw``, as :func:`data_rows` decodes it; its
        :class:`BodyError` when that stops at or before this row."""
        try:
            return _DECODER.decode(str(raw, "utf-8"))
        except (ValueError, RecursionError):  # msgspec took what Python's decoder does not: it decides
            return next(itertools.islice(data_rows(self._decoded()), index, None))


def data_rows(text: str) -> Iterator[Any]:
    """Yield the elements of the body's ``data`` list one at a time, as they are parsed.

    Raises :class:`BodyError` (when the iteration reaches the problem) for invalid JSON or another
    shape than ``{"data": [...]}``; other keys are refused too, as fields of a row are. The elements
    themselves are not checked here: that is the batch writer's validation, with row numbers.
    """
    pos = _skip(text, 0)
    if not text.startswith("{", pos):
        raise BodyError(_BODY_SHAPE)
    pos = _skip(text, pos + 1)
    if text.startswith("}", pos):
        raise BodyError(_BODY_SHAPE)
    if not text.startswith('"', pos):
        raise BodyError(_invalid("Expecting property name enclosed in double quotes", text, pos))
    key, pos = _value(text, pos)
    if key != "data":
        raise BodyError(f"Unexpected key {key!r}. {_BODY_SHAPE}")
    pos = _expect(text, pos, ":")
    if not text.startswith("[", pos):
        value, _ = _value(text, pos)
        raise BodyError(f"data must be a list of rows, got {json_type_name(value)}.")
    pos = _skip(text, pos + 1)
    if not text.startswith("]", pos):
        while True:
            row, pos = _value(text, pos)
            yield row
            pos = _skip(text, pos)
            if text.startswith("]", pos):
                break
            pos = _expect(text, pos, ",")
    pos = _skip(text, pos + 1)
    if not text.startswith("}", pos):
        raise BodyError(_invalid("Expecting '}' (data must be the only key)", text, pos))
    pos = _skip(text, pos + 1)
    if pos != len(text):
        raise BodyError(_invalid("Extra data", text, pos))


def _skip(text: str, pos: int) -> int:
    return _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty string


def _expect(text: str, pos: int, char: str) -> int:
    pos = _skip(text, pos)
    if not text.startswith(char, pos):
        raise BodyError(_invalid(f"Expecting {char!r}", text, pos))
    return _skip(text, pos + 1)


def _value(text: str, pos: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise BodyError(f"The body is not valid JSON: {exc}.") from None
    except RecursionError:  # the parser recurses once per level: Python's recursion limit is the bound
        raise BodyError(
            f"The body nests arrays or objects too deeply to be read (from {_where(text, pos)} on)."
        ) from None


def _where(text: str, pos: int) -> str:
    """Line, column and character offset of ``pos``, as json's own messages give them."""
    error = json.JSONDecodeError("", text, pos)
    return f"line {error.lineno} column {error.colno} (char {pos})"


def _invalid(message: str, text: str, pos: int) -> str:
    """The message json itself would give: what was expected, line, column and character offset."""
    return f"The body is not valid JSON: {json.JSONDecodeError(message, text, pos)}."


# ------------------------------------------------------------------------------------------ OpenAPI


def openapi_paths(settings: Settings) -> dict[str, Any]:
    table = {
        "name": "table",
        "in": "path",
        "required": True,
        "description": "The table, by its URL slug.",
        "schema": {"type": "string", "enum": list(TABLES)},
    }
    stored_rows = [ref(f"{schema_name(t)}StoredRow") for t in TABLES.values()]
    rows = [ref(f"{schema_name(t)}Row") for t in TABLES.values()]
    return {
        "/dwh/{table}": {
            "parameters": [table],
            "get": {
                "tags": ["dwh"],
                "operationId": "listRows",
                "summary": "Read a page of a table's rows, in the order they were written",
                "parameters": [
                    query(
                        "limit",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": settings.max_read_limit,
                            "default": settings.default_read_limit,
                        },
                        "Rows to return.",
                    ),
                    query(
                        "offset",
                        {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
                        "Rows to skip.",
                    ),
                ],
                "responses": {
                    "200": json_content(
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
                    **errors("BadRequest", "Unauthorized", "NotFound", "ServiceUnavailable"),
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
                    "201": json_content("The rows were written.", ref("InsertResult")),
                    **errors(
                        "BadRequest",
                        "Unauthorized",
                        "Forbidden",
                        "NotFound",
                        "PayloadTooLarge",
                        "UnsupportedMediaType",
                    ),
                    "422": json_content(
                        "Rows that cannot be written; nothing was written.", ref("ValidationFailed")
                    ),
                    **errors("ServiceUnavailable"),
                },
            },
        }
    }
