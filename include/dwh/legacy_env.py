"""The DWH helper service's legacy ``.env`` keys, registered with :mod:`include.common.legacy_env`.

``DWH_DATABASE_URL`` (a SQLAlchemy URL) becomes the ``dwh_db`` connection, ``S3_*`` the ``dwh_s3``
(aws) connection, ``APPMETRICA_*`` the ``appmetrica_api`` connection, ``AMPLITUDE_{WEB,MOBILE}_*`` the
``amplitude_web`` / ``amplitude_mobile`` connections; the write limits and polling defaults become the
Variables the plugin reads. The FastAPI app's own settings (``TITLE``, ``VERSION``, ``DESCRIPTION``,
``DEBUG``, ``LOGGING_LEVEL``) come back as notes: the plugin is served by the Airflow API server.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from include.common.legacy_env import Entry, ImportResult, LegacyEnv, register
from include.dwh.config import AMPLITUDE_CONN_IDS, APPMETRICA_CONN_ID, DWH_CONN_ID, S3_CONN_ID

# legacy key -> (Variable name, smallest allowed value)
LIMIT_VARIABLES = {
    "DWH_MAX_ROWS_PER_INSERT": ("dwh_max_rows_per_insert", 1),
    "DWH_MAX_WRITE_BATCH_BYTES": ("dwh_max_write_batch_bytes", 1024),
    "APPMETRICA_POLL_INTERVAL_SECONDS": ("appmetrica_poll_interval_seconds", 1),
    "APPMETRICA_POLL_TIMEOUT_SECONDS": ("appmetrica_poll_timeout_seconds", 1),
}
URL_SCHEMES = {"postgresql": "postgres", "postgres": "postgres", "mysql": "mysql", "mariadb": "mysql"}


def _whole_number(entry: Entry, minimum: int) -> str:
    text = entry.value.strip()
    if not re.fullmatch(r"[0-9]+", text) or int(text) < minimum:
        raise entry.fail(f"must be a whole number of at least {minimum}")
    return str(int(text))


@register("DWH_DATABASE_URL", order=10)
def map_dwh_database(env: LegacyEnv, result: ImportResult) -> None:
    """``sqlite:///path`` -> a sqlite connection; ``postgresql[+driver]://`` / ``mysql[+driver]://`` -> a
    server connection with the URL's user, password, host, port and database."""
    entry = env.entry("DWH_DATABASE_URL")
    url = entry.value.strip()
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        path = url.split("://", 1)[1].lstrip("/") if url.startswith("sqlite:///") else ""
        if not path or path == ":memory:":
            raise entry.fail("a sqlite URL needs a file (sqlite:///path/to/dwh.db)")
        absolute = url.startswith("sqlite:////")
        host = "/" + path if absolute else path.removeprefix("./")
        result.set_connection(DWH_CONN_ID, conn_type="sqlite", conn_host=host)
        if not absolute:
            result.note(f"{DWH_CONN_ID}: the relative sqlite file {host} now lives under PIPELINES_DATA_DIR")
        return
    if scheme not in URL_SCHEMES:
        raise entry.fail("expected a sqlite:///, postgresql:// or mysql:// URL")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise entry.fail("the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise entry.fail("has no host name")
    result.set_connection(
        DWH_CONN_ID,
        conn_type=URL_SCHEMES[scheme],
        conn_host=parts.hostname,
        conn_port=port,
        conn_schema=unquote(parts.path.lstrip("/")) or None,
        conn_login=unquote(parts.username) if parts.username else None,
        conn_password=unquote(parts.password) if parts.password else None,
    )


@register(*LIMIT_VARIABLES, order=40)
def map_limits(env: LegacyEnv, result: ImportResult) -> None:
    """Write limits and polling defaults: Variables, read by the plugin on every request."""
    for key, (variable, minimum) in LIMIT_VARIABLES.items():
        entry = env.entry(key)
        if entry is not None:
            result.set_variable(variable, _whole_number(entry, minimum))


@register(
    "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_REGION", "S3_ENDPOINT_URL", "S3_BUCKET_NAME", order=10
)
def map_s3(env: LegacyEnv, result: ImportResult) -> None:
    """An aws connection: keys as login/password, region, endpoint (S3-compatible stores) and bucket."""
    endpoint = env.value("S3_ENDPOINT_URL")
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise env.entry("S3_ENDPOINT_URL").fail("must be an http(s) URL")
    extra = {
        "region_name": env.value("S3_REGION"),
        "endpoint_url": endpoint.rstrip("/")
        if endpoint and endpoint.rstrip("/") != "https://s3.amazonaws.com"
        else None,
        "bucket_name": env.value("S3_BUCKET_NAME"),
    }
    if not extra["bucket_name"]:
        result.note(f"warning: no S3_BUCKET_NAME: set extra bucket_name of {S3_CONN_ID}")
    result.set_connection(
        S3_CONN_ID,
        conn_type="aws",
        conn_login=env.value("S3_ACCESS_KEY_ID"),
        conn_password=env.value("S3_SECRET_ACCESS_KEY"),
        conn_extra={k: v for k, v in extra.items() if v},
    )


@register("APPMETRICA_BASE_URL", "APPMETRICA_API_KEY", "APPMETRICA_APPLICATION_ID", order=10)
def map_appmetrica(env: LegacyEnv, result: ImportResult) -> None:
    """The Logs API: base URL as host, the OAuth token as password, the application id in the extra."""
    app_entry = env.entry("APPMETRICA_APPLICATION_ID")
    extra = {"application_id": _whole_number(app_entry, 1)} if app_entry is not None else {}
    result.set_connection(
        APPMETRICA_CONN_ID,
        conn_type="http",
        conn_host=(env.value("APPMETRICA_BASE_URL") or "https://api.appmetrica.yandex.net").rstrip("/"),
        conn_password=env.value("APPMETRICA_API_KEY"),
        conn_extra=extra,
    )


for _source in ("WEB", "MOBILE"):

    @register(f"AMPLITUDE_{_source}_CLIENT_ID", f"AMPLITUDE_{_source}_SECRET_KEY", order=10)
    def map_amplitude(env: LegacyEnv, result: ImportResult, source: str = _source) -> None:
        """One Amplitude project: the API key (``CLIENT_ID``) as login, the secret key as password."""
        result.set_connection(
            AMPLITUDE_CONN_IDS[source.lower()],
            conn_type="http",
            conn_host="https://amplitude.com",
            conn_login=env.value(f"AMPLITUDE_{source}_CLIENT_ID"),
            conn_password=env.value(f"AMPLITUDE_{source}_SECRET_KEY"),
        )


@register("TITLE", "VERSION", "DESCRIPTION", "DEBUG", "LOGGING_LEVEL", order=40)
def note_app_settings(env: LegacyEnv, result: ImportResult) -> None:
    """Settings of the FastAPI app itself, which the Airflow API server replaces."""
    for key in ("TITLE", "VERSION", "DESCRIPTION", "DEBUG"):
        if env.value(key) is not None:
            result.note(f"ignored: {key} (the DWH endpoints are served by the Airflow API server's plugin)")
    level = env.value("LOGGING_LEVEL")
    if level is not None:
        result.note(
            f"set AIRFLOW__LOGGING__LOGGING_LEVEL={level.strip().upper()} in the Airflow environment for LOGGING_LEVEL"
        )
