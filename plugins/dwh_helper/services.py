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
thread-safe, as SQLAlchemy engines and boto3 clients are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from include.common.db import engine_for
from include.dwh.tables import create_all

EXTENSION_KEY = "dwh_helper"

DWH_CONN_ID = "dwh_db"
S3_CONN_ID = "dwh_s3"
APPMETRICA_CONN_ID = "appmetrica_api"
#: Amplitude ``source`` (the API's ``?source=``) -> Airflow connection with that project's keys.
AMPLITUDE_CONN_IDS = {"web": "amplitude_web", "mobile": "amplitude_mobile"}

#: How long settings read from Airflow Variables are reused before they are read again.
SETTINGS_TTL_SECONDS = 60.0
_READ_CHUNK_BYTES = 1024 * 1024

T = TypeVar("T")


class ServiceNotConfigured(RuntimeError):
    """A client the request needs has no factory: this deployment does not offer that endpoint."""


@dataclass(frozen=True)
class Settings:
    """Tunables of the DWH helper, with the seed's defaults. Inside Airflow the first three can be
    overridden by the Airflow Variables ``dwh_<name>`` (see :meth:`from_airflow_variables`)."""

    #: Rows per INSERT (``DWH_MAX_ROWS_PER_INSERT``).
    max_rows_per_insert: int = 1000
    #: Bytes of bound parameters per INSERT (``DWH_MAX_WRITE_BATCH_BYTES``).
    max_write_batch_bytes: int = 10_000_000
    #: Largest request body accepted; larger ones get 413 before they are read.
    max_request_bytes: int = 64 * 1024 * 1024
    #: Rows a ``GET /dwh/<table>`` returns without ``limit``, and the largest ``limit`` allowed.
    default_read_limit: int = 100
    max_read_limit: int = 1000

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"setting {field.name} must be a positive integer, got {value!r}")
        if self.default_read_limit > self.max_read_limit:
            raise ValueError("default_read_limit must not exceed max_read_limit")

    @classmethod
    def from_airflow_variables(cls) -> Settings:
        """Defaults overridden by the Airflow Variables ``dwh_max_rows_per_insert``,
        ``dwh_max_write_batch_bytes`` and ``dwh_max_request_bytes``, where they are set."""
        from airflow.sdk import Variable

        overrides: dict[str, int] = {}
        for name in ("max_rows_per_insert", "max_write_batch_bytes", "max_request_bytes"):
            variable = f"dwh_{name}"
            raw = Variable.get(variable, default=None)
            if raw is None:
                continue
            try:
                overrides[name] = int(str(raw).strip())
            except ValueError:
                raise ValueError(f"Airflow Variable {variable} must be an integer, got {raw!r}") from None
        return cls(**overrides)


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
                        raise ServiceNotConfigured(f"{self.name} is not configured in this deployment")
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
        s3: Callable[[str], Any] | None = None,
        appmetrica: Callable[[str], Any] | None = None,
        amplitude: Callable[[str], Any] | None = None,
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
        return cls(settings_loader=Settings.from_airflow_variables)

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

    def s3(self) -> Any:
        """Client of the S3 bucket (connection ``dwh_s3``)."""
        return self._s3.get()

    def appmetrica(self) -> Any:
        """Client of the AppMetrica Logs API (connection ``appmetrica_api``)."""
        return self._appmetrica.get()

    def amplitude(self, source: str) -> Any:
        """Client of the Amplitude Export API for ``source`` (``web`` or ``mobile``)."""
        try:
            lazy = self._amplitude[source]
        except KeyError:
            expected = sorted(self._amplitude)
            raise ValueError(f"unknown Amplitude source {source!r}; expected one of {expected}") from None
        return lazy.get()


def services() -> Services:
    """The :class:`Services` of the current Flask app (call inside a request or app context)."""
    return current_app.extensions[EXTENSION_KEY]


def read_body() -> bytes:
    """The current request's body; 413 when it is larger than ``settings.max_request_bytes``.

    Use this rather than ``request.get_data()``: for a body without ``Content-Length`` (chunked
    transfer), Werkzeug stops reading at ``max_content_length`` without an error, and the view would
    get a truncated body. (A declared ``Content-Length`` over the limit is refused before any view.)
    """
    if request.content_length is not None:  # checked against the limit before the view ran
        return request.get_data(cache=False)
    limit = services().settings.max_request_bytes
    stream = get_input_stream(request.environ, max_content_length=limit + 1)  # one byte tells "too large"
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(_READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge(f"The body is larger than the {limit} bytes accepted.")
        chunks.append(chunk)
    return b"".join(chunks)


def _engine_factory(engine: sa.Engine | Callable[[str], sa.Engine] | None) -> Callable[[str], sa.Engine]:
    if engine is None:
        return engine_for
    if isinstance(engine, sa.Engine):
        return lambda _conn_id: engine
    return engine


def _with_tables(engine: sa.Engine) -> sa.Engine:
    create_all(engine)
    return engine


def _bind(factory: Callable[[str], T] | None, conn_id: str) -> Callable[[], T] | None:
    return None if factory is None else lambda: factory(conn_id)
