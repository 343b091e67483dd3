"""``/amplitude/export``: a week of Amplitude events as one NDJSON in a zip, as the DWH Helper served it.

``GET /amplitude/export?start=YYYYMMDD&end=YYYYMMDD&source=web|mobile`` -> 200 ``application/zip``,
``Content-Disposition: attachment; filename={year}_week_{week}.zip`` (ISO year and week of ``start``),
holding ``{year}_week_{week}.ndjson``: every event uploaded from ``start`` 00h to ``end`` 23h UTC, once,
in time order (see :func:`include.dwh.amplitude.export_week`). ``source`` picks the project and its
keys (connections ``amplitude_web`` / ``amplitude_mobile``).

Errors answer ``{"error", "detail"}``: 400 for a missing or invalid parameter (named; the range may
span at most 365 days) and for an export Amplitude refuses as too large (ask for fewer days); 404 when
Amplitude has no data in the range; 502 when Amplitude refused our keys or failed; 504 when it timed
out preparing the export; 503 when the source's connection is missing or unusable.

The export is built on disk, in a directory of its own under the ``amplitude_workdir`` setting (the
system's temporary directory by default) so that concurrent requests for the same week never share a
file. Once the archive is built it is opened and its directory removed, before the answer starts:
the open file is all that is left, and its bytes go when the stream closes it, at its end (or when
the server drops an unfinished stream). Nothing therefore depends on the server calling the
response's ``close()``, which Starlette's WSGI bridge (through which Airflow serves the plugin) never
does. Directories left by a server that was killed while building an export are removed when the
plugin starts and before each export (see :mod:`include.common.workdir`). Nothing of an export is held
in memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from flask import Blueprint, Response, current_app
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import BadRequest

from dwh_helper.http_io import register_upstream_errors, required_arg
from dwh_helper.openapi_parts import error_response, errors, query
from dwh_helper.services import EXTENSION_KEY, Services, services
from include.common.workdir import remove_abandoned, work_directory
from include.dwh.amplitude import (
    MAX_RANGE_DAYS,
    AmplitudeAuthError,
    AmplitudeConfigError,
    AmplitudeError,
    AmplitudeTimeoutError,
    ExportTooLargeError,
    NoDataError,
    export_week,
    validate_range,
    validate_source,
)

log = logging.getLogger(__name__)

amplitude = Blueprint("amplitude", __name__, url_prefix="/amplitude")

#: Name of each export's work directory, then a random part.
WORKDIR_PREFIX = "amplitude-export-"
_CHUNK_BYTES = 1024 * 1024

#: Status of each failure, the most specific class first (looked up along the exception's MRO).
ERROR_STATUS: dict[type[Exception], int] = {
    NoDataError: 404,
    ExportTooLargeError: 400,
    AmplitudeTimeoutError: 504,
    AmplitudeAuthError: 502,
    AmplitudeError: 502,
}


register_upstream_errors(amplitude, ERROR_STATUS, "Amplitude")


@amplitude.record_once
def _remove_abandoned_exports(state: BlueprintSetupState) -> None:
    """When the plugin starts: remove what a killed server left in the work directory. Never fails
    the start: an unreadable setting is the first export's problem, which reports it."""
    dwh_services: Services = state.app.extensions[EXTENSION_KEY]
    try:
        remove_abandoned(dwh_services.settings.amplitude_workdir, WORKDIR_PREFIX)
    except Exception:
        log.warning("DWH helper: could not look for abandoned Amplitude exports", exc_info=True)


@amplitude.get("/export")
def export() -> Response:
    try:
        start, end = validate_range(required_arg("start"), required_arg("end"))
        source = validate_source(required_arg("source"))
    except AmplitudeConfigError as exc:
        raise BadRequest(f"{exc}.") from None
    credentials = services().amplitude(source)
    parent = services().settings.amplitude_workdir
    remove_abandoned(parent, WORKDIR_PREFIX)
    with work_directory(parent, WORKDIR_PREFIX) as workdir:
        week = export_week(start, end, source, credentials, workdir)
        archive = week.path.open("rb")
    size = os.fstat(archive.fileno()).st_size
    response = current_app.response_class(_stream(archive, size), mimetype="application/zip")
    response.content_length = size
    response.headers.set("Content-Disposition", "attachment", filename=week.name)
    return response


def _stream(archive: BinaryIO, size: int) -> Iterator[bytes]:
    """The archive's ``size`` bytes. The file is closed (and, already unlinked, freed) before the last
    chunk is handed over, so it is gone by the time the client has the whole body, or when a stream
    is dropped. A stream never started (a HEAD request) holds the file until it is collected, which
    CPython does as soon as the response is."""
    with archive:
        remaining = size
        while remaining > 0 and (chunk := archive.read(min(_CHUNK_BYTES, remaining))):
            remaining -= len(chunk)
            if remaining <= 0:
                archive.close()
            yield chunk


# ------------------------------------------------------------------------------------------ OpenAPI


def openapi_paths() -> dict[str, Any]:
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
                    query("start", day, "First day, YYYYMMDD.", required=True),
                    query("end", day, "Last day, YYYYMMDD (inclusive).", required=True),
                    query(
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
                    "400": error_response(
                        "A bad date, range or source, or the export is larger than Amplitude allows."
                    ),
                    **errors("Unauthorized"),
                    "404": error_response("Amplitude has no data in this range."),
                    **errors("BadGateway", "ServiceUnavailable", "GatewayTimeout"),
                },
            }
        }
    }
