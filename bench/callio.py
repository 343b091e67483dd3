"""Benchmark of the Callio pipeline's two heavy steps (``python -m bench.callio``; ``--quick``: smoke run).

1. API fetch. The simulator (:mod:`sandbox.simulators.callio`) runs in its own process, so that its
   serving does not compete with the client for a GIL. It serves ``--tenants`` tenants of
   ``--customers`` customers and ``--calls`` calls spread over 30 days, and answers every request
   after ``--latency-ms``. Each tenant's 30 days (a first run) are fetched whole, customers then calls,
   by :meth:`CallioClient.fetch_desc` with the pipeline's :class:`ApiSettings` (pages of 200, a first
   slice of a day, the next ones sized to the density) and ``--concurrency`` page requests in flight
   across slices; all tenants at once, each in its own worker process, as the DAG runs its mapped
   per-tenant tasks. Contenders, ``--repeat`` times each, taking turns (medians):

   * ours: fetch: the records are counted and dropped;
   * ours: fetch + transform: every chunk also becomes warehouse rows (``transform_all`` with
     ``customer_row`` / ``call_row``), as the fetch task does before staging;
   * ours: the first tenant alone: the client's own pace, without the other tenants' CPU load;
   * baseline: one request at a time: the same client with concurrency 1, tenants one after another.
     That takes requests x latency, so it runs on the first ``--baseline-tenants`` tenants only and
     is scaled to all of them by the requests made;
   * limit: the requests ours made (one login per tenant included) x latency / (tenants x
     concurrency): what the connections in flight allow when the client costs no CPU and never waits
     between pages.

   Beside the times: the CPU the simulator and the workers used, and the workers' peak RSS, to show
   whether the cores rather than the latency set the pace.

2. Warehouse: ``--merge-rows`` customer rows in ``--tenants`` tenants, built by ``customer_row`` from
   synthetic records (timed apart), staged by ``stage_customers`` in the fetch task's chunks, then
   ``merge_customers`` into an empty table of a fresh DuckDB file; then the same rows staged and merged
   again, every row unchanged (NOOP). Each step runs in a fresh process that reports its peak RSS.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import Contender, Measure, interleave, peak_rss_mb, report, verdict
from include.callio.client import CallioClient
from include.callio.etl import STAGE_CHUNK_ROWS
from include.callio.transform import call_row, customer_row, transform_all
from include.callio.types import Account, ApiSettings
from sandbox.worlds.callio import DAY_MS, DEFAULT_END_MS, CallioWorld, tenant_names

SPAN_DAYS = 30  # the pipeline's days_to_fetch_if_empty: what a tenant's first run reads
FULL = {
    "tenants": 10,
    "customers": 20_000,
    "calls": 50_000,
    "latency_ms": 50.0,
    "merge_rows": 1_000_000,
    "repeat": 3,
    "baseline_tenants": 2,
}
QUICK = {
    "tenants": 2,
    "customers": 1_000,
    "calls": 2_000,
    "latency_ms": 10.0,
    "merge_rows": 20_000,
    "repeat": 1,
    "baseline_tenants": 1,
}
FETCH_TARGET = 1.3  # ours / the larger of the lower bound and the CPU the run needs per core
MERGE_TARGET_S = 5.0
RSS_TARGET_MB = 600.0

Target = tuple[str, float, float]  # name, value, upper bound


# --- the simulator --------------------------------------------------------------------------------


class Simulator:
    """The Callio simulator as a child process: its base URL, accounts, and CPU time used so far."""

    def __init__(self, tenants: int, customers: int, calls: int, latency_ms: float) -> None:
        self.command = [
            sys.executable,
            "-m",
            "sandbox.simulators.callio",
            "--port=0",
            f"--tenants={tenants}",
            f"--customers={customers}",
            f"--calls={calls}",
            f"--latency-ms={latency_ms}",
            f"--span-days={SPAN_DAYS}",
            f"--end-ms={DEFAULT_END_MS}",
        ]
        self.window = (DEFAULT_END_MS - SPAN_DAYS * DAY_MS, DEFAULT_END_MS)
        self.base_url = ""
        self.accounts: list[dict[str, str]] = []
        self._process: subprocess.Popen[str] | None = None

    @contextmanager
    def running(self) -> Generator[Simulator]:
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        try:
            started = json.loads(self._process.stdout.readline() or "null")
            if not started:
                raise RuntimeError(f"the simulator did not start: {' '.join(self.command)}")
            self.base_url, self.accounts = started["base_url"], started["accounts"]
            yield self
        finally:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def cpu_s(self) -> float:
        """User and system CPU seconds the simulator has used since it started."""
        with open(f"/proc/{self._process.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- worker processes -----------------------------------------------------------------------------


class FreshWorkers:
    """Spawned processes for one timed run, one job each, then discarded.

    They are started (interpreter and imports, about a second of CPU each) during the reset before
    the run, so the timing covers the work only; being fresh, each one's VmHWM is its own run's peak.
    """

    def __init__(self) -> None:
        self.idle_mb = 0.0
        self._pools: list[Any] = []

    def start(self, count: int) -> None:
        self.stop()
        context = mp.get_context("spawn")
        self._pools = [context.Pool(1) for _ in range(count)]  # they all start importing at once
        self.idle_mb = max(pool.apply(peak_rss_mb) for pool in self._pools)

    def run(self, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``fn(*job)`` for every job at once, each in its own ready worker; unused workers idle."""
        if len(jobs) > len(self._pools):
            raise ValueError(f"{len(jobs)} jobs for {len(self._pools)} workers")
        try:
            pending = [pool.apply_async(fn, job) for pool, job in zip(self._pools, jobs, strict=False)]
            return [result.get() for result in pending]
        finally:
            self.stop()

    def stop(self) -> None:
        for pool in self._pools:
            pool.terminate()
            pool.join()
        self._pools = []


