"""What the DWH helper's blueprints depend on, built lazily and injectable in tests.

A :class:`Services` lives in ``app.extensions["dwh_helper"]``; a view reaches it through
:func:`services`::

    from dwh_helper.services import services

    engine = services().dwh_engine()
    limit = services().settings.max_rows_per_insert
    client = services().s3()

Inside Airflow the parent blueprint installs :meth:`Services.from_airflow` when it is registered, so
connections and Variables are read on first use, never at import (plugins are imported by every
Airflow component, and the metadata database may not even be reachable then). Tests build their own
``Services`` with an engine, settings and fake clients, and pass it to
:func:`dwh_helper.app.create_app`.

Clients are built once per process and shared by all requests (and threads): each must be
thread-safe, as SQLAlchemy engines and boto3 clients are. A client whose connection is missing or
unusable is not built: its endpoints answer 503 naming the problem, and the next request tries again.

The request and response helpers every blueprint shares live in :mod:`dwh_helper.http_io`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from flask import current_app

from include.common.db import engine_for
from include.dwh.amplitude import AmplitudeConfigError, AmplitudeCredentials, load_connection_credentials
from include.dwh.appmetrica import POLL_INTERVAL_RANGE, POLL_TIMEOUT_RANGE, AppMetricaSettings, load_settings
from include.dwh.appmetrica_exports import AppMetricaConfigError, ExportDefinition, load_definitions
from include.dwh.config import AMPLITUDE_CONN_IDS, APPMETRICA_CONN_ID, DWH_CONN_ID, S3_CONN_ID
from include.dwh.s3 import S3Store
from include.dwh.s3_keys import StorageError
from include.dwh.schema import create_all

log = logging.getLogger(__name__)

EXTENSION_KEY = "dwh_helper"


#: How long settings read from Airflow Variables are reused before they are read again.
SETTINGS_TTL_SECONDS = 60.0

T = TypeVar("T")


class ServiceNotConfiguredError(RuntimeError):
    """A client the request needs has no factory: this deployment does not offer that endpoint."""


@dataclass(frozen=True)
class Settings:
    """Tunables of the DWH helper, with the DWH helper service's defaults; inside Airflow, Airflow
    Variables override them (see :data:`SETTING_VARIABLES` and :meth:`from_airflow_variables`)."""

    #: Rows per INSERT (``DWH_MAX_ROWS_PER_INSERT``).
    max_rows_per_insert: int = 1000
    #: Bytes of bound parameters per INSERT (``DWH_MAX_WRITE_BATCH_BYTES``).
    max_write_batch_bytes: int = 10_000_000
    #: Largest request body accepted: 413 before it is read when its Content-Length says more, and
    #: once more has been read when it has none (chunked transfer).
    max_request_bytes: int = 64 * 1024 * 1024
    #: Rows a ``GET /dwh/<table>`` returns without ``limit``, and the largest ``limit`` allowed.
    default_read_limit: int = 100
    max_read_limit: int = 1000
    #: Seconds between two polls of an AppMetrica export when the request names no ``poll_interval``
    #: (``APPMETRICA_POLL_INTERVAL_SECONDS``).
    appmetrica_poll_interval_seconds: float = 5.0
    #: Seconds an AppMetrica fetch waits for its export in all when the request names no
    #: ``poll_timeout`` (``APPMETRICA_POLL_TIMEOUT_SECONDS``).
    appmetrica_poll_timeout_seconds: float = 300.0
    #: Directory of the Amplitude exports being built and sent; None: the system's temporary directory.
    #: Each export needs about twice its zip's size here while it is built.
    amplitude_workdir: str | None = None

    def __post_init__(self) -> None:
        for name in _COUNT_SETTINGS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"setting {name} must be a positive integer, got {value!r}")
        if self.default_read_limit > self.max_read_limit:
            raise ValueError("default_read_limit must not exceed max_read_limit")
        for name, (low, high) in (
            ("appmetrica_poll_interval_seconds", POLL_INTERVAL_RANGE),
            ("appmetrica_poll_timeout_seconds", POLL_TIMEOUT_RANGE),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ValueError(f"setting {name} must be from {low:g} to {high:g} seconds, got {value!r}")

    @classmethod
    def from_airflow_variables(cls) -> Settings:
        """Defaults overridden by the Airflow Variables of :data:`SETTING_VARIABLES`, where set."""
        from airflow.sdk import Variable

        overrides: dict[str, Any] = {}
        for name, variable in SETTING_VARIABLES.items():
            raw = Variable.get(variable, default=None)
            if raw is None:
                continue
            text = str(raw).strip()
            if name == "amplitude_workdir":
                overrides[name] = text or None
                continue
            kind, parse = ("an integer", int) if name in _COUNT_SETTINGS else ("a number", float)
            try:
                overrides[name] = parse(text)
            except ValueError:
                raise ValueError(f"Airflow Variable {variable} must be {kind}, got {raw!r}") from None
        return cls(**overrides)


_COUNT_SETTINGS = (
    "max_rows_per_insert",
    "max_write_batch_bytes",
    "max_request_bytes",
    "default_read_limit",
    "max_read_limit",
)

#: Setting -> the Airflow Variable that overrides it. The AppMetrica ones keep the DWH helper service's names, which
#: the AppMetrica export DAGs read too.
SETTING_VARIABLES = {
    "max_rows_per_insert": "dwh_max_rows_per_insert",
    "max_write_batch_bytes": "dwh_max_write_batch_bytes",
    "max_request_bytes": "dwh_max_request_bytes",
    "appmetrica_poll_interval_seconds": "appmetrica_poll_interval_seconds",
    "appmetrica_poll_timeout_seconds": "appmetrica_poll_timeout_seconds",
    "amplitude_workdir": "dwh_amplitude_workdir",
}


@dataclass(frozen=True)
class AppMetricaAccess:
    """What ``/appmetrica`` works with: how to reach the Logs API, and the saved export definitions.

    ``definitions`` is called on every fetch, so an export saved in the Variable ``appmetrica_exports``
    is served at once, without a restart; ``settings`` (token, base URL) are read once per process.
    """

    settings: AppMetricaSettings
    definitions: Callable[[], Mapping[str, ExportDefinition | Mapping[str, Any]]]


class Lazy(Generic[T]):
    """A value built on first use by ``factory``, once, even when several threads ask at once."""

    def __init__(self, name: str, factory: Callable[[], T] | None) -> None:
        self.name = name
        self._factory = factory
        self._lock = threading.Lock()
        self._value: T | None = None
        self._built = False

    def get(self) -> T:
        if not self._built:
            with self._lock:
                if not self._built:
                    if self._factory is None:
                        raise ServiceNotConfiguredError(f"{self.name} is not configured in this deployment")
                    self._value = self._factory()
                    self._built = True
        return self._value  # type: ignore[return-value]


class Services:
    """The dependencies of every DWH helper blueprint.

    Each client comes from a factory called with its Airflow connection id, on first use. Pass an
    ``sa.Engine`` as ``dwh_engine`` to skip the connection lookup (tests do); leave a client's factory
    out and its endpoints answer 503. ``settings`` are fixed when given, otherwise produced by
    ``settings_loader`` (re-read every :data:`SETTINGS_TTL_SECONDS`) or the defaults.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        settings_loader: Callable[[], Settings] | None = None,
        dwh_engine: sa.Engine | Callable[[str], sa.Engine] | None = None,
        s3: Callable[[str], S3Store] | None = None,
        appmetrica: Callable[[str], AppMetricaAccess] | None = None,
        amplitude: Callable[[str], AmplitudeCredentials] | None = None,
    ) -> None:
        if settings is not None and settings_loader is not None:
            raise ValueError("give settings or settings_loader, not both")
        self._settings = settings if settings is not None or settings_loader else Settings()
        self._settings_loader = settings_loader
        self._settings_read_at = 0.0
        self._settings_lock = threading.Lock()
        engine_factory = _engine_factory(dwh_engine)
        self._dwh_engine = Lazy("the DWH database", lambda: _with_tables(engine_factory(DWH_CONN_ID)))
        self._s3 = Lazy("S3", _bind(s3, S3_CONN_ID))
        self._appmetrica = Lazy("AppMetrica", _bind(appmetrica, APPMETRICA_CONN_ID))
        self._amplitude = {
            source: Lazy(f"Amplitude ({source})", _bind(amplitude, conn_id))
            for source, conn_id in AMPLITUDE_CONN_IDS.items()
        }

    @classmethod
    def from_airflow(cls) -> Services:
        """Services of a running Airflow: connections by id, settings from Airflow Variables."""
        return cls(
            settings_loader=Settings.from_airflow_variables,
            s3=_s3_from_connection,
            appmetrica=_appmetrica_from_connection,
            amplitude=_amplitude_from_connection,
        )

    @property
    def settings(self) -> Settings:
        if self._settings_loader is None:
            return self._settings  # type: ignore[return-value]  # always set without a loader
        with self._settings_lock:
            now = time.monotonic()
            if self._settings is None or now - self._settings_read_at >= SETTINGS_TTL_SECONDS:
                self._settings = self._settings_loader()
                self._settings_read_at = now
            return self._settings

    def dwh_engine(self) -> sa.Engine:
        """Engine of the DWH database (connection ``dwh_db``), its tables created on first use."""
        return self._dwh_engine.get()

    def s3(self) -> S3Store:
        """The S3 bucket (connection ``dwh_s3``)."""
        return self._s3.get()

    def appmetrica(self) -> AppMetricaAccess:
        """The AppMetrica Logs API and its saved exports (connection ``appmetrica_api``)."""
        return self._appmetrica.get()

    def amplitude(self, source: str) -> AmplitudeCredentials:
        """The Amplitude Export API keys of ``source`` (``web`` or ``mobile``)."""
        try:
            lazy = self._amplitude[source]
        except KeyError:
            expected = sorted(self._amplitude)
            raise ValueError(f"unknown Amplitude source {source!r}; expected one of {expected}") from None
        return lazy.get()


