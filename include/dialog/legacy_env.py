"""The dialog ETL's legacy ``.env`` keys, registered with :mod:`include.common.legacy_env`.

``url`` + ``username``/``password`` was the one MySQL server holding both dialog tables; ``SRC_DB_*`` /
``DST_DB_*`` split source and target; ``TEST_*`` / ``PROD_*`` and ``AICO_HOST*`` were the AICO database
profiles; ``ETL_MAX_WORKERS`` sized the worker pool; ``ETL_CRON``, ``APP_TIMEZONE`` and ``LOG_LEVEL``
are no Airflow objects and come back as notes saying where they live now.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from include.common.legacy_env import (
    MYSQL_DEFAULT_PORT,
    Entry,
    Handler,
    ImportResult,
    LegacyEnv,
    MysqlServer,
    parse_jdbc_mysql,
    register,
    set_mysql_connection,
    split_host_port,
)

DIALOG_TIMEZONE = "Asia/Shanghai"
DIALOG_DEFAULT_CRON = "0 1 * * *"
DIALOG_POOL = "dialog_etl"
DIALOG_POOL_DESCRIPTION = "Caps the group_codes dialog_etl processes at once (ETL_MAX_WORKERS)"
LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL"}


def _url_notes(result: ImportResult, entry: Entry, server: MysqlServer) -> None:
    """serverTimezone stays out of the connection: the dialog times are read as Shanghai local time."""
    tz = server.params.get("serverTimezone")
    if tz and tz != DIALOG_TIMEZONE:
        result.note(
            f"warning: {entry.key} has serverTimezone={tz}, but the dialog times are read as "
            f"{DIALOG_TIMEZONE} local time; check the source columns hold {DIALOG_TIMEZONE} times"
        )
    for name in server.params:
        if name != "serverTimezone":
            result.note(f"ignored: {entry.key} parameter {name}")


def _server(env: LegacyEnv, key: str, result: ImportResult) -> MysqlServer | None:
    entry = env.entry(key)
    if entry is None:
        return None
    server = parse_jdbc_mysql(entry)
    _url_notes(result, entry, server)
    return server


@register("url", "username", "password", order=10)
def map_dialog_url(env: LegacyEnv, result: ImportResult) -> None:
    """``url`` + ``username``/``password``: the one server that held both dialog tables."""
    server = _server(env, "url", result)
    if server is None:
        if not env.has_any(["SRC_DB_HOST", "DST_DB_HOST"]):
            result.note("ignored: username/password (no url or SRC_DB_HOST/DST_DB_HOST to use them with)")
        return
    login = env.value("username") or server.login
    password = env.value("password") or server.password
    for conn_id in ("dialog_src", "dialog_dst"):
        set_mysql_connection(result, conn_id, server, login, password)


def _override_handler(prefix: str, conn_id: str) -> Handler:
    def override(env: LegacyEnv, result: ImportResult) -> None:
        host_entry, name = env.entry(f"{prefix}_DB_HOST"), env.value(f"{prefix}_DB_NAME")
        conn = result.connections.get(conn_id)
        if conn is None:
            if host_entry is None:
                first = next(e for k, e in env.entries.items() if k.startswith(f"{prefix}_DB_") and e.value)
                raise first.fail(f"needs url or {prefix}_DB_HOST to know the server of {conn_id}")
            conn = result.set_connection(
                conn_id,
                conn_type="mysql",
                conn_port=MYSQL_DEFAULT_PORT,
                conn_login=env.value("username"),
                conn_password=env.value("password"),
            )
        if host_entry is not None:
            host, port = split_host_port(host_entry.value, host_entry)
            conn["conn_host"] = host
            conn["conn_port"] = port or conn.get("conn_port") or MYSQL_DEFAULT_PORT
        conn["conn_schema"] = name or conn.get("conn_schema")
        conn["conn_login"] = env.value(f"{prefix}_DB_USER") or conn.get("conn_login")
        conn["conn_password"] = env.value(f"{prefix}_DB_PASSWORD") or conn.get("conn_password")

    override.__doc__ = f"``{prefix}_DB_*`` amend ``{conn_id}`` (host ``host[:port]``, name = schema)."
    return override


for _prefix, _conn_id in (("SRC", "dialog_src"), ("DST", "dialog_dst")):
    register(*(f"{_prefix}_DB_{part}" for part in ("HOST", "NAME", "USER", "PASSWORD")), order=20)(
        _override_handler(_prefix, _conn_id)
    )


@register("AICO_HOST", "AICO_HOST_TEST", "AICO_HOST_PROD", order=30)
def map_aico_hosts(env: LegacyEnv, result: ImportResult) -> None:
    """The AICO host and the two hosts that select the test / prod database profile."""
    for key in ("AICO_HOST", "AICO_HOST_TEST", "AICO_HOST_PROD"):
        if env.value(key) is not None:
            result.set_variable(key, env.value(key))
    host = env.value("AICO_HOST")
    for profile in ("TEST", "PROD"):
        if host is not None and host == env.value(f"AICO_HOST_{profile}"):
            suffix = profile.lower()
            result.note(f"AICO_HOST selects the {suffix} profile (dialog_src_{suffix} / dialog_dst_{suffix})")


def _profile_handler(profile: str) -> Handler:
    suffix = profile.lower()

    def profile_connections(env: LegacyEnv, result: ImportResult) -> None:
        login = env.value(f"{profile}_USERNAME") or env.value("username")
        password = env.value(f"{profile}_PASSWORD") or env.value("password")
        server = _server(env, f"{profile}_URL", result)
        if server is not None:
            for conn_id in (f"dialog_src_{suffix}", f"dialog_dst_{suffix}"):
                set_mysql_connection(
                    result, conn_id, server, login or server.login, password or server.password
                )
        dst_login = env.value(f"{profile}_DST_USERNAME") or login
        dst_password = env.value(f"{profile}_DST_PASSWORD") or password
        dst_server = _server(env, f"{profile}_DST_URL", result)
        if dst_server is not None:
            set_mysql_connection(
                result,
                f"dialog_dst_{suffix}",
                dst_server,
                dst_login or dst_server.login,
                dst_password or dst_server.password,
            )
        elif server is not None and env.has_any([f"{profile}_DST_USERNAME", f"{profile}_DST_PASSWORD"]):
            conn = result.connections[f"dialog_dst_{suffix}"]
            conn["conn_login"], conn["conn_password"] = dst_login, dst_password
        if server is None and dst_server is None:
            result.note(f"ignored: {profile}_* credentials (no {profile}_URL or {profile}_DST_URL)")

    profile_connections.__doc__ = f"``{profile}_URL`` -> dialog_src_{suffix} + dialog_dst_{suffix}; ``{profile}_DST_URL`` overrides the dst."
    return profile_connections


for _profile in ("TEST", "PROD"):
    register(
        *(
            f"{_profile}_{part}"
            for part in ("URL", "USERNAME", "PASSWORD", "DST_URL", "DST_USERNAME", "DST_PASSWORD")
        ),
        order=30,
    )(_profile_handler(_profile))


@register("ETL_MAX_WORKERS", order=40)
def map_max_workers(env: LegacyEnv, result: ImportResult) -> None:
    """The mapped group_code tasks run in the dialog_etl pool: its slots are the concurrency.

    A pool, not a Variable, because concurrency must be known to the scheduler, and a pool's size can
    change at runtime (UI: Admin > Pools) without re-parsing the DAG; it also caps overlapping runs
    together, as the original service's worker pool did."""
    entry = env.entry("ETL_MAX_WORKERS")
    if entry is None:
        return
    if not re.fullmatch(r"[0-9]+", entry.value.strip()) or int(entry.value) < 1:
        raise entry.fail("must be a whole number of at least 1")
    workers = int(entry.value)
    result.set_pool(DIALOG_POOL, workers, DIALOG_POOL_DESCRIPTION)