def _in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


# --- part 1: API fetch ----------------------------------------------------------------------------


@dataclasses.dataclass
class FetchDone:
    """What one worker did. ``requests`` counts the pages (retries included) and one login per tenant."""

    requests: int = 0
    records: int = 0
    cpu_s: float = 0.0
    rss_mb: float = 0.0


def _fetch(
    base_url: str, accounts: list[dict[str, str]], window: tuple[int, int], concurrency: int, to_rows: bool
) -> FetchDone:
    """Every customer, then every call, of each account in turn, in ``window``; with ``to_rows`` each
    chunk becomes rows as in the fetch task, then is dropped (staging is part 2)."""
    done = FetchDone()
    start = os.times()
    settings = ApiSettings(base_url=base_url, concurrency=concurrency)
    for account in accounts:
        with CallioClient(Account(**account), settings) as client:
            client.login()
            done.requests += 1
            for resource, row_fn in (("customer", customer_row), ("call", call_row)):
                fetch = client.fetch_desc(resource, *window)
                for chunk in fetch:
                    if to_rows:
                        transform_all(chunk, account["tenant"], row_fn)
                done.requests += fetch.stats.requests
                done.records += fetch.stats.records
    end = os.times()
    done.cpu_s = end.user + end.system - start.user - start.system
    done.rss_mb = peak_rss_mb()
    return done


@dataclasses.dataclass
class FetchRuns:
    """One fetch contender: its jobs (one per worker) and, per timed run, what the workers did and
    the CPU the simulator used meanwhile."""

    label: str
    jobs: list[tuple[Any, ...]]
    records: int
    runs: list[list[FetchDone]] = dataclasses.field(default_factory=list)
    simulator_cpu_s: list[float] = dataclasses.field(default_factory=list)

    def contender(self, workers: FreshWorkers, simulator: Simulator, times: int) -> Contender:
        def run() -> float:
            before = simulator.cpu_s()
            done = workers.run(_fetch, self.jobs)
            self.simulator_cpu_s.append(simulator.cpu_s() - before)
            self.runs.append(done)
            return max(d.rss_mb for d in done)

        return Contender(self.label, self.records, run, times)

    def median(self, figure: str) -> float:
        """Median over the runs of ``figure`` summed over the workers."""
        return statistics.median(sum(getattr(d, figure) for d in done) for done in self.runs)

    def check(self) -> None:
        """A run that read other than every record measured something else: stop."""
        for done in self.runs:
            if (read := sum(d.records for d in done)) != self.records:
                raise RuntimeError(f"{self.label}: read {read:,} records, not {self.records:,}")


