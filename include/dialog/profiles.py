"""Which databases a run uses: the AICO test/prod profile chosen by the ``AICO_HOST`` Variable.

The original service kept one ``.env`` per machine and switched test and prod by changing a single
value, ``AICO_HOST``. Its rules, in Airflow terms:

* ``AICO_HOST`` equal to ``AICO_HOST_TEST`` selects the TEST profile, equal to ``AICO_HOST_PROD`` the
  PROD profile; otherwise (either of them unset, or no match) the default connections
  ``dialog_src`` / ``dialog_dst`` are used.
* A profile's database serves source and target: ``dialog_src_<profile>`` and
  ``dialog_dst_<profile>`` (``TEST_URL`` / ``PROD_URL`` import into both; explicit ``SRC_DB_*`` /
  ``DST_DB_*`` keys win for their side, so the importer then copies the default connection of that side
  into the profile's). The target alone can be moved by ``TEST_DST_URL`` / ``PROD_DST_URL``, which
  import into ``dialog_dst_<profile>`` only: so a profile without a source connection reads from
  ``dialog_src``, and the resolution says so.
* A profile without its target connection is a configuration error naming the connection: the target
  holds the scenarios and receives the writes, and silently using the default one is exactly what
  switching ``AICO_HOST`` is meant to avoid. ``AICO_HOST_TEST`` equal to ``AICO_HOST_PROD`` is refused
  too: the profile would be a coin toss.

:func:`resolve` is pure (values in, connection ids out) so that every case is a table-driven test;
:func:`resolve_at_run_time` reads the Variables and connections inside a task, never at parse time,
so changing the Variable switches the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from include.dialog.config import (
    AICO_HOST_PROD_VARIABLE,
    AICO_HOST_TEST_VARIABLE,
    AICO_HOST_VARIABLE,
    DEFAULT_PROFILE,
    SOURCE_CONN_ID,
    TARGET_CONN_ID,
    profile_conn_id,
)

log = logging.getLogger(__name__)


class ProfileError(ValueError):
    """The Variables select a profile that cannot be used; the message names what is missing."""


@dataclass(frozen=True)
class Resolution:
    """The connections of one run and why. Holds ids and host names only, never credentials."""

    profile: str
    """TEST, PROD or DEFAULT."""
    source_conn_id: str
    target_conn_id: str
    aico_host: str | None
    """The AICO_HOST value the choice was made with (the scenario rows are matched against it)."""

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def select_profile(aico_host: str | None, host_test: str | None, host_prod: str | None) -> str:
    """TEST, PROD or DEFAULT by the original's rule (values compared after trimming blanks)."""
    aico_host, host_test, host_prod = _clean(aico_host), _clean(host_test), _clean(host_prod)
    if host_test is not None and host_test == host_prod:
        raise ProfileError(
            f"{AICO_HOST_TEST_VARIABLE} and {AICO_HOST_PROD_VARIABLE} are both {host_test!r}: "
            "the profile would be ambiguous; give the two environments different hosts"
        )
    if aico_host is None:
        return DEFAULT_PROFILE
    if aico_host == host_test:
        return "TEST"
    if aico_host == host_prod:
        return "PROD"
    return DEFAULT_PROFILE


def resolve(
    aico_host: str | None,
    host_test: str | None,
    host_prod: str | None,
    connection_exists: Callable[[str], bool],
    *,
    source_conn_id: str = SOURCE_CONN_ID,
    target_conn_id: str = TARGET_CONN_ID,
) -> Resolution:
    """The connection ids to use, from the three Variables and the connections that exist."""
    profile = select_profile(aico_host, host_test, host_prod)
    if profile == DEFAULT_PROFILE:
        return Resolution(profile, source_conn_id, target_conn_id, _clean(aico_host))
    source = profile_conn_id(source_conn_id, profile)
    target = profile_conn_id(target_conn_id, profile)
    if not connection_exists(target):
        raise ProfileError(
            f"{AICO_HOST_VARIABLE}={_clean(aico_host)!r} selects the {profile} profile, but its target "
            f"connection {target} does not exist: create it (a legacy .env's {profile}_URL or "
            f"{profile}_DST_URL imports into it), or change {AICO_HOST_VARIABLE} / AICO_HOST_{profile}"
        )
    if not connection_exists(source):
        source = source_conn_id  # only the target was moved (<PROFILE>_DST_URL)
    return Resolution(profile, source, target, _clean(aico_host))


def resolve_at_run_time(
    source_conn_id: str = SOURCE_CONN_ID, target_conn_id: str = TARGET_CONN_ID
) -> Resolution:
    """:func:`resolve` with the Airflow Variables and connections of this moment (call it in a task)."""
    from airflow.sdk import Variable

    values = [
        Variable.get(name, default=None)
        for name in (AICO_HOST_VARIABLE, AICO_HOST_TEST_VARIABLE, AICO_HOST_PROD_VARIABLE)
    ]
    return resolve(*values, connection_exists, source_conn_id=source_conn_id, target_conn_id=target_conn_id)


def profile_for_run() -> dict[str, str | None]:
    """What a DAG's ``resolve_profile`` task returns (its XCom): the resolution, logged. A profile
    error fails the task without retries: a missing connection does not appear by waiting."""
    from include.common.dag_defaults import fail_without_retry

    with fail_without_retry(ProfileError):
        resolution = resolve_at_run_time()
    log.info(
        "profile %s (AICO_HOST=%s): source %s, target %s",
        resolution.profile,
        resolution.aico_host,
        resolution.source_conn_id,
        resolution.target_conn_id,
    )
    return resolution.as_dict()


def connection_exists(conn_id: str) -> bool:
    """Whether Airflow knows ``conn_id`` (environment, secrets backend or metadata DB)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True