@register("ETL_CRON", order=40)
def note_cron(env: LegacyEnv, result: ImportResult) -> None:
    """The schedule is part of the DAG, read from DIALOG_ETL_CRON when the DAG file is parsed."""
    entry = env.entry("ETL_CRON")
    if entry is None:
        return
    cron = " ".join(entry.value.split())
    if not _valid_cron(cron):
        raise entry.fail("is not a cron expression (five fields, e.g. '0 1 * * *')")
    if cron == DIALOG_DEFAULT_CRON:
        result.note(
            f"ETL_CRON is the default schedule ({DIALOG_DEFAULT_CRON} {DIALOG_TIMEZONE}): nothing to set"
        )
    else:
        result.note(
            f"set DIALOG_ETL_CRON='{cron}' in the scheduler/dag-processor environment "
            f"(read as {DIALOG_TIMEZONE} time)"
        )


def _valid_cron(cron: str) -> bool:
    if len(cron.split()) != 5:
        return False
    try:
        from croniter import croniter
    except ImportError:  # croniter ships with Airflow; without it the field count is the check
        return True
    return bool(croniter.is_valid(cron))


@register("APP_TIMEZONE", order=40)
def note_timezone(env: LegacyEnv, result: ImportResult) -> None:
    """The dialog_etl DAG works in Shanghai days whatever the old service was told."""
    entry = env.entry("APP_TIMEZONE")
    if entry is None:
        return
    try:
        ZoneInfo(entry.value)
    except (ZoneInfoNotFoundError, ValueError):
        raise entry.fail("is not a known time zone name (e.g. Asia/Shanghai)") from None
    if entry.value != DIALOG_TIMEZONE:
        result.note(
            f"warning: APP_TIMEZONE={entry.value}, but the dialog times are read as "
            f"{DIALOG_TIMEZONE} local time and the schedule runs in {DIALOG_TIMEZONE}"
        )


@register("LOG_LEVEL", order=40)
def note_log_level(env: LegacyEnv, result: ImportResult) -> None:
    """Airflow configures logging itself; the old level becomes an Airflow setting."""
    entry = env.entry("LOG_LEVEL")
    if entry is None:
        return
    level = entry.value.strip().upper()
    if level not in LOG_LEVELS:
        raise entry.fail(f"must be one of {', '.join(sorted(LOG_LEVELS))}")
    level = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)
    result.note(f"set AIRFLOW__LOGGING__LOGGING_LEVEL={level} in the Airflow environment for LOG_LEVEL")


# --------------------------------------------------------------------------------------------- CLI
