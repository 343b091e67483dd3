"""The Callio client against the Callio simulator, over real HTTP: auth, retries, paging, slicing.

Every assertion is on what came back over the wire, compared with the simulator's world: the set of
records a window must hold is computed from the world's lists, independently of the client.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator

import httpx
import pytest

from include.callio.client import CallioClient
from include.callio.config import load_config
from include.callio.types import (
    Account,
    ApiSettings,
    CallioApiError,
    CallioLoginError,
    RetryPolicy,
    SliceTooLargeError,
)
from sandbox.http import Request
from sandbox.simulators.callio import CallioSimulator
from sandbox.worlds.callio import DAY_MS, CallioWorld, time_value
from tests.conftest import set_connection

TIME_FIELD = {"customer": "updateTime", "call": "createTime"}
HOUR_MS = 3_600_000


@contextlib.contextmanager
def running(world: CallioWorld | None = None, **options) -> Generator[tuple[CallioSimulator, str]]:
    simulator = CallioSimulator(
        world or CallioWorld(tenants=2, customers=400, calls=500, burst=120), **options
    )
    with simulator.serve() as base_url:
        yield simulator, base_url


def client(
    simulator: CallioSimulator, base_url: str, tenant: int = 0, sleeps: list | None = None, **settings
) -> CallioClient:
    account = Account(**simulator.accounts()[tenant])
    return CallioClient(
        account,
        ApiSettings(base_url=base_url, **settings),
        sleep=sleeps.append if sleeps is not None else lambda seconds: None,
    )


def expected(world: CallioWorld, tenant: int, resource: str, lo: int, hi: int) -> Counter:
    """What ``[lo, hi]`` holds: ids, and the canonical text of records without one."""
    name = list(world.tenants)[tenant]
    records = world.tenants[name].customers if resource == "customer" else world.tenants[name].calls
    field = TIME_FIELD[resource]
    return Counter(_key(r) for r in records if lo <= time_value(r[field]) <= hi)


def _key(record: dict) -> str:
    return record.get("_id") or json.dumps(record, sort_keys=True, ensure_ascii=False)


def fetched(fetch) -> Counter:
    return Counter(_key(record) for chunk in fetch for record in chunk)


def logins(simulator: CallioSimulator) -> int:
    return sum(r.path == "/auth/login" for r in simulator.api.requests)


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize("adaptive", [False, True], ids=["day_slices", "adaptive_slices"])
def test_full_fetch_sends_the_token_header_and_returns_every_record_once(adaptive):
    with running() as (sim, base), client(sim, base, page_size=50, adaptive_slices=adaptive) as api:
        world = sim.world
        tenant = world.tenants[api.account.tenant]
        for resource in ("customer", "call"):
            fetch = api.fetch_desc(resource, world.start_ms, world.end_ms)
            got = fetched(fetch)
            want = expected(world, 0, resource, world.start_ms, world.end_ms)
            assert got == want and set(got.values()) == {1}
            assert sum(k.startswith("{") for k in got) == 1  # the record without _id came through
            stats = fetch.stats
            assert (stats.records, stats.window_to, stats.capped) == (sum(want.values()), world.end_ms, False)
            assert (stats.slices < 10) if adaptive else (stats.slices == 30)  # some 30 records a day
            assert stats.pages >= stats.slices and stats.splits == 0
            records = tenant.customers if resource == "customer" else tenant.calls
            assert stats.max_time == max(time_value(r[TIME_FIELD[resource]]) for r in records)
        assert api.list_all("user") == tenant.staff
        assert api.list_all("user-group") == tenant.groups
    login, *rest = sim.api.requests
    assert login.path == "/auth/login"
    assert login.json() == {k: v for k, v in sim.accounts()[0].items() if k != "tenant"}
    assert logins(sim) == 1
    assert {r.header("token") for r in rest} == {rest[0].header("token")} and rest[0].header("token")
    assert not any(r.header("authorization") for r in rest)


def test_tenants_see_only_their_own_data():
    with running() as (sim, base), client(sim, base, 0) as first, client(sim, base, 1) as second:
        world = sim.world
        a = fetched(first.fetch_desc("call", world.start_ms, world.end_ms))
        b = fetched(second.fetch_desc("call", world.start_ms, world.end_ms))
        assert a == expected(world, 0, "call", world.start_ms, world.end_ms)
        assert b == expected(world, 1, "call", world.start_ms, world.end_ms)
        assert not {k for k in a if not k.startswith("{")} & set(b)
        assert first.list_all("user") != second.list_all("user")


def test_bad_credentials_raise_a_login_error_that_keeps_the_password_out(caplog):
    caplog.set_level(logging.DEBUG)
    with running() as (sim, base):
        good = sim.accounts()[0]
        account = Account(good["tenant"], good["email"], "not-the-password-8c1f")
        assert "not-the-password" not in repr(account) + str(account)
        with CallioClient(account, ApiSettings(base_url=base)) as api, pytest.raises(CallioLoginError) as err:
            api.list_all("user")
        assert good["tenant"] in str(err.value) and "401" in str(err.value)
        with (
            CallioClient(Account("nobody", "nobody@example.vn", "x" * 12), ApiSettings(base_url=base)) as api,
            pytest.raises(CallioLoginError, match="tenant nobody: HTTP 401"),
        ):
            api.login()
    assert "not-the-password" not in caplog.text + str(err.value) + repr(err.value)


def test_expired_token_gets_one_fresh_login_and_one_retry(caplog):
    caplog.set_level(logging.DEBUG)
    with running() as (sim, base), client(sim, base) as api:
        staff = api.list_all("user")
        sim.expire_tokens()
        assert api.list_all("user") == staff  # 401, login, the same request again
        assert logins(sim) == 2
        sim.faults.fail_next(401, times=2, path="/user", message="Unauthorized")
        with pytest.raises(CallioApiError, match="HTTP 401 after a fresh login") as err:
            api.list_all("user")
        assert err.value.status == 401 and logins(sim) == 3  # one re-login, no loop
    secrets = {r.header("token") for r in sim.api.requests if r.header("token")}
    secrets |= {a["password"] for a in sim.accounts()}
    assert len(secrets) >= 4
    assert not any(secret in caplog.text + str(err.value) for secret in secrets)


def test_a_connection_host_without_a_scheme_is_plain_http(monkeypatch):
    with running() as (sim, base):
        host, port = base.removeprefix("http://").split(":")
        extra = {"accounts": sim.accounts()}
        set_connection(monkeypatch, "callio_api", "http", host=host, port=int(port), extra=json.dumps(extra))
        config = load_config()
        assert config.api.base_url == base
        with CallioClient(config.account(config.tenants[0]), config.api) as api:
            assert api.list_all("user-group") == sim.world.tenants[config.tenants[0]].groups


def test_token_is_reused_within_its_ttl_and_renewed_after():
    now = [0.0]
    with running() as (sim, base):
        account = Account(**sim.accounts()[0])
        settings = ApiSettings(base_url=base, token_ttl_s=60)
        with CallioClient(account, settings, clock=lambda: now[0]) as api:
            api.list_all("user-group")
            now[0] = 59.0
            api.list_all("user-group")
            assert logins(sim) == 1
            now[0] = 61.0
            api.list_all("user-group")
            assert logins(sim) == 2  # renewed before use: the API never saw a stale token
        assert all(r.path != "/user-group" or r.header("token") for r in sim.api.requests)


# --- retries --------------------------------------------------------------------------------------


def test_429_honours_retry_after_as_seconds_as_a_date_and_zero_then_5xx_backs_off():
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=7)
    with running() as (sim, base), client(sim, base, sleeps=sleeps, retry=policy) as api:
        staff = api.list_all("user")
        later = email.utils.formatdate(time.time() + 4, usegmt=True)
        sim.faults.fail_next(429, headers={"Retry-After": "2"}, path="/user")
        sim.faults.fail_next(429, headers={"Retry-After": later}, path="/user")
        sim.faults.fail_next(429, headers={"Retry-After": "0"}, path="/user")
        sim.faults.fail_next(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, path="/user")
        sim.faults.fail_next(503, path="/user")
        sim.faults.fail_next(502, path="/user")
        assert api.list_all("user") == staff
    assert len(sleeps) == 6
    assert sleeps[0] == 2.0
    assert 2.0 <= sleeps[1] <= 4.0  # a date has whole seconds
    assert sleeps[2] == sleeps[3] == policy.min_delay_s  # zero and a past date: the floor, no spinning
    assert policy.min_delay_s <= sleeps[4] <= policy.base_s * 2**4  # full jitter below the 5th ceiling
    assert policy.min_delay_s <= sleeps[5] <= policy.base_s * 2**5


def test_retries_are_bounded_and_the_error_names_endpoint_and_status(caplog):
    sleeps: list[float] = []
    retry = RetryPolicy(attempts=3, max_delay_s=5)
    with running() as (sim, base), client(sim, base, sleeps=sleeps, retry=retry) as api:
        sim.faults.fail_next(503, times=3, path="/user-group")
        with pytest.raises(CallioApiError) as err:
            api.list_all("user-group")
        assert "/user-group" in str(err.value) and "HTTP 503" in str(err.value) and err.value.status == 503
        assert len(sleeps) == 2
        sim.faults.fail_next(429, headers={"Retry-After": "3600"}, path="/user-group")
        api.list_all("user-group")
        assert sleeps[-1] == 5  # capped
    assert "retry 1 of 2" in caplog.text


def test_timeouts_are_retried_then_reported():
    with running() as (sim, base):
        sim.faults.latency_s = 0.5

        def recover(seconds: float) -> None:
            sim.faults.latency_s = 0.0

        account = Account(**sim.accounts()[0])
        with CallioClient(account, ApiSettings(base_url=base, timeout=0.2), sleep=recover) as api:
            assert api.list_all("user-group") == sim.world.tenants[account.tenant].groups
        sim.faults.latency_s = 0.5
        settings = ApiSettings(base_url=base, timeout=0.2, retry=RetryPolicy(attempts=2))
        with (
            CallioClient(account, settings, sleep=lambda s: None) as api,
            pytest.raises(CallioApiError) as err,
        ):
            api.login()
        assert "/auth/login" in str(err.value) and "ReadTimeout" in str(err.value)


@contextlib.contextmanager
def unreachable(kind: str) -> Generator[str]:
    """A base URL that fails in the way ``kind`` says, with credentials in it that must not leak."""
    if kind == "refused":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        yield f"http://user:url-secret-7f3a@127.0.0.1:{port}"  # nothing listens there any more
    elif kind == "dns":
        yield "http://user:url-secret-7f3a@nonexistent.invalid"
    elif kind == "timeout":
        with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
            yield f"http://user:url-secret-7f3a@127.0.0.1:{silent.getsockname()[1]}"
    else:  # tls: https to a plain HTTP port
        with running() as (_, base):
            yield base.replace("http://", "https://user:url-secret-7f3a@")


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("refused", r"connection refused by 127\.0\.0\.1:\d+ \(ConnectError\)"),
        ("dns", r"DNS lookup of nonexistent\.invalid:80 failed"),
        ("timeout", r"no answer from 127\.0\.0\.1:\d+ within 0\.3 s \(ReadTimeout\)"),
        ("tls", r"TLS handshake with 127\.0\.0\.1:\d+ failed: wrong version number"),
    ],
)
def test_a_network_failure_says_what_failed_and_where_without_credentials(kind, said, caplog):
    caplog.set_level(logging.DEBUG)
    account = Account("anphat", "admin@anphat.vn", "tenant-password-51c2")
    sleeps: list[float] = []
    with unreachable(kind) as base:
        settings = ApiSettings(base_url=base, timeout=0.3, retry=RetryPolicy(attempts=2))
        with (
            CallioClient(account, settings, sleep=sleeps.append) as api,
            pytest.raises(CallioApiError) as err,
        ):
            api.login()
    message = str(err.value)
    assert re.search(said, message), message
    assert message.startswith("POST /auth/login for tenant anphat failed 2 times; last: ")
    assert len(sleeps) == 1 and re.search(said, caplog.text)  # the retry's warning says it too
    for secret in ("tenant-password-51c2", "url-secret-7f3a", "user:"):
        assert secret not in message + repr(err.value) + caplog.text


# --- paging and slicing ---------------------------------------------------------------------------


@pytest.mark.parametrize("total_field", ["totalDocs", "total", None])
def test_page_shapes_total_fallback_and_a_capped_page_size(total_field):
    with (
        running(total_field=total_field, max_page_size=40) as (sim, base),
        client(sim, base, page_size=100) as api,
    ):
        world = sim.world
        fetch = api.fetch_desc("customer", world.start_ms, world.end_ms)
        assert fetched(fetch) == expected(world, 0, "customer", world.start_ms, world.end_ms)
        assert fetch.stats.pages > 400 // 40
        assert len(api.list_all("user")) == len(world.tenants[api.account.tenant].staff)


@pytest.mark.parametrize("params", [(("from", "to"),), (("fromUpdateTime", "toUpdateTime"),)])
def test_customer_window_works_whichever_time_parameters_the_api_reads(params):
    with running(customer_time_params=params) as (sim, base), client(sim, base, adaptive_slices=False) as api:
        world = sim.world
        lo, hi = world.start_ms + 3 * DAY_MS, world.start_ms + 9 * DAY_MS + 12_345
        fetch = api.fetch_desc("customer", lo, hi)
        assert fetched(fetch) == expected(world, 0, "customer", lo, hi)
        assert fetch.stats.window_to == hi and fetch.stats.slices == 7


def test_a_total_above_the_result_window_splits_the_slice():
    settings = {"page_size": 40, "max_result_window": 200, "time_slice_ms": 10 * DAY_MS}
    with running() as (sim, base), client(sim, base, **settings) as api:
        world = sim.world
        fetch = api.fetch_desc("call", world.start_ms, world.end_ms)
        assert fetched(fetch) == expected(world, 0, "call", world.start_ms, world.end_ms)
        assert fetch.stats.splits >= 1  # ten days of about 13 calls, plus the burst of 120
        assert not any(r.query.get("page") == "6" for r in sim.api.requests)  # never asked past 200


def test_deep_paging_refused_with_400_splits_the_slice():
    world = CallioWorld(tenants=1, customers=400, calls=50, burst=60, seed=3)
    with (
        running(world, max_result_window=100) as (sim, base),
        client(sim, base, page_size=30, time_slice_ms=10 * DAY_MS) as api,
    ):
        fetch = api.fetch_desc("customer", world.start_ms, world.end_ms)
        assert fetched(fetch) == expected(world, 0, "customer", world.start_ms, world.end_ms)
        assert fetch.stats.splits >= 1
    # the client believed the window was 10,000 deep: it asked past 100, got the 400, and split
    assert any(int(r.query["page"]) * 30 > 100 for r in sim.api.requests if r.path == "/customer")


def test_thousands_sharing_one_millisecond_across_page_and_slice_boundaries():
    world = CallioWorld(tenants=1, customers=4_500, calls=4_500, burst=2_000, seed=5)
    burst = world.tenants["anphat"].burst_ms
    since = burst - 5 * HOUR_MS  # slices of an hour: the burst sits on the boundary of two slices
    settings = {"page_size": 150, "time_slice_ms": HOUR_MS, "adaptive_slices": False}
    with running(world) as (sim, base), client(sim, base, **settings) as api:
        for resource in ("customer", "call"):
            fetch = api.fetch_desc(resource, since, burst + 3 * HOUR_MS)
            got = fetched(fetch)
            assert got == expected(world, 0, resource, since, burst + 3 * HOUR_MS)
            assert set(got.values()) == {1} and len(got) > 2_000
            assert fetch.stats.slices == 8
    # both slices around the burst were read (each holds it), and each record was kept once
    windows = {(r.query.get("from"), r.query.get("to")) for r in sim.api.requests if r.path == "/customer"}
    assert {(str(burst - HOUR_MS), str(burst)), (str(burst), str(burst + HOUR_MS))} <= windows


def test_a_capped_fetch_leaves_no_hole_below_its_checkpoint():
    world = CallioWorld(tenants=1, customers=1_200, calls=100, burst=300, seed=9)
    with running(world) as (sim, base), client(sim, base, page_size=50, limit_records=250) as api:
        since, until, got = world.start_ms, world.end_ms, Counter()
        runs, checkpoint = 0, None
        while runs < 50:  # each run starts at the previous checkpoint, as the pipeline does
            runs += 1
            fetch = api.fetch_desc("customer", since, until, checkpoint_ms=checkpoint)
            chunk = fetched(fetch)
            stats = fetch.stats
            assert chunk == expected(world, 0, "customer", since, stats.window_to)  # nothing skipped
            assert stats.max_time <= stats.window_to
            got.update(chunk)
            if not stats.capped:
                break
            assert stats.window_to < until and stats.records >= 250
            since = checkpoint = stats.max_time
        assert runs > 3
        assert set(got) == set(expected(world, 0, "customer", world.start_ms, until))


def test_data_moving_while_a_slice_is_paged_is_read_again():
    world = CallioWorld(tenants=1, customers=800, calls=50, burst=0, seed=11)
    until = world.end_ms
    moved: list[str] = []

    def change_once(tenant: str, resource: str, page: int) -> None:
        if resource == "customer" and page == 3 and not moved:
            moved.extend(world.advance(until + HOUR_MS, customers=30, calls=0, renames=0).customers[tenant])

    with running(world) as (sim, base):
        sim.before_list = change_once
        with client(sim, base, page_size=40, time_slice_ms=40 * DAY_MS, concurrency=4) as api:
            fetch = api.fetch_desc("customer", world.start_ms, until)
            got = fetched(fetch)
        assert len(moved) == 30 and fetch.stats.rewalks == 1
        assert got == expected(world, 0, "customer", world.start_ms, until)  # the world after the change
        assert not set(moved) & set(got)  # they left the window: the next run reads them


def test_a_slice_that_never_settles_fails_instead_of_missing_records():
    world = CallioWorld(tenants=1, customers=300, calls=50, burst=0, seed=12)

    def always_change(tenant: str, resource: str, page: int) -> None:
        if page == 2:
            world.advance(customers=5, calls=0, renames=0)

    with running(world) as (sim, base):
        until = world.end_ms
        sim.before_list = always_change
        settings = {"page_size": 50, "max_rewalks": 2, "time_slice_ms": 40 * DAY_MS}
        with client(sim, base, **settings) as api, pytest.raises(CallioApiError, match="kept changing"):
            list(api.fetch_desc("customer", world.start_ms, until))


def test_a_burst_too_large_for_the_narrowest_slice_is_an_error():
    world = CallioWorld(tenants=1, customers=600, calls=50, burst=250, seed=13)
    with running(world, max_result_window=200) as (sim, base):
        with (
            client(sim, base, page_size=50, max_result_window=200) as api,
            pytest.raises(SliceTooLargeError) as err,
        ):
            for _ in api.fetch_desc("customer", world.start_ms, world.end_ms):
                pass
        assert "min_slice_ms=60000" in str(err.value) and "max_result_window=200" in str(err.value)


def test_pages_of_a_slice_are_requested_concurrently():
    # one slice of 20 pages: once page 1 has told how many there are, pages go out 4 at a time
    with (
        running() as (sim, base),
        client(sim, base, page_size=20, time_slice_ms=40 * DAY_MS) as api,
        watched(sim, gather=4, gated=lambda request: request.query["page"] != "1") as seen,
    ):
        fetch = api.fetch_desc("customer", sim.world.start_ms, sim.world.end_ms)
        assert fetched(fetch) == expected(sim.world, 0, "customer", sim.world.start_ms, sim.world.end_ms)
    assert seen["gathered"] and seen["peak"] == 4


# --- reading across slices ------------------------------------------------------------------------


@contextlib.contextmanager
def watched(
    sim: CallioSimulator, gather: int = 0, gated: Callable[[Request], bool] = lambda request: True
) -> Generator[dict]:
    """Wrap the simulator's dispatch to watch the list requests. Yields what it saw: ``peak``
    requests in flight at once, ``slices``: the most distinct windows among them, ``served``:
    ``(from, to, docs)`` of every page answered, and ``changed``, a condition notified at each.

    With ``gather``, the ``gated`` requests wait until that many are in flight together, once (then
    ``gathered`` is true): a client that sends fewer at once never gets there, and after a safety
    timeout the requests go on and the test sees ``gathered`` false and a lower ``peak``. No
    assertion depends on how fast the machine is."""
    changed = threading.Condition()
    seen = {"peak": 0, "slices": 0, "served": [], "changed": changed, "gathered": False}
    in_flight: list[Request] = []
    gave_up = [gather == 0]
    dispatch = sim.api.dispatch

    def watching(request: Request):
        if request.path not in ("/customer", "/call"):
            return dispatch(request)
        window = (int(request.query["from"]), int(request.query["to"]))
        with changed:
            in_flight.append(request)
            seen["peak"] = max(seen["peak"], len(in_flight))
            seen["slices"] = max(seen["slices"], len({(r.query["from"], r.query["to"]) for r in in_flight}))
            if gather and len(in_flight) >= gather:
                seen["gathered"] = True
                changed.notify_all()
            if gated(request) and not changed.wait_for(lambda: seen["gathered"] or gave_up[0], timeout=30):
                gave_up[0] = True
                changed.notify_all()
        try:
            response = dispatch(request)
        finally:
            with changed:
                in_flight.remove(request)
        if response.status == 200:
            with changed:
                seen["served"].append((*window, len(json.loads(response.body)["docs"])))
                changed.notify_all()
        return response

    sim.api.dispatch = watching
    try:
        yield seen
    finally:
        sim.api.dispatch = dispatch


def test_requests_of_several_slices_are_in_flight_together():
    # about 13 customers a day, one page each: slice by slice, a single request would be in flight
    settings = {"page_size": 20, "adaptive_slices": False}
    with running() as (sim, base), client(sim, base, **settings) as api, watched(sim, gather=4) as seen:
        world = sim.world
        fetch = api.fetch_desc("customer", world.start_ms, world.end_ms)
        assert fetched(fetch) == expected(world, 0, "customer", world.start_ms, world.end_ms)
        assert fetch.stats.slices == 30
    assert seen["gathered"] and seen["peak"] == 4 and seen["slices"] == 4


def test_adaptive_slices_cost_fewer_requests_on_a_sparse_window():
    world = CallioWorld(tenants=1, customers=300, calls=300, burst=0, seed=21)
    with running(world) as (sim, base):
        requests = {}
        for adaptive in (False, True):
            with client(sim, base, page_size=50, time_slice_ms=HOUR_MS, adaptive_slices=adaptive) as api:
                fetch = api.fetch_desc("call", world.start_ms, world.end_ms)
                got = fetched(fetch)
                assert got == expected(world, 0, "call", world.start_ms, world.end_ms)
                assert set(got.values()) == {1}
                requests[adaptive] = fetch.stats.requests
        # 720 one-hour slices of 0 or 1 call, against slices that widen at most 4 times at each step
        assert requests[False] == 720 and requests[True] <= 12


def test_adaptive_slices_fit_a_dense_window_without_splitting_each_slice():
    # about 80 calls a day; slices of 10 days hold 800, four times what the API pages through
    world = CallioWorld(tenants=1, customers=50, calls=2_400, burst=0, seed=22)
    settings = {"page_size": 20, "max_result_window": 200, "time_slice_ms": 10 * DAY_MS}
    with running(world, max_result_window=200) as (sim, base):
        splits = {}
        for adaptive in (False, True):
            with client(sim, base, adaptive_slices=adaptive, **settings) as api:
                fetch = api.fetch_desc("call", world.start_ms, world.end_ms)
                assert fetched(fetch) == expected(world, 0, "call", world.start_ms, world.end_ms)
                splits[adaptive] = fetch.stats.splits
    assert splits[False] >= 9  # each of the three 10-day slices is halved 3 times or more
    assert splits[True] <= 7  # the first one only (down to quarters and eighths): it sizes the next ones


def test_adaptive_slices_read_a_burst_on_a_boundary_once():
    world = CallioWorld(tenants=1, customers=4_500, calls=4_500, burst=2_000, seed=5)
    burst = world.tenants["anphat"].burst_ms
    since, until = burst - HOUR_MS, burst + 3 * DAY_MS  # the first slice ends on the burst
    with running(world) as (sim, base), client(sim, base, page_size=150, time_slice_ms=HOUR_MS) as api:
        for resource in ("customer", "call"):
            fetch = api.fetch_desc(resource, since, until)
            got = fetched(fetch)
            assert got == expected(world, 0, resource, since, until)
            assert set(got.values()) == {1} and len(got) > 2_000
    windows = {(int(r.query["from"]), int(r.query["to"])) for r in sim.api.requests if r.path == "/call"}
    assert (since, burst) in windows and any(lo == burst for lo, _ in windows)


def test_a_slow_consumer_holds_a_bounded_number_of_records():
    world = CallioWorld(tenants=1, customers=50, calls=3_000, burst=0, seed=23)
    window = 200
    settings = {"page_size": 20, "max_result_window": window}
    with (
        running(world, max_result_window=window) as (sim, base),
        client(sim, base, **settings) as api,
        watched(sim) as seen,
    ):
        fetch = api.fetch_desc("call", world.start_ms, world.end_ms)
        ahead = []
        got = Counter()
        for number, chunk in enumerate(fetch):
            hi = fetch.stats.window_to

            def read_ahead(hi: int = hi) -> int:
                return sum(docs for lo, _, docs in seen["served"] if lo >= hi)

            with seen["changed"]:
                if number == 0:  # the consumer holds its first chunk until reading has gone on meanwhile
                    assert seen["changed"].wait_for(lambda: read_ahead() >= window, timeout=60)
                ahead.append(read_ahead())
            got.update(_key(record) for record in chunk)
        assert got == expected(world, 0, "call", world.start_ms, world.end_ms)
        slack = fetch.stats.splits * 20  # the first page of a slice found too large is read, then dropped
    assert window <= max(ahead) < 2 * window + slack  # it read ahead, not all 3,000


def test_the_cap_is_hard_never_splits_a_timestamp_and_the_next_run_goes_on_without_a_gap():
    # 4,000 customers spread over 30 days and a burst of 2,500 updated in one millisecond, two
    # thirds in: the cap of 2,000 falls once among the spread records and once inside the burst
    world = CallioWorld(tenants=1, customers=6_500, calls=50, burst=2_500, seed=24)
    tenant = world.tenants["anphat"]
    cap, overlap = 2_000, 180_000
    with running(world) as (sim, base), client(sim, base, limit_records=cap) as api, watched(sim) as seen:
        checkpoint, got, runs = None, Counter(), []
        while len(runs) < 10:  # as the pipeline runs: from the checkpoint minus the overlap
            since = world.start_ms if checkpoint is None else checkpoint - overlap
            served_before = sum(docs for _, _, docs in seen["served"])
            fetch = api.fetch_desc("customer", since, world.end_ms, checkpoint_ms=checkpoint)
            chunk = fetched(fetch)
            stats = fetch.stats
            assert chunk == expected(world, 0, "customer", since, stats.window_to)  # nothing skipped
            new = sorted(
                time_value(r["updateTime"])
                for r in tenant.customers
                if _key(r) in chunk and (checkpoint is None or time_value(r["updateTime"]) > checkpoint)
            )
            assert stats.capped == (len(new) >= cap) and stats.capped == (stats.window_to < world.end_ms)
            assert set(new[cap:]) <= {stats.window_to}  # past the cap: only the ties of the last record
            if stats.capped:
                assert new[-1] == stats.max_time == stats.window_to
            served = sum(docs for _, _, docs in seen["served"]) - served_before
            runs.append((len(chunk), len(new), served, stats.capped))
            got.update(chunk)
            if not stats.capped:
                break
            checkpoint = stats.max_time
    assert set(got) == set(expected(world, 0, "customer", world.start_ms, world.end_ms))  # no gap
    capped = [run for run in runs if run[3]]
    assert len(capped) == 2 and capped[0][1] == cap  # the first cut falls among records of distinct times
    assert capped[1][1] > 2_500  # the second keeps the whole burst, one timestamp, past the cap
    # what the API served beyond the records kept: the cap is not reached after reading everything
    assert all(served < kept + cap for kept, _, served, _ in runs), runs


# --- the simulator on its own ---------------------------------------------------------------------


def test_simulator_contract_over_plain_http():
    with running(max_page_size=100) as (sim, base), httpx.Client(base_url=base) as http:
        account = sim.accounts()[0]
        refused = http.post("/auth/login", json={**account, "password": "wrong"})
        assert refused.status_code == 401 and refused.json()["message"]
        token = http.post("/auth/login", json=account).json()["token"]
        assert http.get("/customer").status_code == 401
        tenant = sim.world.tenants[account["tenant"]]
        burst = tenant.burst_ms
        page = http.get(
            "/customer",
            params={"from": burst, "to": burst, "pageSize": 500, "page": 1},
            headers={"token": token},
        ).json()
        assert set(page) >= {"docs", "totalDocs", "limit", "totalPages", "page", "hasNextPage"}
        assert page["limit"] == 100 and page["totalDocs"] == 120 and page["hasNextPage"] is True
        ids = [doc["_id"] for doc in page["docs"]]
        assert ids == sorted(ids, reverse=True)  # ties broken by _id, newest first
        assert {doc["updateTime"] for doc in page["docs"]} == {burst}  # inclusive bounds
        deep = http.get("/call", params={"page": 101, "pageSize": 100}, headers={"token": token})
        assert deep.status_code == 400 and "Result window is too large" in deep.text


def test_standalone_simulator_process():
    command = [sys.executable, "-m", "sandbox.simulators.callio", "--tenants", "2", "--customers", "150"]
    command += ["--calls", "200", "--burst", "20", "--end-ms", "1790000000000"]
    env = {**os.environ, "PYTHONPATH": os.environ["PYTHONPATH"]}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        started = json.loads(process.stdout.readline())
        accounts = [Account(**a) for a in started["accounts"]]
        assert [a.tenant for a in accounts] == ["anphat", "binhminh"]
        settings = ApiSettings(base_url=started["base_url"])
        with CallioClient(accounts[1], settings) as api:
            assert len(fetched(api.fetch_desc("customer", 1790000000000 - 30 * DAY_MS, 1790000000000))) == 150
            change = httpx.post(f"{started['base_url']}/_sandbox/advance", json={"customers": 7}).json()
            assert len(change["customers"]["binhminh"]) == 7
            newer = api.fetch_desc("customer", 1790000000001, change["now_ms"])
            assert set(fetched(newer)) == set(change["customers"]["binhminh"])
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
