"""The Callio API client: one :class:`CallioClient` per tenant account.

Authentication is the API's own: ``POST /auth/login`` returns a token that every request sends in a
``token`` header. The token is cached (25 minutes by default, what public clients use, since its real
lifetime is not documented); a 401 on a request gets one fresh login and one retry.

Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff and
full jitter, honouring ``Retry-After`` in seconds or as an HTTP date, never faster than a floor (a
``Retry-After: 0`` must not turn into a busy loop), never longer than a cap, a bounded number of times.
The error that ends the retries says what failed and where (connection refused, DNS lookup, TLS
handshake, timeout, or the HTTP status, with the host), since the exception class alone does not.

Customers and calls are read newest first (:meth:`CallioClient.fetch_desc`) in time slices, because the
API, backed by a search index, refuses to page past ``max_result_window`` records: a slice holding more
is halved until it fits. Slices are sized from the density seen so far, and ``concurrency`` page
requests are kept in flight across them (:class:`_SliceReader`). See :meth:`CallioClient.fetch_desc`
for the guarantees. Staff and groups are small and read whole (:meth:`CallioClient.list_all`).

Secrets: the password and the token never reach a log line, an exception message or a repr; requests
are logged at DEBUG with their path and query parameters only.
"""

from __future__ import annotations

import bisect
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
from urllib.parse import urlencode

import httpx
from msgspec.json import decode as _decode_json  # decodes a page about 1.8 times as fast as json.loads

