"""The Callio API client: one :class:`CallioClient` per tenant account.

Authentication is the API's own: ``POST /auth/login`` returns a token that every request sends in a
``token`` header. The token is cached (25 minutes by default, what public clients use, since its real
lifetime is not documented); a 401 on a request gets one fresh login and one retry.

Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff and
full jitter, honouring ``Retry-After`` in seconds or as an HTTP date, never faster than a floor (a
``Retry-After: 0`` must not turn into a busy loop), never longer than a cap, a bounded number of times.

Customers and calls are read newest first (:meth:`CallioClient.fetch_desc`) in time slices, because the
API, backed by a search index, refuses to page past ``max_result_window`` records: a slice holding more
is halved until it fits. See :meth:`CallioClient.fetch_desc` for the guarantees. Staff and groups are
small and read whole (:meth:`CallioClient.list_all`).

Secrets: the password and the token never reach a log line, an exception message or a repr; requests
are logged at DEBUG with their path and query parameters only.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)

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


class _ResultWindowTooLarge(CallioApiError):
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
    time_slice_ms: int = 86_400_000  # [API_TIME_SLICE_MS]
    min_slice_ms: int = 60_000  # narrowest slice a split may produce [API_MIN_SLICE_MS]
    max_result_window: int = 10_000  # deepest record the API pages to (Elasticsearch's default)
    limit_records: int | None = None  # per fetch; None: no cap [LIMIT_RECORDS_PER_ENDPOINT]
    concurrency: int = 4  # page requests in flight at once, within one tenant
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
            raise ValueError("ApiSettings.page_size cannot exceed max_result_window")
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


class CallioClient:
    """The API as one tenant's account sees it. Thread-safe; use as a context manager (or ``close``).

    ``sleep`` and ``clock`` are injectable so that tests can observe the backoff without waiting.
    """

    def __init__(
        self,
        account: Account,
        settings: ApiSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account = account
        self.settings = settings or ApiSettings()
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random()
        self._http = httpx.Client(
            base_url=self.settings.base_url,
            timeout=httpx.Timeout(self.settings.timeout),
            limits=httpx.Limits(max_connections=self.settings.concurrency + 1),
            headers={"Accept": "application/json"},
        )
        self._pool = (
            ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix=f"callio-{account.tenant}")
            if self.settings.concurrency > 1
            else None
        )
        self._token_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._token: str | None = None
        self._token_expiry = 0.0

    def __repr__(self) -> str:
        return f"CallioClient(tenant={self.account.tenant!r}, base_url={self.settings.base_url!r})"

    def __enter__(self) -> CallioClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    # --- authentication --------------------------------------------------------------------------

    def login(self) -> None:
        """Log in now (otherwise the first request does). Raises :class:`CallioLoginError`."""
        with self._token_lock:
            self._login()

    def _login(self) -> None:
        tenant = self.account.tenant
        log.debug("POST /auth/login tenant=%s", tenant)
        response = self._send(
            "POST",
            "/auth/login",
            json_body={"email": self.account.email, "password": self.account.password},
            authenticated=False,
        )
        if response.status_code >= 400:
            raise CallioLoginError(f"Callio login failed for tenant {tenant}: HTTP {response.status_code}")
        try:
            token = response.json().get("token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise CallioLoginError(
                f"Callio login failed for tenant {tenant}: HTTP {response.status_code} without a token"
            )
        self._token = token
        self._token_expiry = self._clock() + self.settings.token_ttl_s

    def _current_token(self) -> str:
        with self._token_lock:
            if self._token is None or self._clock() >= self._token_expiry:
                self._login()
            assert self._token is not None
            return self._token

    def _forget(self, token: str) -> None:
        """Drop a token the API rejected, unless another thread already replaced it."""
        with self._token_lock:
            if self._token == token:
                self._token = None

    # --- requests --------------------------------------------------------------------------------

    def _count(self, stats: FetchStats | None, name: str) -> None:
        if stats is not None:
            with self._count_lock:
                setattr(stats, name, getattr(stats, name) + 1)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        authenticated: bool = True,
        stats: FetchStats | None = None,
    ) -> httpx.Response:
        """One request, retried while it fails transiently, with one re-login on a 401. Returns the
        response once it is neither a 429 nor a 5xx (the caller judges other statuses)."""
        retry_policy = self.settings.retry
        relogged = False
        failures = 0
        while True:
            token = self._current_token() if authenticated else None
            self._count(stats, "requests")
            if params is not None:
                log.debug("%s %s %s", method, path, params)
            try:
                response = self._http.request(
                    method, path, params=params, json=json_body, headers={"token": token} if token else None
                )
            except httpx.TransportError as exc:
                last, status, retry_after = type(exc).__name__, None, None
            else:
                status = response.status_code
                if status == 401 and token is not None and not relogged:
                    relogged = True
                    self._forget(token)
                    continue
                if status != 429 and status < 500:
                    return response
                last, retry_after = f"HTTP {status}", parse_retry_after(response.headers.get("Retry-After"))
            failures += 1
            if failures >= retry_policy.attempts:
                raise CallioApiError(
                    f"{method} {path} for tenant {self.account.tenant} failed {failures} times; last: {last}",
                    endpoint=path,
                    status=status,
                )
            delay = retry_policy.delay(failures, retry_after, self._rng)
            log.warning(
                "%s %s for tenant %s: %s; retry %d of %d in %.2f s",
                method,
                path,
                self.account.tenant,
                last,
                failures,
                retry_policy.attempts - 1,
                delay,
            )
            self._count(stats, "retries")
            self._sleep(delay)

    def _page(self, resource: str, params: dict[str, Any], page: int, stats: FetchStats | None) -> Record:
        path = f"/{resource}"
        response = self._send("GET", path, params={**params, "page": page}, stats=stats)
        status = response.status_code
        if status == 400 and RESULT_WINDOW_TOO_LARGE in response.text:
            raise _ResultWindowTooLarge(f"GET {path}: {RESULT_WINDOW_TOO_LARGE}", endpoint=path, status=400)
        if status >= 400:
            raise CallioApiError(
                f"GET {path} for tenant {self.account.tenant}: HTTP {status}"
                + (" after a fresh login" if status == 401 else f": {response.text[:200]}"),
                endpoint=path,
                status=status,
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("docs"), list):
            raise CallioApiError(f"GET {path}: the response has no docs list", endpoint=path, status=status)
        self._count(stats, "pages")
        return body

    # --- reading ---------------------------------------------------------------------------------

    def list_all(self, resource: str) -> list[Record]:
        """Every record of ``user`` (staff) or ``user-group``, page after page: a full snapshot."""
        if resource not in SNAPSHOTS:
            raise ValueError(f"list_all reads {SNAPSHOTS}, not {resource!r}")
        params = {"pageSize": self.settings.page_size}
        records: list[Record] = []
        page = 1
        while True:
            body = self._page(resource, params, page, None)
            records.extend(body["docs"])
            if not body["docs"] or not _has_next(body, page, _limit(body, self.settings.page_size)):
                return records
            page += 1

    def fetch_desc(self, resource: str, since_ms: int, until_ms: int) -> Fetch:
        """The ``customer`` (by ``updateTime``) or ``call`` (by ``createTime``) records with a time in
        ``[since_ms, until_ms]``, as chunks of records, one per time slice.

        * Slices of ``time_slice_ms`` are read oldest first, the pages inside one newest first as the
          API serves them. So when ``limit_records`` stops a fetch (after the slice in which the cap was
          reached, so a chunk may pass it), everything up to ``stats.window_to`` has been read and a
          checkpoint at ``stats.max_time`` leaves no hole below it.
        * Adjacent slices share their boundary millisecond (``[a, b]`` then ``[b, c]``): a record at
          ``b`` is read whether the API's bounds are inclusive or not, and yielded once. Within a slice
          duplicates are removed by ``_id``, keeping the newest time (then the last seen). Records
          without ``_id`` are passed on (the caller rejects them), deduplicated by content.
        * A slice holding more than ``max_result_window`` records (by its reported total, or by the
          API's 400 ``Result window is too large``) is halved, recursively, down to ``min_slice_ms``;
          a slice that still does not fit raises :class:`SliceTooLargeError`.
        * After a slice's first page, its other pages are requested ``concurrency`` at a time. If the
          total changes while they are read (records moved), the slice is read again, at most
          ``max_rewalks`` times, then the fetch fails rather than miss records.
        * A record updated while the fetch runs may be yielded twice, older version first, when it
          moves from a slice already read into one still to come; consumers keep the newest per ``_id``.

        Records move past ``until_ms`` when they change during the fetch (their time becomes the time
        of the change), so with ``until_ms`` no later than the fetch's start they can only leave the
        window, which changes the slice's total and is caught; they are read again by the next fetch.
        """
        if resource not in TIME_SORTED:
            raise ValueError(f"fetch_desc reads {sorted(TIME_SORTED)}, not {resource!r}")
        if since_ms > until_ms:
            raise ValueError(f"since_ms ({since_ms}) is after until_ms ({until_ms})")
        stats = FetchStats(resource, since_ms)
        return Fetch(stats, self._chunks(resource, since_ms, until_ms, stats))

    def _chunks(
        self, resource: str, since_ms: int, until_ms: int, stats: FetchStats
    ) -> Iterator[list[Record]]:
        settings = self.settings
        time_field = TIME_SORTED[resource][0]
        pending: deque[tuple[int, int]] = deque()
        boundary: dict[str, int] = {}  # the last slice's records at its upper bound, key -> time
        for base_slice in _slices(since_ms, until_ms, settings.time_slice_ms):
            pending.append(base_slice)
            while pending:
                lo, hi = pending.popleft()
                try:
                    docs = self._read_slice(resource, lo, hi, stats)
                except _ResultWindowTooLarge as too_large:
                    self._split(resource, lo, hi, too_large, pending)
                    stats.splits += 1
                    continue
                chunk, times, boundary = _dedupe(docs, time_field, boundary, hi)
                stats.slices += 1
                stats.records += len(chunk)
                stats.window_to = hi
                if times:
                    newest = max(times)
                    stats.max_time = newest if stats.max_time is None else max(stats.max_time, newest)
                if chunk:
                    yield chunk
                limit = settings.limit_records
                if limit is not None and stats.records >= limit and hi < until_ms:
                    stats.capped = True
                    log.info(
                        "%s of tenant %s: %d records reach the cap of %d; read up to %d of %d",
                        resource,
                        self.account.tenant,
                        stats.records,
                        limit,
                        hi,
                        until_ms,
                    )
                    return

    def _split(
        self, resource: str, lo: int, hi: int, cause: CallioApiError, pending: deque[tuple[int, int]]
    ) -> None:
        """Queue the two halves of ``[lo, hi]``, older first, or fail when they would be too narrow."""
        settings = self.settings
        if hi - lo < 2 * settings.min_slice_ms:
            raise SliceTooLargeError(
                f"{resource} of tenant {self.account.tenant}: the slice [{lo}, {hi}] "
                f"({hi - lo} ms, no narrower than min_slice_ms={settings.min_slice_ms}) holds more "
                f"records than the API pages through (max_result_window={settings.max_result_window})",
                endpoint=cause.endpoint,
                status=cause.status,
            ) from None
        mid = lo + (hi - lo) // 2
        pending.appendleft((mid, hi))
        pending.appendleft((lo, mid))
        log.info("%s of tenant %s: splitting [%d, %d] at %d", resource, self.account.tenant, lo, hi, mid)

    def _read_slice(self, resource: str, lo: int, hi: int, stats: FetchStats) -> list[Record]:
        """All the records of one slice, newest first, duplicates included."""
        settings = self.settings
        sort = TIME_SORTED[resource][1]
        params: dict[str, Any] = {"sort": sort, "pageSize": settings.page_size, "from": lo, "to": hi}
        if resource == "customer":  # the API may read either pair (API_FACTS: uncertain); send both
            params.update({"fromUpdateTime": lo, "toUpdateTime": hi})
        for _ in range(settings.max_rewalks + 1):
            first = self._page(resource, params, 1, stats)
            size = _limit(first, settings.page_size)
            total = _total(first)
            if total is not None and total > settings.max_result_window // size * size:
                raise _ResultWindowTooLarge(f"{total} records", endpoint=f"/{resource}")
            docs = list(first["docs"])
            if total is None:  # no count to check against: follow the pages one by one
                return docs + self._read_following(resource, params, first, size, stats)
            pages = range(2, math.ceil(total / size) + 1)
            rest = list(self._map(lambda page: self._page(resource, params, page, stats), pages))
            for body in rest:
                docs.extend(body["docs"])
            if len(docs) == total and all(_total(body) == total for body in rest):
                return docs
            stats.rewalks += 1
            log.info(
                "%s of tenant %s: [%d, %d] changed while paged (%d records, %d read); reading it again",
                resource,
                self.account.tenant,
                lo,
                hi,
                total,
                len(docs),
            )
        raise CallioApiError(
            f"{resource} of tenant {self.account.tenant}: [{lo}, {hi}] kept changing while paged "
            f"({settings.max_rewalks} re-reads)",
            endpoint=f"/{resource}",
        )

    def _read_following(
        self, resource: str, params: dict[str, Any], body: Record, size: int, stats: FetchStats
    ) -> list[Record]:
        """The pages after ``body``, one at a time, while the API says there are more."""
        docs: list[Record] = []
        page = 1
        while body["docs"] and _has_next(body, page, size):
            page += 1
            body = self._page(resource, params, page, stats)
            docs.extend(body["docs"])
        return docs

    def _map(self, function: Callable[[int], Record], pages: range) -> Iterator[Record]:
        """``function`` over ``pages``, ``concurrency`` at a time, results in page order."""
        if self._pool is None or len(pages) < 2:
            return map(function, pages)
        return self._pool.map(function, pages)


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` in seconds: given as seconds, or as an HTTP date (then relative to ``now``,
    negative when past). None when absent or unreadable."""
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


def _slices(since_ms: int, until_ms: int, width: int) -> Iterator[tuple[int, int]]:
    """``[since, since + width], [since + width, since + 2 * width], ..., [.., until]``."""
    lo = since_ms
    while True:
        hi = min(lo + width, until_ms)
        yield lo, hi
        if hi >= until_ms:
            return
        lo = hi


def _total(body: Record) -> int | None:
    for key in ("totalDocs", "total"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _limit(body: Record, default: int) -> int:
    """The page size the API applied (it may cap the one asked for)."""
    value = body.get("limit")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def _has_next(body: Record, page: int, size: int) -> bool:
    if isinstance(body.get("hasNextPage"), bool):
        return body["hasNextPage"]
    if isinstance(body.get("totalPages"), int):
        return page < body["totalPages"]
    total = _total(body)
    return page * size < total if total is not None else len(body["docs"]) >= size


def _time(record: Any, field: str) -> int | None:
    """A record's time as a number (numeric text accepted), or None."""
    value = record.get(field) if isinstance(record, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _key(record: Any) -> str:
    """``_id``, or for a record without one its content (the NUL prefix keeps the two apart)."""
    if isinstance(record, dict):
        record_id = record.get("_id")
        if isinstance(record_id, str) and record_id:
            return record_id
    return "\0" + json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)


def _dedupe(
    docs: list[Record], field: str, previous: dict[str, int], hi: int
) -> tuple[list[Record], list[int], dict[str, int]]:
    """One slice's records without duplicates, their times, and the keys at the slice's upper bound.

    A record the previous slice already yielded at its upper bound (this slice's lower one), with the
    same time or older, is dropped."""
    kept: dict[str, tuple[int | None, Record]] = {}
    for record in docs:
        key = _key(record)
        when = _time(record, field)
        seen = previous.get(key)
        if seen is not None and when is not None and when <= seen:
            continue
        old = kept.get(key)
        if old is None or (when if when is not None else -math.inf) >= (
            old[0] if old[0] is not None else -math.inf
        ):
            kept[key] = (when, record)
    chunk = [record for _, record in kept.values()]
    times = [when for when, _ in kept.values() if when is not None]
    boundary = {key: when for key, (when, _) in kept.items() if when == hi}
    return chunk, times, boundary
