"""Where the AICO knowledge sync's settings live, and how they are read.

* Connection ``aico_api`` (type http): the API's base URL in ``host``. ``{AICO_HOST}`` in it is replaced
  by the ``AICO_HOST`` Variable of the run (``http://{AICO_HOST}:8080``), so switching that Variable
  switches the AICO server together with the databases, as in the original service; without a host the
  base URL is ``http://<AICO_HOST>``. Its ``extra`` holds the tunables below and, under ``contract``,
  overrides of the endpoint paths and field names (:mod:`include.aico.contract`).
* The AICO account, project and knowledge base of a scenario come from its ``scenarios`` row
  (:mod:`include.aico.scenarios`); the databases from the profile (:mod:`include.dialog.profiles`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from include.aico.contract import Contract, ContractError
from include.common.httputil import connection_base_url

API_CONN_ID = "aico_api"
HOST_PLACEHOLDER = "{AICO_HOST}"


class AicoConfigError(ValueError):
    """The aico_api connection cannot be used as it is; the message names the field."""


@dataclass(frozen=True)
class AicoSettings:
    base_url: str
    contract: Contract = field(default_factory=Contract)
    timeout_s: float = 30.0
    attempts: int = 5
    """Tries per request on 429, 5xx and network errors, the first included."""
    backoff_s: float = 0.5
    """First wait between tries; it doubles each time (``Retry-After`` wins, capped at max_wait_s)."""
    max_wait_s: float = 30.0
    token_ttl_s: float = 1200.0
    """Token lifetime when AICO does not say; a 401 gets a new token and one retry anyway."""


_NUMBERS = {
    "timeout_s": float,
    "attempts": int,
    "backoff_s": float,
    "max_wait_s": float,
    "token_ttl_s": float,
}


def settings_from(
    host: str | None, schema: str | None, port: int | None, extra: dict[str, Any], aico_host: str | None
) -> AicoSettings:
    """Build the settings from a connection's fields and the run's AICO_HOST (pure)."""
    host = (host or "").strip()
    if HOST_PLACEHOLDER in host or not host:
        if not aico_host:
            raise AicoConfigError(
                f"{API_CONN_ID} needs the AICO_HOST Variable (its host is {host or 'empty'}); set AICO_HOST"
                " or give the connection a full host"
            )
        host = host.replace(HOST_PLACEHOLDER, aico_host) if host else aico_host
    base_url = connection_base_url(host, schema, port, default="")
    values: dict[str, Any] = {}
    for key, kind in _NUMBERS.items():
        if extra.get(key) in (None, ""):
            continue
        try:
            number = kind(extra[key])
        except (TypeError, ValueError):
            number = math.nan
        if not (isinstance(number, int) or math.isfinite(number)) or number <= 0:
            raise AicoConfigError(f"{API_CONN_ID} extra {key} must be a positive number, got {extra[key]!r}")
        values[key] = number
    try:
        contract = Contract.from_extra(extra.get("contract"), f"{API_CONN_ID} extra contract")
    except ContractError as exc:
        raise AicoConfigError(str(exc)) from None
    return AicoSettings(base_url=base_url, contract=contract, **values)


def load_settings(aico_host: str | None, conn_id: str = API_CONN_ID) -> AicoSettings:
    """Read the ``aico_api`` connection inside a task."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return settings_from(conn.host, conn.schema, conn.port, conn.extra_dejson or {}, aico_host)