from include.common.httputil import describe_transport_error, retry_after_seconds

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://clientapi.phonenet.io"
TIME_SORTED = {"customer": ("updateTime", "updateTimeDESC"), "call": ("createTime", "createTimeDESC")}
"""Resources read by time window: resource -> (time field, sort parameter)."""
SNAPSHOTS = ("user", "user-group")
"""Resources read whole: staff and their groups."""
RESULT_WINDOW_TOO_LARGE = "Result window is too large"
_MAX_GROWTH = 4
"""An adaptive slice is at most this many times as wide as the slice whose density sized it."""

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
        self._base_url = self.settings.base_url.rstrip("/")
        self._http = httpx.Client(
            timeout=httpx.Timeout(self.settings.timeout),
            limits=httpx.Limits(max_connections=self.settings.concurrency + 1),
            headers={"Accept": "application/json"},
        )
        self._headers = dict(self._http.headers)  # what Client.request would send (see _send)
        self._pool = ThreadPoolExecutor(
            self.settings.concurrency, thread_name_prefix=f"callio-{account.tenant}"
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
        query: str = "",
        json_body: Any = None,
        authenticated: bool = True,
        stats: FetchStats | None = None,
    ) -> httpx.Response:
        """One request, retried while it fails transiently, with one re-login on a 401. Returns the
        response once it is neither a 429 nor a 5xx (the caller judges other statuses).

        ``query`` comes encoded, and the request is built here rather than by ``Client.request``,
        whose merging of base URL, parameters, headers and cookies parses each URL three times (about
        0.1 ms of the 1.3 to 1.7 ms of CPU the client spends per page): with many tenants fetched at
        once on few cores, the CPU rather than the network sets the pace."""
        retry_policy = self.settings.retry
        url = f"{self._base_url}{path}?{query}" if query else f"{self._base_url}{path}"
        relogged = False
        failures = 0
        while True:
            token = self._current_token() if authenticated else None
            self._count(stats, "requests")
            if query:
                log.debug("%s %s?%s", method, path, query)
            headers = {**self._headers, "token": token} if token else self._headers
            try:
                response = self._http.send(httpx.Request(method, url, json=json_body, headers=headers))
            except httpx.TransportError as exc:
                last, status, retry_after = describe_transport_error(exc), None, None
            else:
                status = response.status_code
                if status == 401 and token is not None and not relogged:
                    relogged = True
                    self._forget(token)
                    continue
                if status != 429 and status < 500:
                    return response
                last = f"HTTP {status} from {response.request.url.host}"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
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

    def _page(self, resource: str, query: str, page: int, stats: FetchStats | None) -> Record:
        """Page ``page`` of ``resource``; ``query``: the other parameters, encoded."""
        path = f"/{resource}"
        response = self._send("GET", path, query=f"{query}&page={page}", stats=stats)
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
            body = _decode_json(response.content)
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
        query = urlencode({"pageSize": self.settings.page_size})
        records: list[Record] = []
        page = 1
        while True:
            body = self._page(resource, query, page, None)
            records.extend(body["docs"])
            if not body["docs"] or not _has_next(body, page, _limit(body, self.settings.page_size)):
                return records
            page += 1

    def fetch_desc(
        self, resource: str, since_ms: int, until_ms: int, *, checkpoint_ms: int | None = None
    ) -> Fetch:
        """The ``customer`` (by ``updateTime``) or ``call`` (by ``createTime``) records with a time in
        ``[since_ms, until_ms]``, as chunks of records, one per time slice.

        * Slices are read oldest first and yielded in that order, the pages inside one newest first as
          the API serves them. ``limit_records`` is a hard cap: the fetch yields the oldest records up
          to it and stops, except that records sharing the time of the last one are never split (a
          later fetch could not tell which of them it already has). Everything up to
          ``stats.window_to`` (that time) has then been read, so a checkpoint at ``stats.max_time``
          leaves no hole below it. ``checkpoint_ms``, the newest time already loaded (a window starts
          before it by an overlap), is read again but not counted against the cap, so that a capped
          run always moves past its predecessor, however many records the overlap holds.
        * The first slice is ``time_slice_ms`` wide. With ``adaptive_slices`` (the default) the next
          ones are sized from the density the previous ones reported, to hold about half of
          ``max_result_window`` records (less under a ``limit_records`` cap): sparse stretches then
          cost few requests and dense ones rarely need a split. Without it every slice is
          ``time_slice_ms`` wide.
        * Adjacent slices share their boundary millisecond (``[a, b]`` then ``[b, c]``): a record at
          ``b`` is read whether the API's bounds are inclusive or not, and yielded once. Within a slice
          duplicates are removed by ``_id``, keeping the newest time (then the last seen). Records
          without ``_id`` are passed on (the caller rejects them), deduplicated by content.
        * A slice holding more than ``max_result_window`` records (by its reported total, or by the
          API's 400 ``Result window is too large``) is halved, recursively, down to ``min_slice_ms``;
          a slice that still does not fit raises :class:`SliceTooLargeError`.
        * ``concurrency`` page requests are kept in flight across slices: while a slice's pages are
          read, the next slices' first pages already go out (see :class:`_SliceReader`, which also
          bounds the records held in memory). If a slice's total changes while it is read (records
          moved), the slice is read again, at most ``max_rewalks`` times, then the fetch fails rather
          than miss records. An error is raised when the fetch reaches the slice it belongs to.
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
        return Fetch(stats, self._chunks(resource, since_ms, until_ms, stats, checkpoint_ms))

    def _chunks(
        self, resource: str, since_ms: int, until_ms: int, stats: FetchStats, checkpoint_ms: int | None
    ) -> Iterator[list[Record]]:
        limit = self.settings.limit_records
        counted = 0  # records toward limit: those newer than checkpoint_ms
        time_field = TIME_SORTED[resource][0]
        boundary: dict[str, int] = {}  # the last slice's records at its upper bound, key -> time
        reader = _SliceReader(
            resource,
            since_ms,
            until_ms,
            settings=self.settings,
            stats=stats,
            tenant=self.account.tenant,
            read_page=self._page,
            submit=self._pool.submit,
        )
        try:
            for piece in reader:
                chunk, times, boundary = _dedupe(piece.docs(), time_field, boundary, piece.hi)
                stats.slices += 1
                stats.window_to = piece.hi
                if limit is not None:
                    chunk, cut, more = _cap(chunk, time_field, limit - counted, checkpoint_ms)
                    counted += more
                    if cut is not None:
                        stats.window_to = cut
                        times = [when for when in times if when <= cut]
                stats.records += len(chunk)
                if times:
                    newest = max(times)
                    stats.max_time = newest if stats.max_time is None else max(stats.max_time, newest)
                if chunk:
                    yield chunk
                if limit is not None and counted >= limit and stats.window_to < until_ms:
                    stats.capped = True
                    log.info(
                        "%s of tenant %s: %d records reach the cap of %d; read up to %d of %d",
                        resource,
                        self.account.tenant,
                        counted,
                        limit,
                        stats.window_to,
                        until_ms,
                    )
                    return
        finally:
            reader.close()


@dataclass(eq=False)
class _Slice:
    """One time slice ``[lo, hi]`` while it is read: the pages still to request, those in flight, and
    those that came back. Compared by identity (a split replaces this very object in the queue)."""

    lo: int
    hi: int
    query: str  # the request parameters but the page, encoded
    attempt: int = 0
    """Grows with each re-read; answers to an earlier attempt are dropped."""
    answered: bool = False  # the first page of this attempt is in
    total: int | None = None  # as the first page reported it
    size: int = 0  # the page size the API applied
    unsent: deque[int] = field(default_factory=lambda: deque([1]))
    waiting: set[int] = field(default_factory=set)
    pages: dict[int, list[Record]] = field(default_factory=dict)
    moved: bool = False  # a later page reported another total than the first
    replaced: bool = False  # split: its halves took its place
    error: BaseException | None = None

    def complete(self) -> bool:
        return self.answered and not self.unsent and not self.waiting

    def held(self) -> int:
        """Records the slice holds, or will once read: its total, else what came so far."""
        return self.total if self.total is not None else sum(map(len, self.pages.values()))

    def docs(self) -> list[Record]:
        """The records in page order: newest first, duplicates included."""
        return [record for page in sorted(self.pages) for record in self.pages[page]]

    def restart(self) -> None:
        """Forget what was read, to read the slice again from its first page."""
        self.attempt += 1
        self.answered, self.total, self.moved = False, None, False
        self.unsent, self.waiting, self.pages = deque([1]), set(), {}


class _SliceReader:
    """The slices of one :meth:`CallioClient.fetch_desc`, read with up to ``concurrency`` page requests
    in flight across slices, and handed out complete, oldest first, by iterating.

    Why across slices: a slice's first page must come back before its other pages are known (its total
    says how many there are, and whether the slice must be split), so slices read one after another
    leave the connections idle for a round trip per slice, and a slice of fewer pages than
    ``concurrency`` never fills them. Here the next slices are begun while a slice's pages are read.

    How: each request runs on the client's thread pool; the thread that gets the answer handles it
    under ``_changed``'s lock and sends the next requests (:meth:`_pump`), so reading goes on while the
    caller works on a chunk. What goes first: first pages (they unlock the others and decide splits),
    then a new slice, then the other pages, older slices before newer ones. Nothing is requested for
    the slices after one that failed: the fetch will stop there.

    Memory, however slow the caller: a new slice is begun only while the slices not yet handed out
    hold fewer than ``max_result_window`` records by their totals (and number fewer than
    ``2 * concurrency``), and pages are requested only for the slices within that budget, so fewer than
    twice ``max_result_window`` records wait. With ``adaptive_slices`` a new slice also waits for the
    totals of those before it, since its width is computed from them (slices hold many pages then, so
    this leaves no connection idle); without, slices begun before their totals were known may each
    hold a first page beyond the budget.
    """

    def __init__(
        self,
        resource: str,
        since_ms: int,
        until_ms: int,
        *,
        settings: ApiSettings,
        stats: FetchStats,
        tenant: str,
        read_page: Callable[[str, str, int, FetchStats], Record],
        submit: Callable[..., Any],
    ) -> None:
        self._resource = resource
        self._until = until_ms
        self._settings = settings
        self._stats = stats
        self._tenant = tenant
        self._read_page = read_page
        self._submit = submit
        self._changed = threading.Condition()
        self._slices: deque[_Slice] = deque()  # begun and not handed out, oldest first
        self._next_lo: int | None = since_ms  # where the next slice begins; None: all begun
        self._density: tuple[int, int] | None = None  # (total, width) of the newest slice counted
        self._density_hi = since_ms
        self._handed_out = 0  # records in the slices handed out, by their totals
        self._in_flight = 0
        self._closed = False
        self._fatal: BaseException | None = None

    def __iter__(self) -> Iterator[_Slice]:
        while True:
            with self._changed:
                self._pump()
                while not self._head_ready():
                    self._changed.wait()
                if self._fatal is not None:
                    raise self._fatal
                if not self._slices:
                    return
                piece = self._slices.popleft()
                self._handed_out += piece.held()
                self._pump()  # its records no longer count against the lookahead
            if piece.error is not None:
                raise piece.error
            yield piece

    def close(self) -> None:
        """Send nothing more; answers to the requests still in flight are dropped."""
        with self._changed:
            self._closed = True

    def _head_ready(self) -> bool:
        """Whether the caller, waiting for the oldest slice, has something to take (or to raise)."""
        if self._fatal is not None:
            return True
        if not self._slices:
            return self._next_lo is None
        head = self._slices[0]
        return head.error is not None or head.complete()

    # --- sending (all under the lock) ------------------------------------------------------------

    def _pump(self) -> None:
        """Send requests until ``concurrency`` are in flight or none is due."""
        while not self._closed and self._in_flight < self._settings.concurrency:
            chosen = self._next_request()
            if chosen is None:
                return
            piece, page = chosen
            piece.waiting.add(page)
            self._in_flight += 1
            self._submit(self._send, piece, piece.attempt, page)

    def _next_request(self) -> tuple[_Slice, int] | None:
        """First pages, then a new slice, then other pages; older slices first."""
        due = self._due()
        piece = next((p for p in due if p.unsent and p.unsent[0] == 1), None)
        if piece is None and self._may_begin():
            piece = self._begin()
        if piece is None:
            piece = next((p for p in due if p.unsent), None)
        return None if piece is None else (piece, piece.unsent.popleft())

    def _due(self) -> list[_Slice]:
        """The slices to request pages for: oldest first, up to one that failed (the fetch stops
        there) and while the older ones hold fewer than ``max_result_window`` records, and, under a
        ``limit_records`` cap, fewer than what remains of it. The oldest is always due: the caller
        waits for it (the cap counts totals here, before duplicates are removed)."""
        settings, due, held = self._settings, [], 0
        for piece in self._slices:
            if piece.error is not None:
                break
            if due and (held >= settings.max_result_window or held >= self._left()):
                break
            due.append(piece)
            held += piece.held()
        return due

    def _left(self) -> float:
        """Records the cap leaves for the slices not handed out yet, by their totals."""
        limit = self._settings.limit_records
        return math.inf if limit is None else limit - self._handed_out

    def _may_begin(self) -> bool:
        settings = self._settings
        if self._next_lo is None:
            return False
        if not self._slices:
            return True
        if len(self._slices) >= 2 * settings.concurrency or any(p.error for p in self._slices):
            return False
        if settings.adaptive_slices and not all(piece.answered for piece in self._slices):
            return False
        held = self._held()
        limit = settings.limit_records
        return held < settings.max_result_window and (limit is None or self._handed_out + held < limit)

    def _held(self) -> int:
        """Records in the slices not handed out yet."""
        return sum(piece.held() for piece in self._slices)

    def _begin(self) -> _Slice:
        assert self._next_lo is not None
        lo = self._next_lo
        width = self._width()
        hi = min(lo + width, self._until)
        if self._settings.adaptive_slices and self._until - hi < width // 4:
            hi = self._until  # rather than a sliver of a slice after this one
        self._next_lo = None if hi >= self._until else hi
        piece = self._slice(lo, hi)
        self._slices.append(piece)
        return piece

    def _width(self) -> int:
        """The next slice's width: ``time_slice_ms``, or with ``adaptive_slices`` and a total seen,
        what holds :meth:`_target` records at the density of the newest slice counted. Growth is
        bounded, so that after a sparse stretch a slice does not swallow a dense one (and need splits),
        and so is shrinking, by ``min_slice_ms``."""
        settings = self._settings
        if not settings.adaptive_slices or self._density is None:
            return settings.time_slice_ms
        total, width = self._density
        widest = max(width, 1) * _MAX_GROWTH
        sized = widest if total == 0 else max(width, 1) * self._target() // total
        return max(min(sized, widest), settings.min_slice_ms)

    def _target(self) -> int:
        """Records a new slice should hold: half of ``max_result_window``, which leaves room for the
        density to vary and is many pages, enough to keep ``concurrency`` requests busy; under a
        ``limit_records`` cap no more than what remains of it (but a page), since the fetch stops only
        after a whole slice."""
        settings = self._settings
        target = max(settings.max_result_window // 2, settings.page_size)
        if settings.limit_records is not None:
            left = settings.limit_records - self._handed_out - self._held()
            target = min(target, max(left, settings.page_size))
        return target

    def _slice(self, lo: int, hi: int) -> _Slice:
        sort = TIME_SORTED[self._resource][1]
        params: dict[str, Any] = {"sort": sort, "pageSize": self._settings.page_size, "from": lo, "to": hi}
        if self._resource == "customer":  # the API may read either pair (API_FACTS: uncertain); send both
            params.update({"fromUpdateTime": lo, "toUpdateTime": hi})
        return _Slice(lo, hi, urlencode(params))

    # --- answers ---------------------------------------------------------------------------------

    def _send(self, piece: _Slice, attempt: int, page: int) -> None:
        """On a pool thread: one page request, then its answer handled under the lock."""
        body: Record | None = None
        error: Exception | None = None
        try:
            body = self._read_page(self._resource, piece.query, page, self._stats)
        except Exception as exc:
            error = exc
        with self._changed:
            try:
                self._in_flight -= 1
                current = piece.attempt == attempt and not piece.replaced and piece.error is None
                if current and not self._closed:
                    self._answer(piece, page, body, error)
                self._pump()
            except BaseException as exc:  # a bug here must fail the fetch, not leave it waiting
                self._fatal = exc
            if self._head_ready():
                self._changed.notify()

    def _answer(self, piece: _Slice, page: int, body: Record | None, error: Exception | None) -> None:
        piece.waiting.discard(page)
        if isinstance(error, _ResultWindowTooLarge):
            self._split(piece, error)
            return
        if error is not None:
            piece.error = error
            return
        assert body is not None
        if page == 1:
            self._first_page(piece, body)
        else:
            piece.pages[page] = body["docs"]
            if piece.total is None:
                self._follow(piece, page, body)
            elif _total(body) != piece.total:
                piece.moved = True
        if not piece.replaced and piece.complete():
            self._check(piece)

    def _first_page(self, piece: _Slice, body: Record) -> None:
        settings = self._settings
        size = _limit(body, settings.page_size)
        total = _total(body)
        if total is not None and piece.hi >= self._density_hi:
            self._density, self._density_hi = (total, piece.hi - piece.lo), piece.hi
        if total is not None and total > settings.max_result_window // size * size:
            self._split(piece, _ResultWindowTooLarge(f"{total} records", endpoint=f"/{self._resource}"))
            return
        if total is not None and self._beyond_cap(piece, total, size):
            self._split(piece, None)
            return
        piece.answered, piece.total, piece.size = True, total, size
        piece.pages[1] = body["docs"]
        if total is None:  # no count to check against: follow the pages one by one
            self._follow(piece, 1, body)
        else:
            piece.unsent.extend(range(2, math.ceil(total / size) + 1))

    def _beyond_cap(self, piece: _Slice, total: int, size: int) -> bool:
        """Whether a slice holds more than twice what the cap leaves for it (and a page), and is wide
        enough to halve: the older half may then hold what remains, and the newer is not read. Below
        that, reading it whole costs less than the splits would (each one reads a first page; records
        sharing a millisecond never fit in a narrower slice)."""
        before = 0
        for other in self._slices:
            if other is piece:
                break
            before += other.held()
        left = self._left() - before
        return 0 < 2 * left < total - size and piece.hi - piece.lo >= 2 * self._settings.min_slice_ms

    @staticmethod
    def _follow(piece: _Slice, page: int, body: Record) -> None:
        if body["docs"] and _has_next(body, page, piece.size):
            piece.unsent.append(page + 1)

    def _check(self, piece: _Slice) -> None:
        """A slice whose pages are all in: read it again if its total changed meanwhile."""
        if piece.total is None:
            return
        read = sum(len(docs) for docs in piece.pages.values())
        if read == piece.total and not piece.moved:
            return
        if piece.attempt >= self._settings.max_rewalks:
            piece.error = CallioApiError(
                f"{self._resource} of tenant {self._tenant}: [{piece.lo}, {piece.hi}] kept changing while "
                f"paged ({self._settings.max_rewalks} re-reads)",
                endpoint=f"/{self._resource}",
            )
            return
        self._stats.rewalks += 1
        log.info(
            "%s of tenant %s: [%d, %d] changed while paged (%d records, %d read); reading it again",
            self._resource,
            self._tenant,
            piece.lo,
            piece.hi,
            piece.total,
            read,
        )
        piece.restart()

    def _split(self, piece: _Slice, cause: CallioApiError | None) -> None:
        """Put the two halves of ``piece`` in its place, older first, or fail it when they would be
        too narrow. ``cause``: the API's refusal to page through it; None: the cap's budget."""
        settings = self._settings
        lo, hi = piece.lo, piece.hi
        if cause is not None and hi - lo < 2 * settings.min_slice_ms:
            piece.error = SliceTooLargeError(
                f"{self._resource} of tenant {self._tenant}: the slice [{lo}, {hi}] "
                f"({hi - lo} ms, no narrower than min_slice_ms={settings.min_slice_ms}) holds more "
                f"records than the API pages through (max_result_window={settings.max_result_window})",
                endpoint=cause.endpoint,
                status=cause.status,
            )
            return
        mid = lo + (hi - lo) // 2
        index = self._slices.index(piece)
        piece.replaced = True
        self._slices[index] = self._slice(mid, hi)
        self._slices.insert(index, self._slice(lo, mid))
        self._stats.splits += 1
        log.info(
            "%s of tenant %s: splitting [%d, %d] at %d (%s)",
            self._resource,
            self._tenant,
            lo,
            hi,
            mid,
            "too deep to page through" if cause is not None else "more than the cap leaves",
        )


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


def _cap(
    chunk: list[Record], field: str, left: int, checkpoint: int | None
) -> tuple[list[Record], int | None, int]:
    """One slice's records cut to the ``left`` that remain of the cap: the records newer than
    ``checkpoint`` count, the oldest first, and the records sharing the time of the last one counted
    stay with it. Returns the records kept (those not counted included), the time up to which they
    are the whole slice (None: nothing was cut), and how many of them count."""
    counting = sorted(
        when
        for record in chunk
        if (when := _time(record, field)) is not None and (checkpoint is None or when > checkpoint)
    )
    if len(counting) <= left:
        return chunk, None, len(counting)
    cut = counting[max(left, 1) - 1]
    kept = [record for record in chunk if (when := _time(record, field)) is None or when <= cut]
    return kept, cut, bisect.bisect_right(counting, cut)
