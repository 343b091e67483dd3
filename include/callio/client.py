"""The Callio API client: one :class:`CallioClient` per tenant account, as the Callio loader it replaces
kept one per account.

Authentication is the API's own: ``POST /auth/login`` returns a token that every request sends in a
``token`` header. The token is cached (25 minutes by default, what public clients use, since its real
lifetime is not documented); a 401 on a request gets one fresh login and one retry.

Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff and
full jitter, honouring ``Retry-After`` in seconds or as an HTTP date, never faster than a floor (a
``Retry-After: 0`` must not turn into a busy loop), never longer than a cap, a bounded number of times.
The error that ends the retries says what failed and where (connection refused, DNS lookup, TLS
handshake, timeout, or the HTTP status, with the host), since the exception class alone does not.

Customers and calls are read newest first (:meth:`CallioClient.fetch_desc`) in time slices that
:class:`include.callio.paging.SliceReader` sizes, splits and reads concurrently; this module turns the
slices into chunks of records without duplicates and applies the record cap. Staff and groups are small
and read whole (:meth:`CallioClient.list_all`).

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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

import httpx
from msgspec.json import decode as _decode_json  # decodes a page about 1.8 times as fast as json.loads

from include.callio.paging import SliceReader, has_next_page, page_limit
from include.callio.types import (
    RESULT_WINDOW_TOO_LARGE,
    SNAPSHOTS,
    TIME_SORTED,
    Account,
    ApiSettings,
    CallioApiError,
    CallioLoginError,
    Fetch,
    FetchStats,
    Record,
    ResultWindowTooLargeError,
)
from include.common.httputil import describe_transport_error, retry_after_seconds

log = logging.getLogger(__name__)


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

    def read_page(self, resource: str, query: str, page: int, stats: FetchStats | None) -> Record:
        """Page ``page`` of ``resource``; ``query``: the other parameters, encoded. Raises
        :class:`ResultWindowTooLargeError` when the API will not page that deep (the pager then splits
        the slice), :class:`CallioApiError` for any other failure."""
        path = f"/{resource}"
        response = self._send("GET", path, query=f"{query}&page={page}", stats=stats)
        status = response.status_code
        if status == 400 and RESULT_WINDOW_TOO_LARGE in response.text:
            raise ResultWindowTooLargeError(
                f"GET {path}: {RESULT_WINDOW_TOO_LARGE}", endpoint=path, status=400
            )
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
            body = self.read_page(resource, query, page, None)
            records.extend(body["docs"])
            if not body["docs"] or not has_next_page(body, page, page_limit(body, self.settings.page_size)):
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
          read, the next slices' first pages already go out (see :class:`SliceReader`, which also
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
        reader = SliceReader(
            resource,
            since_ms,
            until_ms,
            settings=self.settings,
            stats=stats,
            tenant=self.account.tenant,
            read_page=self.read_page,
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