def fetch_part(args: argparse.Namespace) -> tuple[dict[str, Any], list[Target]]:
    """Part 1: print the fetch table; return its figures and its target."""
    per_tenant = args.customers + args.calls
    records = args.tenants * per_tenant
    in_flight = args.tenants * args.concurrency
    latency_s = args.latency_ms / 1000
    baseline_tenants = min(args.baseline_tenants, args.tenants)
    print(
        f"API fetch: {args.tenants} tenants x ({args.customers:,} customers + {args.calls:,} calls)"
        f" = {records:,} records over {SPAN_DAYS} days, {args.latency_ms:g} ms per request;"
        f" {args.tenants} tenants in parallel x {args.concurrency} page requests each = {in_flight} in flight"
    )
    simulator = Simulator(args.tenants, args.customers, args.calls, args.latency_ms)
    workers = FreshWorkers()
    with simulator.running():

        def job(accounts: list[dict[str, str]], concurrency: int, to_rows: bool) -> tuple[Any, ...]:
            return simulator.base_url, accounts, simulator.window, concurrency, to_rows

        accounts = simulator.accounts
        ours = FetchRuns("ours: fetch", [job([a], args.concurrency, False) for a in accounts], records)
        ours_rows = FetchRuns(
            "ours: fetch + transform (customer_row, call_row)",
            [job([a], args.concurrency, True) for a in accounts],
            records,
        )
        alone = FetchRuns(
            "ours: fetch, the first tenant alone", [job(accounts[:1], args.concurrency, False)], per_tenant
        )
        base = FetchRuns(
            f"baseline: 1 request at a time, {baseline_tenants} tenant(s)",
            [job(accounts[:baseline_tenants], 1, False)],
            baseline_tenants * per_tenant,
        )
        fetches = [ours, ours_rows, alone, base]
        try:
            # Untimed and unrecorded: the simulator sorts each tenant's records on their first request.
            workers.start(args.tenants)
            workers.run(_fetch, ours.jobs)
            m_ours, m_rows, m_alone, m_base = interleave(
                [f.contender(workers, simulator, args.repeat) for f in fetches],
                lambda: workers.start(args.tenants),
                warm_up=False,
            )
        finally:
            workers.stop()
    for fetch in fetches:
        fetch.check()

    requests = ours.median("requests")
    lower_bound = requests * latency_s / in_flight
    alone_bound = alone.median("requests") * latency_s / args.concurrency
    scale = requests / base.median("requests")
    m_base_all = Measure(
        f"baseline: scaled to {args.tenants} tenants by requests",
        records,
        [s * scale for s in m_base.seconds],
    )
    m_limit = Measure(
        f"limit: requests x {args.latency_ms:g} ms / {in_flight} in flight", records, [lower_bound]
    )
    report(
        f"API fetch of {records:,} records, {requests:,.0f} requests (logins included)",
        [m_ours, m_rows, m_alone, m_base, m_base_all, m_limit],
    )
    simulator_s, workers_s, rows_s = (
        statistics.median(ours.simulator_cpu_s),
        ours.median("cpu_s"),
        ours_rows.median("cpu_s"),
    )
    cores = os.cpu_count() or 1
    cpu_need = (simulator_s + workers_s) / cores
    print(
        f"  CPU per run, medians: simulator {simulator_s:.1f} s ({1000 * simulator_s / requests:.2f} ms per request,"
        f" {simulator_s / m_ours.median:.0%} of one core during ours: fetch); our workers {workers_s:.1f} s"
        f" ({1000 * workers_s / requests:.2f} ms per request), {rows_s:.1f} s with the transform"
        f" ({1e6 * (rows_s - workers_s) / records:.1f} µs per record)"
    )
    print(
        f"  so on this machine's {cores} cores, with nothing else running, the CPU alone needs"
        f" {(simulator_s + workers_s) / cores:.1f} s for the fetch and {(simulator_s + rows_s) / cores:.1f} s"
        " for fetch + transform"
    )
    print(
        f"  the first tenant alone takes {m_alone.median / alone_bound:.2f}x its own lower bound"
        f" ({alone.median('requests'):,.0f} requests x {args.latency_ms:g} ms / {args.concurrency} = {alone_bound:.2f} s);"
        f" ours: fetch is {m_base_all.median / m_ours.median:.1f}x faster than one request at a time;"
        f" fetch + transform takes {m_rows.median / lower_bound:.2f}x the lower bound"
    )
    print(f"  peak RSS of an idle worker (imports only): {workers.idle_mb:.0f} MB")
    figures = {
        "records": records,
        "requests": requests,
        "in_flight": in_flight,
        "fetch_s": m_ours.median,
        "fetch_transform_s": m_rows.median,
        "first_tenant_alone_s": m_alone.median,
        "baseline_scaled_s": m_base_all.median,
        "lower_bound_s": lower_bound,
        "fetch_rss_mb": m_ours.rss_mb,
        "fetch_transform_rss_mb": m_rows.rss_mb,
        "simulator_cpu_s": simulator_s,
        "workers_cpu_s": workers_s,
        "cpu_need_s": cpu_need,
    }
    # The fetch cannot beat the latency bound, nor finish before the cores have done its CPU work.
    pace = max(lower_bound, cpu_need)
    print(
        f"  ours: fetch takes {m_ours.median / lower_bound:.2f}x the lower bound and"
        f" {m_ours.median / cpu_need:.2f}x the CPU need ({cpu_need:.2f} s)"
    )
    return figures, [("API fetch: ours / max(lower bound, CPU need) (x)", m_ours.median / pace, FETCH_TARGET)]


