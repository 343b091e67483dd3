"""The Callio API, simulated over real HTTP on top of a :class:`~sandbox.worlds.callio.CallioWorld`.

It behaves as ``API_FACTS.md`` says the real one does: ``POST /auth/login`` hands out a token that
every other request sends in a ``token`` header (and that expires); ``/customer`` and ``/call`` filter
on ``updateTime`` / ``createTime`` with inclusive ``from`` / ``to`` bounds (customers also take
``fromUpdateTime`` / ``toUpdateTime``) and serve newest first, mongoose-paginate style; asking past
``max_result_window`` records answers 400 ``Result window is too large`` as Elasticsearch does, which is
what forces clients to slice their time windows. Ties in the sort order are broken by ``_id``, so pages
are stable. Each tenant's token sees that tenant's data only.

Options exist for what is uncertain about the real API (which time parameters customers honour,
``totalDocs``, ``total`` or no count at all), and :attr:`CallioSimulator.faults` adds 429s, 5xx and latency.

Serving is cheap: each tenant's records are sorted once per data version, a page is two bisections
and a list slice, and its JSON is encoded once. In-process::

    world = CallioWorld(tenants=2)
    sim = CallioSimulator(world)
    with sim.serve() as base_url:
        ...  # sim.accounts() holds the logins

Standalone (the first line on stdout is ``{"base_url": ..., "accounts": [...]}``; SIGTERM stops it)::

    python -m sandbox.simulators.callio --port 0 --tenants 10 --customers 20000 --calls 50000

A standalone server's data moves forward between two runs with ``POST /_sandbox/advance`` (not part of
the real API), whose JSON body holds :meth:`CallioWorld.advance`'s keyword arguments.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import secrets
import signal
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

from sandbox.http import BadRequestError, Request, Response, SimulatedApi
from sandbox.worlds.callio import DAY_MS, CallioWorld, Record, Tenant, time_value

TIME_FIELDS = {"customer": "updateTime", "call": "createTime"}
CUSTOMER_TIME_PARAMS = (("from", "to"), ("fromUpdateTime", "toUpdateTime"))
DEFAULT_PAGE_SIZE = 10  # mongoose-paginate's default limit

ListHook = Callable[[str, str, int], None]


@dataclass(frozen=True)
class _Index:
    """One tenant's records of one resource, newest first, with the negated times for bisection."""

    version: int
    records: list[Record]
    keys: list[int]

    @classmethod
    def build(cls, version: int, records: Sequence[Record], time_field: str) -> _Index:
        decorated = sorted(
            ((time_value(r.get(time_field)) or 0, r.get("_id") or "", n) for n, r in enumerate(records)),
            reverse=True,
        )
        return cls(version, [records[n] for _, _, n in decorated], [-t for t, _, _ in decorated])

    def between(self, lo: int | None, hi: int | None) -> tuple[int, int]:
        """Positions ``[start, stop)`` of the records with ``lo <= time <= hi``."""
        start = 0 if hi is None else bisect.bisect_left(self.keys, -hi)
        stop = len(self.keys) if lo is None else bisect.bisect_right(self.keys, -lo)
        return start, max(start, stop)


