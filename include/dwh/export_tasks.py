"""Entry points the export DAGs call: params and context in, XCom-friendly summaries out.

Connections are read here, at run time (:mod:`include.dwh.config`), and every temporary file lives in
a locked work directory of the task's own (:mod:`include.common.workdir`), removed however the task
ends; directories left by killed workers are removed at the start of the next task.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from typing import Any

from include.common.dag_defaults import fail_without_retry
from include.common.workdir import remove_abandoned, work_directory
from include.dwh.config import DWH_CONN_ID, EXPORT_WORKDIR_ENV

log = logging.getLogger(__name__)


def workdir_parent() -> str | None:
    return os.environ.get(EXPORT_WORKDIR_ENV) or None


def amplitude_plan_task(params: Mapping[str, Any], moment: dt.datetime) -> list[dict[str, str]]:
    """The (source, range) jobs of this run; bad params fail at once, without retries."""
    from include.dwh.amplitude import AmplitudeConfigError
    from include.dwh.amplitude_export import plan

    with fail_without_retry(ValueError, AmplitudeConfigError):
        return plan(params, moment)


def amplitude_source_task(job: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    """One source's branch: export, store in S3, load the seven tables (idempotent)."""
    from include.common.db import engine_for
    from include.dwh.amplitude import AmplitudeAuthError, load_credentials
    from include.dwh.amplitude_export import LOAD_BATCH_ROWS, WORKDIR_PREFIX, export_store_load
    from include.dwh.amplitude_split import EventFormatError
    from include.dwh.exports import ensure_load_log
    from include.dwh.s3 import S3Store
    from include.dwh.validation import ValidationError

    engine = engine_for(DWH_CONN_ID)
    ensure_load_log(engine)
    store = S3Store.from_connection()
    credentials = load_credentials(job["source"])
    parent = workdir_parent()
    remove_abandoned(parent, WORKDIR_PREFIX)
    with (
        fail_without_retry(AmplitudeAuthError, EventFormatError, ValidationError),
        work_directory(parent, WORKDIR_PREFIX) as workdir,
    ):
        return export_store_load(
            job,
            credentials,
            store,
            engine,
            workdir,
            attempts=int(params.get("attempts", 4)),
            backoff_s=float(params.get("backoff_seconds", 5.0)),
            max_rows=int(params.get("batch_rows", LOAD_BATCH_ROWS)),
        )


def export_summary_task(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Every branch's summary, keyed by source (or resource), plus the totals."""
    # By index: iterating Airflow's lazy sequence of mapped results probes one past the end (an error log).
    results = [results[index] for index in range(len(results))]
    return {
        "sources": {result["source"]: result for result in results},
        "events": sum(result["events"] for result in results),
        "no_data": sorted(result["source"] for result in results if result["status"] == "no data"),
    }


def appmetrica_plan_task(params: Mapping[str, Any], moment: dt.datetime) -> list[dict[str, Any]]:
    """The (resource, day) jobs of this run; bad params fail at once, without retries."""
    from include.dwh.appmetrica_export import plan
    from include.dwh.appmetrica_exports import AppMetricaConfigError

    with fail_without_retry(ValueError, AppMetricaConfigError):
        return plan(params, moment)


def appmetrica_store_if_ready(job: Mapping[str, Any]) -> dict[str, Any] | None:
    """Ask for the job's export once; if it is ready, stream it into S3 and say where, else None."""
    from include.dwh.appmetrica import AppMetricaAuthError, AppMetricaRequestError, load_settings
    from include.dwh.appmetrica_export import WORKDIR_PREFIX, download, object_key
    from include.dwh.s3 import S3Store

    settings = load_settings()
    parent = workdir_parent()
    remove_abandoned(parent, WORKDIR_PREFIX)
    with (
        fail_without_retry(AppMetricaAuthError, AppMetricaRequestError),
        work_directory(parent, WORKDIR_PREFIX) as workdir,
    ):
        target = workdir / "export.json"
        size = download(job, settings, target)
        if size is None:
            return None
        key = object_key(job["resource"], job["day"])
        with open(target, "rb") as body:
            S3Store.from_connection().upload(key, body, content_type="application/json")
    log.info("AppMetrica %s %s: %d bytes stored at %s", job["resource"], job["day"], size, key)
    return {"resource": job["resource"], "day": job["day"], "key": key, "bytes": size}


def appmetrica_load_task(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Load the stored export of one (resource, day) into the tables it maps to (idempotent)."""
    from include.common.db import engine_for
    from include.dwh.appmetrica_export import WORKDIR_PREFIX, load_export
    from include.dwh.exports import ensure_load_log
    from include.dwh.s3 import S3Store

    engine = engine_for(DWH_CONN_ID)
    ensure_load_log(engine)
    parent = workdir_parent()
    with work_directory(parent, WORKDIR_PREFIX) as workdir:
        path = workdir / "export.json"
        with S3Store.from_connection().download(stored["key"]) as body, open(path, "wb") as out:
            for chunk in body.chunks():
                out.write(chunk)
        exported, rows = load_export(engine, path, stored["resource"], stored["day"])
    return {**stored, "source": stored["resource"], "status": "loaded", "rows": rows, "events": exported}
