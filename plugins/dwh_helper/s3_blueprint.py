"""``/s3/...``: the objects of the DWH bucket (connection ``dwh_s3``), as the DWH Helper served them.

``key`` is an object key (see :func:`include.dwh.s3_keys.validate_key`). Every error answers
``{"error", "detail"}``: 400 for a missing or invalid parameter (named), 404 for a missing object, 409
when another writer changed the object during an update or patch (nothing was written), 413 for a
body over ``max_request_bytes``, 415 for a write that is not ``multipart/form-data``, 416 for a patch
offset beyond the object's end, 502 when the store failed or refused (its message never carries
credentials).

* ``GET /s3/objects?prefix=&max_keys=1000&continuation=`` -> ``{"prefix", "objects": [{"Key",
  "LastModified", "Size", "ETag"}], "count", "next_token"?}``, one page in key order; pass
  ``next_token`` back as ``continuation`` for the next.
* ``GET /s3/object-info?key=`` -> ``{"key", "exists": true, "size", "etag", "last_modified",
  "content_type"}``, or ``{"key", "exists": false}`` (still 200: asking is not an error).
* ``GET /s3/download?key=`` -> the bytes, streamed, with ``Content-Length``, the object's
  ``Content-Type`` and ``ETag``, and ``Content-Disposition: attachment`` named after the key's last
  segment. ``HEAD`` answers the same headers from the object's metadata alone.
* ``POST /s3/upload?key=`` (create or replace), ``PUT /s3/update?key=`` (existing objects only),
  ``PATCH /s3/patch?key=&offset=`` (write at ``offset``; ``offset`` = size appends) take the bytes
  as the form field ``file`` of a ``multipart/form-data`` body and answer ``{"key", "etag",
  "version_id", "size"}`` (201 for an upload, 200 otherwise; ``version_id`` is null in an unversioned
  bucket). The part's ``Content-Type`` becomes the object's, unless it is missing or the generic
  ``application/octet-stream``: then an upload guesses it from the key, and an update or a patch
  keeps the object's.
* ``DELETE /s3/delete?key=`` -> ``{"key", "deleted": true, "version_id"?}``.

Werkzeug spools an uploaded file to a temporary file once it exceeds 500 KB, and the store reads it
from there one part at a time, so memory stays bounded whatever the upload's size. Parameters are
checked before the body is parsed, so a bad request does not spool its file first.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import BadRequest, UnsupportedMediaType
from werkzeug.http import HTTP_STATUS_CODES

from dwh_helper.http_io import body_limit, int_arg, json_response, required_arg
from dwh_helper.openapi_parts import errors, json_content, query, ref
from dwh_helper.services import services
from include.dwh.s3 import MAX_LIST_KEYS, ObjectMeta
from include.dwh.s3_keys import MAX_KEY_BYTES, S3Error, validate_key

log = logging.getLogger(__name__)

s3 = Blueprint("s3", __name__, url_prefix="/s3")

FILE_FIELD = "file"
GENERIC_TYPE = "application/octet-stream"


@s3.errorhandler(S3Error)
def _s3_error(exc: S3Error) -> Response:
    if exc.status >= 500:
        log.warning("DWH helper: S3: %s", exc)
    return json_response({"error": HTTP_STATUS_CODES[exc.status], "detail": str(exc)}, exc.status)


@s3.get("/objects")
def list_objects() -> Response:
    max_keys = int_arg("max_keys", MAX_LIST_KEYS, minimum=1, maximum=MAX_LIST_KEYS)
    prefix, continuation = request.args.get("prefix", ""), request.args.get("continuation") or None
    return json_response(services().s3().list_objects(prefix, max_keys=max_keys, continuation=continuation))


@s3.get("/object-info")
def object_info() -> Response:
    return json_response(services().s3().object_info(required_arg("key")))


@s3.get("/download")
def download() -> Response:
    store, key = services().s3(), required_arg("key")
    if request.method == "HEAD":  # the headers only: a HEAD of the object, whose bytes stay unopened
        stored: ObjectMeta = store.head(key)
        body: Iterable[bytes] = ()
    else:
        # The stream closes the S3 body itself, at its end or when dropped: nothing waits for the
        # response's close(), which Starlette's WSGI bridge (Airflow's) never calls.
        stored = opened = store.download(key)
        body = opened.chunks()
    response = current_app.response_class(body, content_type=stored.content_type or GENERIC_TYPE)
    response.content_length = stored.size
    response.headers["ETag"] = stored.etag
    response.headers.set("Content-Disposition", "attachment", **_attachment(stored.key))
    return response


@s3.post("/upload")
def upload() -> Response:
    key = validate_key(required_arg("key"))
    file = _uploaded_file()
    return json_response(services().s3().upload(key, file.stream, _content_type(file)), 201)


@s3.put("/update")
def update() -> Response:
    key = validate_key(required_arg("key"))
    file = _uploaded_file()
    return json_response(services().s3().update(key, file.stream, _content_type(file)))


@s3.patch("/patch")
def patch() -> Response:
    key = validate_key(required_arg("key"))
    offset = int_arg("offset", None, minimum=0)
    file = _uploaded_file()
    return json_response(services().s3().patch(key, offset, file.stream))


@s3.delete("/delete")
def delete() -> Response:
    return json_response(services().s3().delete(required_arg("key")))


def _uploaded_file() -> FileStorage:
    """The one file of the form field ``file``; parsing the form spools it to disk when large."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Send the bytes as multipart/form-data, in the form field {FILE_FIELD!r}."
        )
    with body_limit():
        files = request.files.getlist(FILE_FIELD)
    if len(files) != 1:
        raise BadRequest(
            f"The form must hold exactly one file in the field {FILE_FIELD!r}; it holds {len(files)}."
        )
    return files[0]


