"""What HTTP clients of third-party APIs share.

* :func:`connection_base_url`: the base URL of an Airflow ``http`` connection, built as Airflow's own
  ``HttpHook`` builds it, so that a connection works the same for our clients and for Airflow's
  operators.
* :func:`retry_after_seconds`: Callio and AppMetrica both answer 429 with ``Retry-After``, which
  RFC 9110 allows as a number of seconds or as an HTTP date; both clients honour either.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit


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
