"""What HTTP clients of third-party APIs share.

* :func:`connection_base_url`: the base URL of an Airflow ``http`` connection, built as Airflow's own
  ``HttpHook`` builds it, so that a connection works the same for our clients and for Airflow's
  operators.
* :func:`retry_after_seconds`: Callio and AppMetrica both answer 429 with ``Retry-After``, which
  RFC 9110 allows as a number of seconds or as an HTTP date; both clients honour either.
* :func:`describe_transport_error`: what a failed connection attempt means to the person reading the
  log (refused, DNS, TLS, timeout) and which host it was, without the URL's credentials or query.
"""

from __future__ import annotations

import email.utils
import math
import socket
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx


def connection_base_url(host: str | None, schema: str | None, port: int | None, *, default: str) -> str:
    """The base URL of an ``http`` connection: ``host`` as it is when it carries a scheme, else
    ``<schema>://<host>`` with the connection's schema field as the scheme, ``http`` when it is empty
    (HttpHook's rule: ``AIRFLOW_CONN_X='http://key:secret@host:8080'`` means plain HTTP). ``port`` is
    added unless the host already names one. No host: ``default``, a full URL."""
    url = (host or "").strip().rstrip("/")
    if not url:
        url = default.rstrip("/")
    elif "://" not in url:
        url = f"{(schema or '').strip() or 'http'}://{url}"
    parts = urlsplit(url)
    if port and parts.port is None:
        url = urlunsplit(parts._replace(netloc=f"{parts.netloc}:{port}"))
    return url


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` in seconds: given as seconds, or as an HTTP date (then relative to ``now``,
    negative when past). None when absent or unreadable; the caller applies its floor and cap."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return when.timestamp() - now()
    return seconds if math.isfinite(seconds) else None


def describe_transport_error(exc: httpx.TransportError) -> str:
    """``"connection refused by api.example.com:443 (ConnectError)"`` and the like.

    httpx names only its own class (``ConnectError`` covers refused connections, failed DNS lookups and
    TLS failures alike); the cause is in the chained OS error. The host comes from the request's URL
    without its user info, and no part of the exception's text that could hold the URL is used."""
    where = _host(exc)
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        phase, what = _TIMEOUTS.get(type(exc), ("read", "no answer from {}"))
        if isinstance(exc, httpx.ConnectTimeout) and "handshake" in str(exc).lower():
            what = "TLS handshake with {} did not finish"
        return f"{what.format(where)} within {_timeout(exc, phase)} ({kind})"
    cause = _os_cause(exc)
    if isinstance(cause, ssl.SSLError):
        reason = cause.reason or cause.strerror or type(cause).__name__
        hint = " (a plain HTTP port? then use http://)" if "WRONG_VERSION" in reason else ""
        return f"TLS handshake with {where} failed: {reason.replace('_', ' ').lower()}{hint} ({kind})"
    if isinstance(cause, socket.gaierror):
        return f"DNS lookup of {where} failed: {cause.strerror or cause} ({kind})"
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused by {where} ({kind})"
    if isinstance(cause, ConnectionResetError):
        return f"connection reset by {where} ({kind})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{where} closed the connection or broke the HTTP protocol ({kind})"
    if isinstance(cause, OSError) and cause.strerror:
        return f"network error with {where}: {cause.strerror} ({kind})"
    return f"network error with {where} ({kind})"


_TIMEOUTS = {
    httpx.ConnectTimeout: ("connect", "could not connect to {}"),
    httpx.ReadTimeout: ("read", "no answer from {}"),
    httpx.WriteTimeout: ("write", "could not send the request to {}"),
    httpx.PoolTimeout: ("pool", "no free connection to {}"),
}
"""httpx timeout class -> (the phase of httpx.Timeout it exceeded, what that means)."""


def _timeout(exc: httpx.TimeoutException, phase: str) -> str:
    try:
        seconds = exc.request.extensions.get("timeout", {}).get(phase)
    except RuntimeError:
        seconds = None
    return f"{seconds:g} s" if isinstance(seconds, int | float) else "the timeout"


def _host(exc: httpx.TransportError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # an exception raised without its request
        return "the server"
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return f"{url.host}:{port}" if port else url.host


def _os_cause(exc: BaseException) -> BaseException | None:
    """The first OS-level error (``OSError``, which ``ssl.SSLError`` and ``socket.gaierror`` are)
    in the chain of causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            return current
        current = current.__cause__ or current.__context__
    return None
