"""Where the Callio pipeline's settings live, and how they are read.

* Connection ``callio_api`` (type http): the API's base URL (``host``; without a scheme, the
  ``schema`` field's, else http, as Airflow's HttpHook reads it; ``port``) and, in its ``extra``, the tenant accounts (``accounts``: a list of
  ``{tenant, email, password}``) and the API tunables of the original service's ``.env``
  (:data:`EXTRA_KEYS`). Accounts may instead live in the Variable ``callio_accounts_secret``, whose name
  makes Airflow mask its value. Either way every password is registered with the secrets masker as soon
  as it is read, so it cannot reach a log line (but for Airflow's in-process test supervisor, which
  prints at DEBUG what is registered: see ``tests/dags/test_callio_logs.py``).
* Connection ``callio_warehouse``: ``duckdb`` (embedded) or ``google_cloud_platform`` (BigQuery), see
  :mod:`include.callio.warehouse`.
* The schedule: see :mod:`include.callio.schedule`.

The DAG file imports this module (through the schedule) when it is parsed, so it imports nothing heavy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from include.callio.types import DEFAULT_BASE_URL, Account, ApiSettings

API_CONN_ID = "callio_api"
WAREHOUSE_CONN_ID = "callio_warehouse"
ACCOUNTS_VARIABLE = "callio_accounts_secret"


class CallioConfigError(ValueError):
    """A setting that cannot be used; the message names the setting, never a secret value."""


# connection extra key -> (ApiSettings / RunSettings field, legacy .env key)
EXTRA_KEYS = {
    "api_timeout": ("timeout", "API_TIMEOUT"),
    "page_size": ("page_size", "API_PAGE_SIZE"),
    "time_slice_ms": ("time_slice_ms", "API_TIME_SLICE_MS"),
    "min_slice_ms": ("min_slice_ms", "API_MIN_SLICE_MS"),
    "limit_records_per_endpoint": ("limit_records", "LIMIT_RECORDS_PER_ENDPOINT"),
    "concurrency": ("concurrency", None),
    "overlap_ms": ("overlap_ms", "OVERLAP_MS"),
    "days_to_fetch_if_empty": ("days_to_fetch_if_empty", "DAYS_TO_FETCH_IF_EMPTY"),
    "update_log_retention_days": ("update_log_retention_days", None),
}
_RUN_FIELDS = {"overlap_ms", "days_to_fetch_if_empty", "update_log_retention_days"}


@dataclass(frozen=True)
class RunSettings:
    """How far back a tenant's window reaches, and how long the load history is kept."""

    overlap_ms: int = 180_000
    days_to_fetch_if_empty: int = 30
    update_log_retention_days: int | None = None
    """None: ``update_log`` keeps every row, as the original's load history did."""


@dataclass(frozen=True)
class CallioConfig:
    api: ApiSettings
    run: RunSettings
    accounts: tuple[Account, ...]

    @property
    def tenants(self) -> list[str]:
        return [account.tenant for account in self.accounts]

    def account(self, tenant: str) -> Account:
        for account in self.accounts:
            if account.tenant == tenant:
                return account
        raise CallioConfigError(f"tenant {tenant!r} has no account in {API_CONN_ID}")


# ---------------------------------------------------------------------------------------- connection


def parse_accounts(value: Any, source: str) -> tuple[Account, ...]:
    """Validate the ``[{tenant, email, password}, ...]`` list (JSON text or already parsed)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise CallioConfigError(f"{source}: accounts are not valid JSON (line {exc.lineno})") from None
    if not isinstance(value, list) or not value:
        raise CallioConfigError(f"{source}: accounts must be a non-empty list of {{tenant, email, password}}")
    accounts, seen = [], set()
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise CallioConfigError(f"{source}: account #{index + 1} is not an object")
        missing = [k for k in ("tenant", "email", "password") if not str(item.get(k) or "").strip()]
        if missing:
            raise CallioConfigError(f"{source}: account #{index + 1} lacks {', '.join(missing)}")
        tenant = str(item["tenant"]).strip()
        if tenant in seen:
            raise CallioConfigError(f"{source}: tenant {tenant!r} appears twice")
        seen.add(tenant)
        accounts.append(Account(tenant, str(item["email"]).strip(), str(item["password"])))
    return tuple(accounts)


def _number_setting(extra: dict[str, Any], key: str) -> float | None:
    """The tunable ``key`` of the extra: a whole number (seconds may have decimals for
    ``api_timeout``), positive, or 0 or more for ``overlap_ms``; None when absent."""
    value = extra.get(key)
    if value is None or value == "":
        return None
    text = str(value).strip()
    fractional = key == "api_timeout"
    try:
        number = float(text) if fractional else int(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        kind = "a number of seconds" if fractional else "a whole number"
        raise CallioConfigError(f"{API_CONN_ID} extra {key} must be {kind}, got {text!r}")
    if key == "overlap_ms" and number < 0:
        raise CallioConfigError(f"{API_CONN_ID} extra {key} must be 0 or more, got {text}")
    if key != "overlap_ms" and number <= 0:
        raise CallioConfigError(f"{API_CONN_ID} extra {key} must be positive, got {text}")
    return number


def config_from(
    host: str | None, schema: str | None, port: int | None, extra: dict[str, Any], accounts: Any
) -> CallioConfig:
    """Build the configuration from a connection's fields (pure: no Airflow needed)."""
    api_fields: dict[str, Any] = {"base_url": _base_url(host, schema, port)}
    run_fields: dict[str, Any] = {}
    for key, (field_name, _) in EXTRA_KEYS.items():
        number = _number_setting(extra, key)
        if number is not None:
            (run_fields if field_name in _RUN_FIELDS else api_fields)[field_name] = number
    window = ApiSettings.max_result_window
    if api_fields.get("page_size", 0) > window:
        raise CallioConfigError(
            f"{API_CONN_ID} extra page_size {api_fields['page_size']} is more than the Callio API pages "
            f"through: it answers no record past the first {window:,} of a query (its result window), so "
            f"use {window:,} or less (the default is {ApiSettings.page_size}; public clients use 100 to 500)"
        )
    return CallioConfig(
        ApiSettings(**api_fields), RunSettings(**run_fields), parse_accounts(accounts, API_CONN_ID)
    )


def load_config(conn_id: str = API_CONN_ID) -> CallioConfig:
    """Read the ``callio_api`` connection (inside a task) and mask every password it holds."""
    from airflow.sdk import BaseHook, Variable
    from airflow.sdk.log import mask_secret

    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson or {}
    accounts = extra.get("accounts")
    source = f"{conn_id} extra accounts"
    if accounts is None:
        accounts = Variable.get(ACCOUNTS_VARIABLE, default=None)
        source = f"Variable {ACCOUNTS_VARIABLE}"
        if accounts is None:
            raise CallioConfigError(
                f"no tenant accounts: set {conn_id} extra 'accounts' or Variable {ACCOUNTS_VARIABLE}"
            )
    try:
        config = config_from(conn.host, conn.schema, conn.port, extra, accounts)
    except CallioConfigError as exc:
        raise CallioConfigError(str(exc).replace(API_CONN_ID + ":", source + ":", 1)) from None
    for account in config.accounts:
        mask_secret(account.password)
    return config


def _base_url(host: str | None, schema: str | None, port: int | None) -> str:
    # httpx comes with the helper: imported here, not when the DAG file is parsed.
    from include.common.httputil import connection_base_url

    return connection_base_url(host, schema, port, default=DEFAULT_BASE_URL)
