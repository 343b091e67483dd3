"""How the Callio client pages: the shape of a page, and the time slices of a window read concurrently.

The API is backed by a search index and refuses to page past ``max_result_window`` records of one
query, so the customers and calls of a window are read in time slices, each a query of its own: a slice
holding more is halved until it fits (:class:`SliceTooLargeError` when it no longer can). With
``adaptive_slices`` a slice's width comes from the density the previous slices reported, so that sparse
stretches cost few requests and dense ones rarely need a split. :class:`SliceReader` keeps
``concurrency`` page requests in flight across slices and hands the slices out complete, oldest first;
what a fetch guarantees on top of that (boundaries, duplicates, the record cap) is
:meth:`include.callio.client.CallioClient.fetch_desc`'s.

The reader sends nothing itself: it is given the function that reads one page and the function that
runs it on a thread, so the HTTP side (authentication, retries) stays in :mod:`include.callio.client`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from include.callio.types import (
    TIME_SORTED,
    ApiSettings,
    CallioApiError,
    FetchStats,
    Record,
    ResultWindowTooLargeError,
    SliceTooLargeError,
)

log = logging.getLogger(__name__)

_MAX_GROWTH = 4
"""An adaptive slice is at most this many times as wide as the slice whose density sized it."""


def page_total(body: Record) -> int | None:
    """The record count a page reports (``totalDocs`` or ``total``), None when it reports none."""
    for key in ("totalDocs", "total"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def page_limit(body: Record, default: int) -> int:
    """The page size the API applied (it may cap the one asked for)."""
    value = body.get("limit")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def has_next_page(body: Record, page: int, size: int) -> bool:
    """Whether page ``page`` (of ``size`` records) has a next, by whatever the body tells."""
    if isinstance(body.get("hasNextPage"), bool):
        return body["hasNextPage"]
    if isinstance(body.get("totalPages"), int):
        return page < body["totalPages"]
    total = page_total(body)
    return page * size < total if total is not None else len(body["docs"]) >= size


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


class SliceReader:
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
        if isinstance(error, ResultWindowTooLargeError):
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
            elif page_total(body) != piece.total:
                piece.moved = True
        if not piece.replaced and piece.complete():
            self._check(piece)

    def _first_page(self, piece: _Slice, body: Record) -> None:
        settings = self._settings
        size = page_limit(body, settings.page_size)
        total = page_total(body)
        if total is not None and piece.hi >= self._density_hi:
            self._density, self._density_hi = (total, piece.hi - piece.lo), piece.hi
        if total is not None and total > settings.max_result_window // size * size:
            self._split(piece, ResultWindowTooLargeError(f"{total} records", endpoint=f"/{self._resource}"))
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
        if body["docs"] and has_next_page(body, page, piece.size):
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
