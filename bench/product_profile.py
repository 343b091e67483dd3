"""Where product_etl's time goes, and the share of the limit ours could reach at best.

Part of :mod:`bench.product_etl`: after the timed full loads, ours runs once more with a timer around
each step of its batches, and ours and the limit are each charged the CPU they used, in their own
process (the client) and in the MariaDB server (read from ``/proc`` when the server runs on this
machine). Two ceilings on ours' share of the limit's speed follow from the same runs:

* **one process**: ours has to normalize every row (the limit's rows come normalized) and send the
  same products through the same driver as the limit's client, so even if its look-ups, change log,
  rejects, watermark and every wait on the server cost nothing, a run takes at least normalizing plus
  the limit's client CPU. Normalizing in a second thread beside the writes does not lift it: the
  thread holds the GIL the writing thread needs (100,000 rows took 19.4 s against 16.3 s in one);
* **every core**: ours' client and server CPU spread perfectly over the machine's cores, as worker
  processes of the task's own could at best.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.product_contenders import NOW, _engine, limit

#: The steps of a batch timed in :func:`profile_ours`: the name in include.product.etl, and the label.
STEPS = {
    "read_batch": "read staging",
    "normalize": "normalize",
    "_stored": "look up products",
    "_upsert": "upsert products",
    "_write": "write (upsert, change log, rejects)",
    "insert_ignore": "rejects",
    "save_watermark": "watermark",
}


def _server_pid() -> int | None:
    """The local MariaDB server's process, when it runs on this machine."""
    for status in Path("/proc").glob("[0-9]*/comm"):
        try:
            if status.read_text().strip() in ("mariadbd", "mysqld"):
                return int(status.parent.name)
        except OSError:
            continue
    return None


def _server_cpu(pid: int | None) -> float | None:
    """CPU seconds the server process has used so far (user + system)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _charged(run: Callable[[], object]) -> dict[str, float | None]:
    """Wall time, this process' CPU and the server's CPU of ``run()``."""
    pid = _server_pid()
    server, client, wall = _server_cpu(pid), time.process_time(), time.perf_counter()
    run()
    wall, client = time.perf_counter() - wall, time.process_time() - client
    after = _server_cpu(pid)
    return {"wall": wall, "client_cpu": client, "server_cpu": None if server is None else after - server}


def profile_ours(db: str) -> dict:
    """Ours' full load with every step of :data:`STEPS` timed (in a fresh worker: the timers stay there)."""
    from include.product import etl

    spent: Counter[str] = Counter()

    def timed(name: str, fn: Callable) -> Callable:
        def step(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return step

    for name in STEPS:
        setattr(etl, name, timed(name, getattr(etl, name)))
    figures = _charged(
        lambda: etl.run_batches(
            _engine(db), "bench", limit=1000, max_batches=10**9, safety_lag=dt.timedelta(0), now=NOW
        )
    )
    steps = {STEPS[name]: spent[name] for name in STEPS if name != "_write"}
    steps["change log"] = spent["_write"] - spent["_upsert"] - spent["insert_ignore"]
    steps["compare, versions, rows to write"] = figures["wall"] - sum(steps.values())
    return {**figures, "steps": steps}


def charge_limit(db: str) -> dict:
    """The limit's run, charged its CPU."""
    return _charged(lambda: limit(db))


def ceilings(ours: dict, limit_run: dict, normalizing_s: float) -> dict[str, float | None]:
    """Ours' best share of the limit's speed: in one process, and spread over every core."""
    one_process = limit_run["wall"] / (normalizing_s + limit_run["client_cpu"])
    every_core = None
    if ours["server_cpu"] is not None:
        every_core = limit_run["wall"] / ((ours["client_cpu"] + ours["server_cpu"]) / os.cpu_count())
    return {"one_process": one_process, "every_core": every_core}


def report(ours: dict, limit_run: dict, normalizing_s: float) -> dict:
    """Print where ours' time goes beside the limit's CPU, and the ceilings; return them for the JSON."""
    print("\nwhere the time goes (one profiled full load of ours, one charged run of the limit)")
    for label, seconds in ours["steps"].items():
        print(f"  ours: {label:<44} {seconds:7.2f} s  {seconds / ours['wall']:5.0%}")
    for name, run in (("ours", ours), ("limit", limit_run)):
        server = "n/a" if run["server_cpu"] is None else f"{run['server_cpu']:.2f} s"
        print(
            f"  {name}: wall {run['wall']:.2f} s, client CPU {run['client_cpu']:.2f} s, server CPU {server}"
        )
    print(f"  normalizing alone: {normalizing_s:.2f} s")
    bounds = ceilings(ours, limit_run, normalizing_s)
    print(
        f"  ceiling of ours' share in one process: {bounds['one_process']:.2f}"
        " (the limit's wall / (normalizing + the limit's client CPU))"
    )
    if bounds["every_core"] is not None:
        print(
            f"  ceiling with ours' CPU spread over {os.cpu_count()} cores: {bounds['every_core']:.2f}"
            " (the limit's wall / ((ours' client + server CPU) / cores))"
        )
    return {
        "ours_steps_s": {k: round(v, 2) for k, v in ours["steps"].items()},
        "ours_cpu_s": {k: _round(ours[k]) for k in ("wall", "client_cpu", "server_cpu")},
        "limit_cpu_s": {k: _round(limit_run[k]) for k in ("wall", "client_cpu", "server_cpu")},
        "ceiling_share": {k: _round(v, 3) for k, v in bounds.items()},
    }


def _round(value: float | None, places: int = 2) -> float | None:
    return None if value is None else round(value, places)