class CallioSimulator:
    """Serve ``world`` as the Callio API. ``before_list``, when set, is called with
    ``(tenant, resource, page)`` before a list page is computed, so a test can change the data while
    a client pages through it."""

    def __init__(
        self,
        world: CallioWorld,
        *,
        token_ttl_s: float = 3_600.0,
        max_page_size: int = 500,
        max_result_window: int = 10_000,
        total_field: str | None = "totalDocs",
        customer_time_params: Sequence[tuple[str, str]] = CUSTOMER_TIME_PARAMS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.world = world
        self.token_ttl_s = token_ttl_s
        self.max_page_size = max_page_size
        self.max_result_window = max_result_window
        self.total_field = total_field
        self.customer_time_params = tuple(customer_time_params)
        self.before_list: ListHook | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (tenant, expiry on the clock)
        self._logins = {t.email: t for t in world.tenants.values()}
        self._indexes: dict[tuple[str, str], _Index] = {}
        self.api = SimulatedApi("callio")
        self.faults = self.api.faults
        self.api.route("POST", "/auth/login")(self._login)
        self.api.route("GET", "/customer")(lambda request: self._list_by_time(request, "customer"))
        self.api.route("GET", "/call")(lambda request: self._list_by_time(request, "call"))
        self.api.route("GET", "/user")(lambda request: self._list_all(request, "user"))
        self.api.route("GET", "/user-group")(lambda request: self._list_all(request, "user-group"))
        self.api.route("POST", "/_sandbox/advance")(self._advance)

    @contextlib.contextmanager
    def serve(self, port: int = 0, host: str = "127.0.0.1") -> Generator[str]:
        """Serve on ``host`` until the block ends; yield the base URL."""
        with self.api.serve(port, host) as base_url:
            yield base_url

    def accounts(self) -> list[dict[str, str]]:
        return self.world.accounts()

    def expire_tokens(self) -> None:
        """Every token handed out so far expires now (the next request with it answers 401)."""
        with self._lock:
            self._tokens = {token: (tenant, -math.inf) for token, (tenant, _) in self._tokens.items()}

    # --- routes ----------------------------------------------------------------------------------

    def _login(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not body.get("email") or not body.get("password"):
            return Response.error(400, "email and password are required")
        tenant = self._logins.get(body["email"])
        if tenant is None or not secrets.compare_digest(str(body["password"]), tenant.password):
            return Response.error(401, "Invalid email or password")
        token = secrets.token_hex(24)
        with self._lock:
            self._tokens[token] = (tenant.name, self._clock() + self.token_ttl_s)
        return Response.json({"token": token})

    def _tenant(self, request: Request) -> Tenant | Response:
        token = request.header("token")
        if not token:
            return Response.error(401, "Unauthorized: missing token")
        with self._lock:
            entry = self._tokens.get(token)
            if entry is not None and entry[1] <= self._clock():
                del self._tokens[token]
                return Response.error(401, "Token expired")
        if entry is None:
            return Response.error(401, "Unauthorized: invalid token")
        return self.world.tenants[entry[0]]

    def _list_by_time(self, request: Request, resource: str) -> Response:
        tenant = self._tenant(request)
        if isinstance(tenant, Response):
            return tenant
        time_field = TIME_FIELDS[resource]
        try:
            page, size = self._paging(request)
            if request.query.get("sort", f"{time_field}DESC") != f"{time_field}DESC":
                raise BadRequestError(f"sort must be {time_field}DESC")
            pairs = self.customer_time_params if resource == "customer" else (("from", "to"),)
            lo = max((_int_param(request, p) for p, _ in pairs if p in request.query), default=None)
            hi = min((_int_param(request, p) for _, p in pairs if p in request.query), default=None)
        except BadRequestError as exc:
            return Response.error(400, str(exc))
        if page * size > self.max_result_window:
            return self._window_too_large(page, size)
        if self.before_list is not None:
            self.before_list(tenant.name, resource, page)
        index = self._index(tenant, resource)
        start, stop = index.between(lo, hi)
        first = start + (page - 1) * size
        return self._page(index.records[first : min(stop, first + size)], stop - start, page, size)

    def _list_all(self, request: Request, resource: str) -> Response:
        tenant = self._tenant(request)
        if isinstance(tenant, Response):
            return tenant
        try:
            page, size = self._paging(request)
        except BadRequestError as exc:
            return Response.error(400, str(exc))
        records = tenant.staff if resource == "user" else tenant.groups
        first = (page - 1) * size
        return self._page(records[first : first + size], len(records), page, size)

    def _advance(self, request: Request) -> Response:
        """Not part of the real API: lets a standalone simulator's data change between two runs.
        Takes :meth:`CallioWorld.advance`'s keyword arguments as a JSON object."""
        allowed = {"now_ms", "customers", "calls", "renames"}
        try:
            options = request.json() or {}
        except ValueError:
            options = None
        if not isinstance(options, dict) or not set(options) <= allowed:
            return Response.error(400, f"advance takes a JSON object with keys among {sorted(allowed)}")
        with self._lock:  # not while an index is being built from the same lists
            change = self.world.advance(**options)
        return Response.json(
            {
                "now_ms": change.now_ms,
                "customers": change.customers,
                "calls": change.calls,
                "staff": change.staff,
            }
        )

    # --- pieces ----------------------------------------------------------------------------------

    def _paging(self, request: Request) -> tuple[int, int]:
        page = _int_param(request, "page", 1)
        size = _int_param(request, "pageSize", DEFAULT_PAGE_SIZE)
        if page < 1 or size < 1:
            raise BadRequestError("page and pageSize must be positive")
        return page, min(size, self.max_page_size)

    def _window_too_large(self, page: int, size: int) -> Response:
        return Response.error(
            400,
            "Result window is too large, from + size must be less than or equal to: "
            f"[{self.max_result_window}] but was [{page * size}]. See the scroll api for a more efficient "
            "way to request large data sets. This limit can be set by changing the "
            "[index.max_result_window] index level setting.",
        )

    def _index(self, tenant: Tenant, resource: str) -> _Index:
        key = (tenant.name, resource)
        index = self._indexes.get(key)
        if index is None or index.version != tenant.version:
            with self._lock:
                index = self._indexes.get(key)
                if index is None or index.version != tenant.version:
                    records = tenant.customers if resource == "customer" else tenant.calls
                    index = _Index.build(tenant.version, records, TIME_FIELDS[resource])
                    self._indexes[key] = index
        return index

    def _page(self, docs: list[Record], total: int, page: int, size: int) -> Response:
        """A mongoose-paginate page; with ``total_field`` None, without any count (``hasNextPage`` only)."""
        pages = max(1, math.ceil(total / size))
        payload: dict[str, object] = {"docs": docs, "limit": size, "page": page}
        if self.total_field is not None:
            payload.update({self.total_field: total, "totalPages": pages})
        payload.update(
            {
                "pagingCounter": (page - 1) * size + 1,
                "hasPrevPage": page > 1,
                "hasNextPage": page < pages,
                "prevPage": page - 1 if page > 1 else None,
                "nextPage": page + 1 if page < pages else None,
            }
        )
        return Response.json(payload)


def _int_param(request: Request, name: str, default: int | None = None) -> int:
    value = request.query.get(name)
    if value is None and default is not None:
        return default
    try:
        return int(value or "")
    except ValueError:
        raise BadRequestError(f"{name} must be an integer") from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a synthetic Callio API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--customers", type=int, default=2_000, help="per tenant")
    parser.add_argument("--calls", type=int, default=5_000, help="per tenant")
    parser.add_argument("--span-days", type=float, default=30.0)
    parser.add_argument("--end-ms", type=int, default=None, help="newest record time (default: now)")
    parser.add_argument("--burst", type=int, default=2_500, help="records sharing one millisecond")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    parser.add_argument("--token-ttl-s", type=float, default=3_600.0)
    parser.add_argument("--max-page-size", type=int, default=500)
    parser.add_argument("--max-result-window", type=int, default=10_000)
    parser.add_argument("--total-field", choices=["totalDocs", "total"], default="totalDocs")
    args = parser.parse_args(argv)

    world = CallioWorld(
        args.tenants,
        args.customers,
        args.calls,
        span_ms=int(args.span_days * DAY_MS),
        end_ms=args.end_ms if args.end_ms is not None else int(time.time() * 1000),
        burst=args.burst,
        seed=args.seed,
    )
    simulator = CallioSimulator(
        world,
        token_ttl_s=args.token_ttl_s,
        max_page_size=args.max_page_size,
        max_result_window=args.max_result_window,
        total_field=args.total_field,
    )
    simulator.faults.latency_s = args.latency_ms / 1000
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with simulator.serve(args.port, args.host) as base_url:
        print(
            json.dumps({"base_url": base_url, "accounts": world.accounts()}, ensure_ascii=False), flush=True
        )
        stop.wait()


if __name__ == "__main__":
    main()