def _content_type(file: FileStorage) -> str | None:
    """The part's type, unless it says nothing (missing or generic): then the store decides."""
    return file.content_type if file.mimetype not in ("", GENERIC_TYPE) else None


def _attachment(key: str) -> dict[str, str]:
    """``Content-Disposition`` options naming the download after the key's last segment; a non-ASCII
    name goes in ``filename*`` (RFC 6266), with an ASCII approximation in ``filename``."""
    name = key.rsplit("/", 1)[-1] or "download"
    if name.isascii():
        return {"filename": name}
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return {"filename": ascii_name or "download", "filename*": f"UTF-8''{quote(name, safe='')}"}


# ------------------------------------------------------------------------------------------ OpenAPI


def openapi_paths() -> dict[str, Any]:
    key = query(
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
    written = ref("S3WriteResult")
    return {
        "/s3/objects": {
            "get": {
                "tags": ["s3"],
                "operationId": "listObjects",
                "summary": "List the keys under a prefix, one page at a time, in key order",
                "parameters": [
                    query("prefix", {"type": "string", "default": ""}, "Only keys starting with it."),
                    query(
                        "max_keys",
                        {"type": "integer", "minimum": 1, "maximum": MAX_LIST_KEYS, "default": MAX_LIST_KEYS},
                        "Keys per page.",
                    ),
                    query(
                        "continuation",
                        {"type": "string"},
                        "The `next_token` of the previous page (with the same `prefix`), to get the "
                        "next one; any other value is refused (400).",
                    ),
                ],
                "responses": {
                    "200": json_content("One page of the listing.", ref("S3Listing")),
                    **errors("BadRequest", "Unauthorized", "BadGateway", "ServiceUnavailable"),
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
                    "200": json_content("The object's metadata, or `exists: false`.", ref("S3ObjectInfo")),
                    **errors("BadRequest", "Unauthorized", "BadGateway", "ServiceUnavailable"),
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
                    **errors("BadRequest", "Unauthorized", "NotFound", "BadGateway", "ServiceUnavailable"),
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
                    "201": json_content("The object was written.", written),
                    **_write_errors(),
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
                    "200": json_content("The object was replaced.", written),
                    **_write_errors("NotFound", "Conflict"),
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
                    query(
                        "offset",
                        {"type": "integer", "minimum": 0},
                        "Where the new bytes go; they extend the object if they run past its end.",
                        required=True,
                    ),
                ],
                "requestBody": upload_body,
                "responses": {
                    "200": json_content("The object was rewritten.", written),
                    **_write_errors("NotFound", "Conflict", "RangeNotSatisfiable"),
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
                    "200": json_content("The object was deleted.", ref("S3DeleteResult")),
                    **errors(
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


def _write_errors(*extra: str) -> dict[str, Any]:
    return errors(
        "BadRequest",
        "Unauthorized",
        "Forbidden",
        *extra,
        "PayloadTooLarge",
        "UnsupportedMediaType",
        "BadGateway",
        "ServiceUnavailable",
    )
