"""The Callio ETL's legacy ``.env`` keys, registered with :mod:`include.common.legacy_env`.

Accounts (``CALLIO_ACCOUNTS_JSON`` or ``CALLIO_ACCOUNTS_FILE``), the base URL and the API tunables
become the ``callio_api`` connection (accounts in its extra); the service account and ``BQ_*`` become a
``google_cloud_platform`` ``callio_warehouse`` connection; ``SCHEDULER_*`` come back as notes naming
the environment variables the DAG reads. A ``*_FILE`` path is read relative to the .env's directory,
and its content is stored, since the file will not exist where Airflow runs.
"""

from __future__ import annotations

import json
from typing import Any

from include.callio.config import (
    API_CONN_ID,
    EXTRA_KEYS,
    WAREHOUSE_CONN_ID,
    CallioConfigError,
    parse_accounts,
)
from include.callio.schedule import DEFAULT_RUN_TIMES_UTC, parse_times
from include.callio.types import DEFAULT_BASE_URL
from include.common.legacy_env import Entry, ImportResult, LegacyEnv, register

TUNABLE_KEYS = {legacy: extra for extra, (_, legacy) in EXTRA_KEYS.items() if legacy}
BIGQUERY_DEFAULTS = {
    "project": "rio-system-migration",
    "dataset": "dev_callio",
    "location": "asia-southeast1",
}


def _inline_or_file(env: LegacyEnv, key: str) -> tuple[Entry, str] | None:
    """``<key>_JSON`` wins over ``<key>_FILE``, as in the original loader."""
    inline = env.entry(f"{key}_JSON")
    if inline is not None:
        return inline, inline.value
    path = env.entry(f"{key}_FILE")
    return (path, env.read_file(path)) if path is not None else None


def _api_connection(result: ImportResult) -> dict[str, Any]:
    conn = result.connections.get(API_CONN_ID)
    if conn is None:
        conn = result.set_connection(API_CONN_ID, conn_type="http", conn_host=DEFAULT_BASE_URL, conn_extra={})
    conn.setdefault("conn_extra", {})
    return conn


@register("CALLIO_ACCOUNTS_JSON", "CALLIO_ACCOUNTS_FILE", "CALLIO_API_BASE_URL", order=10)
def map_callio_api(env: LegacyEnv, result: ImportResult) -> None:
    """The API connection: base URL, and the tenant accounts (validated, kept as a list)."""
    conn = _api_connection(result)
    url = env.value("CALLIO_API_BASE_URL")
    if url is not None:
        if not url.startswith(("http://", "https://")):
            raise env.entry("CALLIO_API_BASE_URL").fail("must be an http(s) URL")
        conn["conn_host"] = url.rstrip("/")
    found = _inline_or_file(env, "CALLIO_ACCOUNTS")
    if found is None:
        result.note(
            f"warning: no CALLIO_ACCOUNTS_JSON/_FILE: add the accounts to {API_CONN_ID} extra 'accounts'"
        )
        return
    entry, text = found
    try:
        accounts = parse_accounts(text, entry.key)
    except CallioConfigError as exc:
        raise entry.fail(str(exc).removeprefix(f"{entry.key}: ")) from None
    conn["conn_extra"]["accounts"] = [
        {"tenant": a.tenant, "email": a.email, "password": a.password} for a in accounts
    ]
    result.note(f"{API_CONN_ID}: {len(accounts)} tenant account(s): {', '.join(a.tenant for a in accounts)}")


@register(*TUNABLE_KEYS, order=20)
def map_api_tunables(env: LegacyEnv, result: ImportResult) -> None:
    """``API_*``, ``LIMIT_RECORDS_PER_ENDPOINT``, ``OVERLAP_MS``, ``DAYS_TO_FETCH_IF_EMPTY``: connection extra."""
    extra = _api_connection(result)["conn_extra"]
    for legacy, key in TUNABLE_KEYS.items():
        entry = env.entry(legacy)
        if entry is None:
            continue
        text = entry.value.strip()
        try:
            number = float(text) if key == "api_timeout" else int(text)
        except ValueError:
            raise entry.fail("must be a number") from None
        if number < 0 or (number == 0 and key != "overlap_ms"):
            raise entry.fail("must be positive")
        extra[key] = number


@register(
    "SERVICE_ACCOUNT_KEY_JSON",
    "SERVICE_ACCOUNT_KEY_FILE",
    "BQ_PROJECT_ID",
    "BQ_DATASET_ID",
    "BQ_LOCATION",
    order=10,
)
def map_bigquery(env: LegacyEnv, result: ImportResult) -> None:
    """BigQuery becomes the warehouse: a google_cloud_platform connection with the key inline."""
    extra: dict[str, Any] = {
        key: env.value(f"BQ_{legacy}") or default
        for (key, default), legacy in zip(
            BIGQUERY_DEFAULTS.items(), ("PROJECT_ID", "DATASET_ID", "LOCATION"), strict=True
        )
    }
    found = _inline_or_file(env, "SERVICE_ACCOUNT_KEY")
    if found is not None:
        entry, text = found
        try:
            key = json.loads(text)
        except json.JSONDecodeError:
            raise entry.fail("is not a JSON service-account key") from None
        if not isinstance(key, dict) or "private_key" not in key or "client_email" not in key:
            raise entry.fail("is not a service-account key (needs private_key and client_email)")
        extra["keyfile_dict"] = json.dumps(key)
        if not env.value("BQ_PROJECT_ID") and key.get("project_id"):
            extra["project"] = key["project_id"]
    else:
        result.note(f"{WAREHOUSE_CONN_ID}: no service-account key: Application Default Credentials are used")
    result.set_connection(WAREHOUSE_CONN_ID, conn_type="google_cloud_platform", conn_extra=extra)


@register("SCHEDULER_RUN_TIMES_UTC", "SCHEDULER_STAFF_GROUP_TIME_UTC", order=40)
def note_schedule(env: LegacyEnv, result: ImportResult) -> None:
    """The schedule is part of the DAG, read from the DAG processor's environment."""
    for legacy, variable in (
        ("SCHEDULER_RUN_TIMES_UTC", "CALLIO_RUN_TIMES_UTC"),
        ("SCHEDULER_STAFF_GROUP_TIME_UTC", "CALLIO_STAFF_GROUP_TIME_UTC"),
    ):
        entry = env.entry(legacy)
        if entry is None:
            continue
        try:
            times = ",".join(parse_times(entry.value, legacy))
        except CallioConfigError as exc:
            raise entry.fail(str(exc).removeprefix(f"{legacy}: ")) from None
        if legacy == "SCHEDULER_RUN_TIMES_UTC" and times == DEFAULT_RUN_TIMES_UTC:
            result.note(f"{legacy} is the default schedule ({times} UTC): nothing to set")
        else:
            result.note(f"set {variable}={times} in the scheduler/dag-processor environment (UTC)")
