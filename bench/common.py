"""Small pieces every benchmark shares: throwaway MariaDB and PostgreSQL databases, timing, RSS and the
report table."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import resource
import statistics
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

MARIADB_URL = "mysql+mysqldb://root@127.0.0.1:3306/{db}?charset=utf8mb4"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"


@contextlib.contextmanager
def mariadb_database(name: str) -> Generator[sa.Engine]:
    """A fresh database ``name`` on the local MariaDB for the benchmark's duration."""
    admin = sa.create_engine(MARIADB_URL.format(db=""), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    engine = sa.create_engine(MARIADB_URL.format(db=name), pool_pre_ping=True)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


@contextlib.contextmanager
def postgres_database(name: str) -> Generator[str]:
    """The URL of a fresh database ``name`` on the local PostgreSQL, dropped afterwards."""
    admin = sa.create_engine(POSTGRES_URL.format(db="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield POSTGRES_URL.format(db=name)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    Read from ``VmHWM``: ``ru_maxrss`` survives ``exec`` on Linux, so a worker that multiprocessing
    started by fork-and-exec would report its parent's size at the fork instead of its own."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Measure:
    label: str
    rows: int
    seconds: list[float]
    rss_mb: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.median


@dataclass
class Contender:
    """One way of doing the job: ``run`` does it once and may return the peak RSS it saw."""

    label: str
    rows: int
    run: Callable[[], float | None]
    times: int


def interleave(contenders: list[Contender], reset: Callable[[], None], warm_up: bool = True) -> list[Measure]:
    """Time every contender ``times`` times, round-robin, each run after ``reset``.

    Taking turns spreads whatever else the machine does (the database flushing pages, another
    process) over all contenders instead of charging it to whichever runs first; the first
    contender's untimed warm-up run fills the caches for everyone."""
    if warm_up:
        reset()
        contenders[0].run()
    measures = [Measure(c.label, c.rows, []) for c in contenders]
    peaks: list[list[float]] = [[] for _ in contenders]
    for round_ in range(max(c.times for c in contenders)):
        for contender, measure, peak in zip(contenders, measures, peaks, strict=True):
            if round_ >= contender.times:
                continue
            reset()
            start = time.perf_counter()
            seen = contender.run()
            measure.seconds.append(time.perf_counter() - start)
            if seen is not None:
                peak.append(seen)
    for measure, peak in zip(measures, peaks, strict=True):
        measure.rss_mb = max(peak) if peak else None
    return measures


def report(title: str, measures: list[Measure]) -> None:
    print(f"\n{title}")
    print(f"{'':52} {'median s':>9} {'runs':>5} {'rows/s':>11} {'peak RSS MB':>12}")
    for m in measures:
        rss = f"{m.rss_mb:12.0f}" if m.rss_mb is not None else f"{'-':>12}"
        print(f"{m.label:52} {m.median:9.2f} {len(m.seconds):5} {m.rows_per_s:11,.0f} {rss}")


def verdict(name: str, value: float, target: float, higher_is_better: bool = True) -> bool:
    ok = value >= target if higher_is_better else value <= target
    sign = ">=" if higher_is_better else "<="
    print(f"  {name:50} {value:8.2f}  (target {sign} {target:g})  {'OK' if ok else 'MISSED'}")
    return ok


class FreshWorker:
    """A spawned process for one timed run, then discarded.

    It is started (interpreter, imports, ``warm(*bound)``) during the reset before the run, so the
    timing covers the work only, and being fresh, its ``VmHWM`` is that run's peak. ``bound``
    arguments go first to every function it runs (e.g. the benchmark's database)."""

    def __init__(self, *bound: Any, warm: Callable[..., float] | None = None) -> None:
        self.bound = bound
        self.warm = warm
        self.idle_mb = 0.0
        self._pool: Any = None

    def start(self) -> None:
        self.stop()
        self._pool = mp.get_context("spawn").Pool(1)
        self.idle_mb = self._pool.apply(self.warm or peak_rss_mb, self.bound if self.warm else ())

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*bound, *args)`` in the ready worker, which is then used up."""
        try:
            return self._pool.apply(fn, (*self.bound, *args))
        finally:
            self.stop()

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None