# --- part 2: DuckDB staging and MERGE -------------------------------------------------------------


def _build_rows(directory: Path, tenants: list[str], per_tenant: int) -> float:
    """Rows of ``per_tenant`` synthetic customers per tenant, pickled in staging chunks under
    ``directory``; returns the seconds ``customer_row`` took (generating records and writing excluded).

    Built once and read back by every staging run, so that staging is timed alone, and one tenant at
    a time, so that the rows never all sit in memory together."""
    seconds = 0.0
    for index, tenant in enumerate(tenants):
        world = CallioWorld(1, per_tenant, 0, malformed=False, seed=index + 1)
        (records,) = (t.customers for t in world.tenants.values())
        start = time.perf_counter()
        rows = [customer_row(record, tenant) for record in records]
        seconds += time.perf_counter() - start
        for number, first in enumerate(range(0, len(rows), STAGE_CHUNK_ROWS)):
            with open(directory / f"{tenant}.{number:04d}.pickle", "wb") as file:
                pickle.dump(rows[first : first + STAGE_CHUNK_ROWS], file, pickle.HIGHEST_PROTOCOL)
    return seconds


# duckdb and pyarrow are imported in the functions that use them: every fetch worker imports this
# module too, and would otherwise carry them in the RSS it reports.


def _ensure_schema(path: Path) -> None:
    from include.callio.warehouse.duckdb_backend import DuckDBWarehouse

    DuckDBWarehouse(path).ensure_schema()


def _stage(path: Path, rows_dir: Path) -> tuple[float, int, float]:
    """Stage every chunk under ``rows_dir`` for its tenant, as the fetch tasks do; returns the seconds
    spent in ``stage_customers`` (reading the chunks excluded), the rows staged and the peak RSS."""
    from include.callio.warehouse.duckdb_backend import DuckDBWarehouse

    warehouse = DuckDBWarehouse(path)
    seconds, staged = 0.0, 0
    for chunk in sorted(rows_dir.glob("*.pickle")):
        with open(chunk, "rb") as file:
            rows = pickle.load(file)
        start = time.perf_counter()
        staged += warehouse.stage_customers(chunk.name.split(".")[0], rows)
        seconds += time.perf_counter() - start
        del rows
    return seconds, staged, peak_rss_mb()


def _merge(path: Path, tenants: list[str]) -> tuple[float, int, float]:
    """``merge_customers`` of every tenant: seconds, rows inserted or updated, peak RSS."""
    from include.callio.warehouse.duckdb_backend import DuckDBWarehouse

    warehouse = DuckDBWarehouse(path)
    start = time.perf_counter()
    merged = warehouse.merge_customers(tenants)
    return time.perf_counter() - start, sum(merged.values()), peak_rss_mb()


