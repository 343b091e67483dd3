"""What HTTP clients of third-party APIs share.

Callio and AppMetrica both answer 429 with ``Retry-After``, which RFC 9110 allows as a number of
seconds or as an HTTP date; both clients honour either through :func:`retry_after_seconds`.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable


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
