"""What the Callio client, its pager and their callers share: the API's resources, the errors, an
account, the settings, and what a fetch hands back.

The names in brackets in :class:`ApiSettings` are the settings of the Callio loader this pipeline
replaces. Standard library only, so that importing the settings costs nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BASE_URL = "https://clientapi.phonenet.io"
TIME_SORTED = {"customer": ("updateTime", "updateTimeDESC"), "call": ("createTime", "createTimeDESC")}
"""Resources read by time window: resource -> (time field, sort parameter)."""
SNAPSHOTS = ("user", "user-group")
"""Resources read whole: staff and their groups."""
RESULT_WINDOW_TOO_LARGE = "Result window is too large"

Record = dict[str, Any]


class CallioError(Exception):
    """Anything the Callio API made impossible. Messages name tenant, endpoint and status only."""


class CallioLoginError(CallioError):
    """The API refused the account's credentials (or answered the login with something unusable)."""


class CallioApiError(CallioError):
    """A request that failed for good: not retryable, or retried until the attempts ran out."""

    def __init__(self, message: str, *, endpoint: str, status: int | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status


class SliceTooLargeError(CallioApiError):
    """A time slice at the narrowest allowed width still holds more records than the API will page
    through. Fetching on would silently lose records, so the fetch stops instead."""


class ResultWindowTooLargeError(CallioApiError):
    """The slice being read cannot be paged to its end: split it."""


@dataclass(frozen=True)
class Account:
    """A tenant's login. ``repr`` and ``str`` leave the password out."""

    tenant: str
    email: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    """Tries per request, the first included."""
    base_s: float = 0.5
    """Ceiling of the first backoff; it doubles with each retry (full jitter: uniform below it)."""
    max_delay_s: float = 60.0
    """No wait is longer, not even one asked for by ``Retry-After``."""
    min_delay_s: float = 0.2
    """No wait is shorter: ``Retry-After: 0`` or a date in the past must not spin."""

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if retry_after is None:
            wait = rng.uniform(0.0, self.base_s * 2 ** min(retry - 1, 30))
        else:
            wait = retry_after
        return min(self.max_delay_s, max(self.min_delay_s, wait))


@dataclass(frozen=True)
class ApiSettings:
    """How the client talks to the API. Names in brackets are the original service's settings."""

    base_url: str = DEFAULT_BASE_URL  # [CALLIO_API_BASE_URL]
    timeout: float = 30.0  # seconds per request [API_TIMEOUT]
    page_size: int = 200  # [API_PAGE_SIZE]
    time_slice_ms: int = 86_400_000  # the first slice's width (all: see adaptive_slices) [API_TIME_SLICE_MS]
    min_slice_ms: int = 60_000  # narrowest slice a split may produce [API_MIN_SLICE_MS]
    max_result_window: int = 10_000  # deepest record the API pages to (Elasticsearch's default)
    limit_records: int | None = None  # per fetch; None: no cap [LIMIT_RECORDS_PER_ENDPOINT]
    concurrency: int = 4  # page requests in flight at once, within one tenant, across its slices
    adaptive_slices: bool = True  # size slices by the density seen so far (see CallioClient.fetch_desc)
    token_ttl_s: float = 25 * 60.0
    max_rewalks: int = 3  # re-reads of a slice whose total changed while it was paged
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        positive = ("timeout", "page_size", "time_slice_ms", "min_slice_ms", "concurrency", "token_ttl_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"ApiSettings.{name} must be positive, got {getattr(self, name)!r}")
        if self.limit_records is not None and self.limit_records < 1:
            raise ValueError(
                f"ApiSettings.limit_records must be positive or None, got {self.limit_records!r}"
            )
        if self.page_size > self.max_result_window:
            raise ValueError(
                f"ApiSettings.page_size ({self.page_size}) cannot exceed max_result_window "
                f"({self.max_result_window}), the deepest record the API pages to"
            )
        if self.max_rewalks < 0:
            raise ValueError("ApiSettings.max_rewalks cannot be negative")
        if self.retry.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")


@dataclass
class FetchStats:
    """What one :meth:`CallioClient.fetch_desc` did, updated as its chunks are consumed."""

    resource: str
    window_from: int
    window_to: int | None = None
    """Upper end of what was read completely: the asked ``until_ms``, less when ``capped``; None
    before the first slice is done."""
    requests: int = 0  # HTTP requests to the resource, retries included
    pages: int = 0
    slices: int = 0  # slices read, after splitting
    splits: int = 0
    retries: int = 0
    rewalks: int = 0
    records: int = 0  # records yielded, after removing duplicates
    max_time: int | None = None  # newest time field among them
    capped: bool = False  # stopped early by limit_records

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class Fetch:
    """Iterate for the records, a list per slice; ``stats`` describes what has been read so far."""

    stats: FetchStats
    chunks: Iterator[list[Record]]

    def __iter__(self) -> Iterator[list[Record]]:
        return self.chunks