def merge_part(args: argparse.Namespace) -> tuple[dict[str, Any], list[Target]]:
    """Part 2: print the staging and MERGE table; return its figures and targets."""
    tenants = tenant_names(args.tenants)
    per_tenant = args.merge_rows // args.tenants
    rows = per_tenant * args.tenants
    print(
        f"\nDuckDB: {rows:,} customer rows ({args.tenants} tenants x {per_tenant:,}), staged in chunks of"
        f" {STAGE_CHUNK_ROWS:,}, merged into an empty customer table, then staged and merged again"
    )
    steps = ("stage", "merge", "stage again", "merge again")
    seconds: dict[str, list[float]] = {step: [] for step in steps}
    peaks: dict[str, float] = dict.fromkeys(steps, 0.0)
    with tempfile.TemporaryDirectory(prefix="bench_callio_") as temp:
        rows_dir = Path(temp, "rows")
        rows_dir.mkdir()
        build_s = _build_rows(rows_dir, tenants, per_tenant)
        stage, merge = (_stage, rows_dir), (_merge, tenants)
        # step -> (function, its second argument, the row count it must report)
        plan = dict(zip(steps, [(*stage, rows), (*merge, rows), (*stage, rows), (*merge, 0)], strict=True))
        for round_ in range(args.repeat):
            path = Path(temp, f"warehouse_{round_}.duckdb")
            _in_fresh_process(_ensure_schema, path)
            for step, (fn, argument, want) in plan.items():
                step_s, count, rss = _in_fresh_process(fn, path, argument)
                if count != want:
                    raise RuntimeError(f"{step}: {count:,} rows, expected {want:,}")
                seconds[step].append(step_s)
                peaks[step] = max(peaks[step], rss)
            path.unlink()

    def measure(label: str, *parts: str) -> Measure:
        runs = [sum(run) for run in zip(*(seconds[p] for p in parts), strict=True)]
        return Measure(label, rows, runs, peaks[parts[0]] if len(parts) == 1 else None)

    first, again = (
        measure("stage + merge", "stage", "merge"),
        measure("stage + merge again", "stage again", "merge again"),
    )
    report(
        f"DuckDB staging and MERGE of {rows:,} customer rows",
        [
            Measure("row building: customer_row (not in the totals)", rows, [build_s]),
            measure("stage: stage_customers", "stage"),
            measure("merge: merge_customers, every row new", "merge"),
            first,
            measure("stage again: the same rows", "stage again"),
            measure("merge again: every row unchanged (NOOP)", "merge again"),
            again,
        ],
    )
    peak = max(peaks.values())
    figures = {
        "merge_rows": rows,
        "row_building_s": build_s,
        **{f"{step.replace(' ', '_')}_s": statistics.median(s) for step, s in seconds.items()},
        "stage_merge_s": first.median,
        "stage_merge_again_s": again.median,
        **{f"{step.replace(' ', '_')}_rss_mb": mb for step, mb in peaks.items()},
    }
    targets = [
        (f"stage + merge of {rows:,} rows (s)", first.median, MERGE_TARGET_S),
        ("stage + merge again, all NOOP (s)", again.median, MERGE_TARGET_S),
        ("peak RSS of any staging or merge process (MB)", peak, RSS_TARGET_MB),
    ]
    return figures, targets


# --- main -----------------------------------------------------------------------------------------


def _rounded(value: Any) -> Any:
    """Floats to three decimals, inside dicts too: the JSON line stays readable."""
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return round(value, 3) if isinstance(value, float) else value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke run with small sizes: {QUICK}")
    parser.add_argument("--tenants", type=int, help=f"default {FULL['tenants']}")
    parser.add_argument("--customers", type=int, help=f"per tenant; default {FULL['customers']:,}")
    parser.add_argument("--calls", type=int, help=f"per tenant; default {FULL['calls']:,}")
    parser.add_argument("--latency-ms", type=float, help=f"per request; default {FULL['latency_ms']:g}")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=ApiSettings().concurrency,
        help="page requests in flight per tenant; default the pipeline's, %(default)s",
    )
    parser.add_argument(
        "--merge-rows", type=int, help=f"customer rows staged and merged; default {FULL['merge_rows']:,}"
    )
    parser.add_argument("--repeat", type=int, help=f"timed runs of each contender; default {FULL['repeat']}")
    parser.add_argument("--skip-merge", action="store_true", help="run part 1 (API fetch) only")
    parser.add_argument("--skip-fetch", action="store_true", help="run part 2 (DuckDB) only")
    parser.add_argument(
        "--baseline-tenants",
        type=int,
        help=f"tenants the one-request-at-a-time baseline is timed on; default {FULL['baseline_tenants']}",
    )
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    fetch_figures, fetch_targets = ({}, []) if args.skip_fetch else fetch_part(args)
    merge_figures, merge_targets = ({}, []) if args.skip_merge else merge_part(args)
    print("\ntargets")
    met = [
        verdict(name, value, bound, higher_is_better=False)
        for name, value, bound in fetch_targets + merge_targets
    ]
    targets = {
        name: {"value": value, "at_most": bound} for name, value, bound in fetch_targets + merge_targets
    }
    figures = {**fetch_figures, **merge_figures, "targets": targets, "all_targets_met": all(met)}
    print(json.dumps(_rounded(figures)))


if __name__ == "__main__":
    main()
