"""The Callio pager on its own, against the Callio simulator over real HTTP: how a window is cut into
time slices, how a slice too deep to page through is split, how adaptive slices are sized, how many
page requests are in flight, and how the page readers understand each page shape the API may answer.

The pager reads through the client's :meth:`~include.callio.client.CallioClient.read_page`; what a
fetch adds on top (duplicates across slices, the record cap) is tested in ``test_callio_api.py``. Each
slice is compared with the records the simulator's world holds in its bounds.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections import Counter
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest

from include.callio.client import CallioClient
from include.callio.paging import SliceReader, has_next_page, page_limit, page_total
from include.callio.types import Account, ApiSettings, FetchStats, SliceTooLargeError
from sandbox.simulators.callio import CallioSimulator
from sandbox.worlds.callio import DAY_MS, CallioWorld, time_value

TIME_FIELD = {"customer": "updateTime", "call": "createTime"}
HOUR_MS = 3_600_000


@contextlib.contextmanager
def serving(
    world: CallioWorld, settings: dict, **simulator_options
) -> Generator[tuple[CallioSimulator, CallioClient, ApiSettings]]:
    """The simulator and a client of its first tenant with ``settings`` (:class:`ApiSettings` fields)."""
    simulator = CallioSimulator(world, **simulator_options)
    with simulator.serve() as base_url:
        api_settings = ApiSettings(base_url=base_url, **settings)
        with CallioClient(Account(**simulator.accounts()[0]), api_settings, sleep=lambda s: None) as api:
            yield simulator, api, api_settings


def read_slices(
    api: CallioClient, settings: ApiSettings, resource: str, since: int, until: int, read_page=None
) -> tuple[list, FetchStats]:
    """Every slice the pager hands out for ``[since, until]``, and its statistics."""
    stats = FetchStats(resource, since)
    with ThreadPoolExecutor(settings.concurrency) as pool:
        reader = SliceReader(
            resource,
            since,
            until,
            settings=settings,
            stats=stats,
            tenant=api.account.tenant,
            read_page=read_page or api.read_page,
            submit=pool.submit,
        )
        try:
            return list(reader), stats
        finally:
            reader.close()


def key(record: dict) -> str:
    return record.get("_id") or json.dumps(record, sort_keys=True, ensure_ascii=False)


def in_world(world: CallioWorld, resource: str, lo: int, hi: int) -> Counter:
    tenant = next(iter(world.tenants.values()))
    records = tenant.customers if resource == "customer" else tenant.calls
    field = TIME_FIELD[resource]
    times = ((record, time_value(record[field])) for record in records)
    return Counter(key(record) for record, when in times if when is not None and lo <= when <= hi)


def assert_tiles(slices: list, since: int, until: int) -> None:
    """The slices cover the window in order, each beginning where the one before ended."""
    assert slices and slices[0].lo == since and slices[-1].hi == until
    assert all(a.hi == b.lo for a, b in zip(slices, slices[1:], strict=False))
    assert all(piece.lo < piece.hi for piece in slices)


def test_fixed_slices_tile_the_window_and_each_holds_the_records_in_its_bounds():
    world = CallioWorld(tenants=1, customers=400, calls=500, burst=120, seed=7)
    settings = {"page_size": 25, "adaptive_slices": False, "time_slice_ms": DAY_MS}
    with serving(world, settings) as (sim, api, settings):
        since, until = world.start_ms + 2 * DAY_MS + 5, world.start_ms + 12 * DAY_MS + 17
        for resource in ("customer", "call"):
            slices, stats = read_slices(api, settings, resource, since, until)
            assert_tiles(slices, since, until)
            assert [piece.hi - piece.lo for piece in slices[:-1]] == [DAY_MS] * 10
            for piece in slices:
                assert Counter(map(key, piece.docs())) == in_world(world, resource, piece.lo, piece.hi)
                assert piece.total == len(piece.docs())
            assert stats.splits == 0 and stats.pages == sum(-(-max(p.total, 1) // 25) for p in slices)
    sent = [r for r in sim.api.requests if r.path == "/call"]
    assert {r.query["sort"] for r in sent} == {"createTimeDESC"}
    assert {(int(r.query["from"]), int(r.query["to"])) for r in sent} == {(p.lo, p.hi) for p in slices}


def test_a_slice_deeper_than_the_result_window_is_halved_until_it_fits():
    world = CallioWorld(tenants=1, customers=50, calls=2_400, burst=0, seed=22)  # about 80 calls a day
    settings = {
        "page_size": 20,
        "max_result_window": 200,
        "time_slice_ms": 10 * DAY_MS,
        "adaptive_slices": False,
    }
    with serving(world, settings, max_result_window=200) as (sim, api, settings):
        since, until = world.start_ms, world.start_ms + 10 * DAY_MS
        slices, stats = read_slices(api, settings, "call", since, until)
    assert_tiles(slices, since, until)
    assert stats.splits >= 3 and len(slices) == stats.splits + 1
    assert all(len(piece.docs()) <= 200 for piece in slices)
    assert sum((Counter(map(key, p.docs())) for p in slices), Counter()) >= in_world(
        world, "call", since, until
    )
    widths = {piece.hi - piece.lo for piece in slices}
    assert all((10 * DAY_MS) // w in (2, 4, 8, 16, 32) for w in widths)  # halves of halves
    assert not any(int(r.query["page"]) > 10 for r in sim.api.requests if r.path == "/call")


def test_a_burst_in_one_millisecond_fails_the_narrowest_slice_holding_it():
    world = CallioWorld(tenants=1, customers=50, calls=800, burst=600, seed=5)  # 400 calls in one ms
    burst = next(iter(world.tenants.values())).burst_ms
    settings = {"page_size": 50, "max_result_window": 200, "time_slice_ms": HOUR_MS, "adaptive_slices": False}
    with serving(world, settings, max_result_window=200) as (sim, api, settings):
        since, until = burst - HOUR_MS, burst + 5 * HOUR_MS
        with pytest.raises(SliceTooLargeError, match=r"min_slice_ms=60000\) holds more records") as error:
            read_slices(api, settings, "call", since, until)
    lo, hi = map(int, re.search(r"\[(\d+), (\d+)\]", str(error.value)).groups())
    assert lo <= burst <= hi and hi - lo < 2 * 60_000
    # never a page past the result window: the simulator would have answered 400
    assert all(int(r.query["page"]) <= 4 for r in sim.api.requests if r.path == "/call")


def test_adaptive_slices_grow_over_a_sparse_window_at_most_fourfold_a_step():
    world = CallioWorld(tenants=1, customers=300, calls=300, burst=0, seed=21)  # about 10 calls a day
    with serving(world, {"page_size": 50, "time_slice_ms": HOUR_MS}) as (sim, api, settings):
        since, until = world.start_ms, world.end_ms
        slices, stats = read_slices(api, settings, "call", since, until)
    assert_tiles(slices, since, until)
    widths = [piece.hi - piece.lo for piece in slices]
    assert widths[0] == HOUR_MS and len(slices) <= 12
    assert all(b <= 4 * max(widths[: i + 1]) for i, b in enumerate(widths[1:-1], start=1))
    assert sum((Counter(map(key, p.docs())) for p in slices), Counter()) >= in_world(
        world, "call", since, until
    )
    assert stats.splits == 0 and stats.requests == stats.pages == sum(
        -(-max(p.total, 1) // 50) for p in slices
    )


def test_page_requests_in_flight_never_exceed_the_concurrency_and_do_overlap():
    world = CallioWorld(tenants=1, customers=2_000, calls=100, burst=0, seed=9)
    lock, running, peak = threading.Lock(), [0], [0]
    settings = {"page_size": 20, "concurrency": 3, "time_slice_ms": 2 * DAY_MS}
    with serving(world, settings) as (sim, api, settings):
        sim.faults.latency_s = 0.01

        def read_page(resource: str, query: str, page: int, stats: FetchStats):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            try:
                return api.read_page(resource, query, page, stats)
            finally:
                with lock:
                    running[0] -= 1

        since, until = world.start_ms, world.end_ms
        slices, stats = read_slices(api, settings, "customer", since, until, read_page)
    assert_tiles(slices, since, until)
    assert peak[0] == 3 and stats.pages > 100


@pytest.mark.parametrize("total_field", ["totalDocs", "total", None])
def test_page_readers_follow_every_page_shape_to_the_last_record(total_field):
    world = CallioWorld(tenants=1, customers=230, calls=10, burst=0, seed=4)
    with serving(world, {}, total_field=total_field, max_page_size=40) as (sim, api, _):
        since, until = world.start_ms, world.end_ms
        want = in_world(world, "customer", since, until)
        query = urlencode({"sort": "updateTimeDESC", "pageSize": 100, "from": since, "to": until})
        records, page = [], 1
        while True:
            body = api.read_page("customer", query, page, None)
            size = page_limit(body, 100)
            assert size == 40  # the simulator caps the page size asked for
            assert page_total(body) == (None if total_field is None else want.total())
            records.extend(body["docs"])
            if not body["docs"] or not has_next_page(body, page, size):
                break
            page += 1
    assert Counter(map(key, records)) == want
    # without a count the readers stop at the first page short of the size, one page later when the
    # last one is full
    full = total_field is None and len(records) % 40 == 0
    assert page == -(-len(records) // 40) + full
