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
file, and sent from there; the directory goes once the response is closed, or at once on failure.
Nothing of it is held in memory.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from flask import Blueprint, Response, send_file
from werkzeug.exceptions import BadRequest

from dwh_helper.services import register_upstream_errors, required_arg, services
from include.dwh.amplitude import (
    AmplitudeAuthError,
    AmplitudeConfigError,
    AmplitudeError,
    AmplitudeTimeout,
    ExportTooLarge,
    NoData,
    export_week,
    validate_range,
    validate_source,
)

amplitude = Blueprint("amplitude", __name__, url_prefix="/amplitude")

#: Status of each failure, the most specific class first (looked up along the exception's MRO).
ERROR_STATUS: dict[type[Exception], int] = {
    NoData: 404,
    ExportTooLarge: 400,
    AmplitudeTimeout: 504,
    AmplitudeAuthError: 502,
    AmplitudeError: 502,
}


register_upstream_errors(amplitude, ERROR_STATUS, "Amplitude")


@amplitude.get("/export")
def export() -> Response:
    try:
        start, end = validate_range(required_arg("start"), required_arg("end"))
        source = validate_source(required_arg("source"))
    except AmplitudeConfigError as exc:
        raise BadRequest(f"{exc}.") from None
    credentials = services().amplitude(source)
    with contextlib.ExitStack() as cleanup:
        workdir = _export_dir(services().settings.amplitude_workdir)
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        week = export_week(start, end, source, credentials, workdir)
        response = send_file(
            week.path,
            mimetype="application/zip",
            as_attachment=True,
            download_name=week.name,
            conditional=False,
            etag=False,
        )
        # Werkzeug hands a direct-passthrough body to the server as it is, and then the response's
        # close (and so the callback) would never run.
        response.direct_passthrough = False
        response.call_on_close(cleanup.pop_all().close)
    return response


def _export_dir(parent: str | None) -> Path:
    """A new directory for one export, under ``parent`` (created if need be) or the system's
    temporary directory."""
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="amplitude-export-", dir=parent))