def services() -> Services:
    """The :class:`Services` of the current Flask app (call inside a request or app context)."""
    return current_app.extensions[EXTENSION_KEY]


def _engine_factory(engine: sa.Engine | Callable[[str], sa.Engine] | None) -> Callable[[str], sa.Engine]:
    if engine is None:
        return _engine_from_connection
    if isinstance(engine, sa.Engine):
        return lambda _conn_id: engine
    return engine


def _engine_from_connection(conn_id: str) -> sa.Engine:
    with _usable_connection(conn_id, ValueError):
        return engine_for(conn_id)


def _with_tables(engine: sa.Engine) -> sa.Engine:
    create_all(engine)
    return engine


def _bind(factory: Callable[[str], T] | None, conn_id: str) -> Callable[[], T] | None:
    return None if factory is None else lambda: factory(conn_id)


def _s3_from_connection(conn_id: str) -> S3Store:
    with _usable_connection(conn_id, StorageError):  # it names no bucket
        return S3Store.from_connection(conn_id)


def _appmetrica_from_connection(conn_id: str) -> AppMetricaAccess:
    with _usable_connection(conn_id, AppMetricaConfigError):
        settings = load_settings(conn_id)
    return AppMetricaAccess(settings, functools.partial(load_definitions, conn_id))


def _amplitude_from_connection(conn_id: str) -> AmplitudeCredentials:
    with _usable_connection(conn_id, AmplitudeConfigError):
        return load_connection_credentials(conn_id)


@contextlib.contextmanager
def _usable_connection(conn_id: str, config_error: type[Exception]) -> Generator[None]:
    """Report a connection that does not exist or cannot be used as :class:`ServiceNotConfiguredError`:
    the deployment lacks it, which no request can fix."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        yield
    except AirflowNotFoundException:
        raise ServiceNotConfiguredError(f"the Airflow connection {conn_id!r} is not defined") from None
    except config_error as exc:
        raise ServiceNotConfiguredError(str(exc)) from None
