"""Small pieces every benchmark shares: throwaway MariaDB databases, timing, RSS and the report table."""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import sqlalchemy as sa

MARIADB_URL = "mysql+mysqldb://root@127.0.0.1:3306/{db}?charset=utf8mb4"


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


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
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


def repeat(
    label: str, rows: int, times: int, run: Callable[[], float | None], reset: Callable[[], None]
) -> Measure:
    """Run ``run`` ``times`` times after ``reset``; ``run`` may return the peak RSS it saw."""
    seconds, rss = [], []
    for _ in range(times):
        reset()
        start = time.perf_counter()
        peak = run()
        seconds.append(time.perf_counter() - start)
        if peak is not None:
            rss.append(peak)
    return Measure(label, rows, seconds, max(rss) if rss else None)


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
