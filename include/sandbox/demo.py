"""``make demo``: build the embedded world and run every pipeline on it, printing each run's summary.

No external system and no credentials: SQLite files under ``PIPELINES_DATA_DIR`` stand in for the
servers, and the connections come from ``airflow_settings.yaml``. The source data is rebuilt on every
demo; targets are kept, so a second demo shows the pipelines' idempotency (nothing inserted twice).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import sqlalchemy as sa

from include.common.db import REPO_ROOT, sqlite_engine, sqlite_path
from include.common.timeutil import SHANGHAI
from include.sandbox.callio_api import CallioSimulator
from include.sandbox.callio_data import DAY_MS, CallioWorld
from include.sandbox.dagrun import run_dag
from include.sandbox.dialog_data import build_world
from include.sandbox.product_data import changed_versions, fill_staging, generate


def _airflow(*args: str) -> None:
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    subprocess.run([airflow, *args], check=True, stdout=subprocess.DEVNULL)


def _prepare_airflow() -> None:
    _airflow("db", "migrate")
    subprocess.run(
        [sys.executable, "-m", "include.common.settings", "apply", str(REPO_ROOT / "airflow_settings.yaml")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _print_run(dag_id: str, label: str, conf: dict) -> None:
    outcome = run_dag(dag_id, conf)
    print(f"{dag_id} {label}: {outcome.state}\n  {json.dumps(outcome.summary, ensure_ascii=False)}")
    if outcome.state != "success":
        raise SystemExit(f"{dag_id} failed: {outcome.task_states}")


def demo_dialog() -> None:
    today = dt.datetime.now(SHANGHAI).date()
    days = [today - dt.timedelta(days=n) for n in (3, 2, 1)]
    source = sqlite_path("dialog_src.sqlite")
    source.unlink(missing_ok=True)
    # The file behind the default `dialog_src` connection (airflow_settings.yaml).
    world = build_world(sqlite_engine("dialog_src.sqlite"), days, groups=4, calls_per_group_day=40)
    print(f"dialog_src: {world.rows} utterances over {', '.join(map(str, days))}")
    for conf in ({"target_date": days[0].isoformat()}, {"target_date": days[1].isoformat()}, {}):
        _print_run("dialog_etl", conf.get("target_date", "(no target_date: yesterday)"), conf)


def demo_product() -> None:
    """A staging feed with a few broken rows; a dry run, the load, then 5% of the products changed.
    The feed is kept between demos, so a second demo shows only the new changes being applied."""
    engine = sqlite_engine("product_db.sqlite")  # the file behind the default `product_db` connection
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    if not sa.inspect(engine).has_table("products_staging"):
        rows = fill_staging(engine, generate(3000, start=now - dt.timedelta(days=2), bad_every=150))
        print(f"products_staging: {rows} rows")
    _print_run("product_etl", "dry run", {"dry_run": True})
    _print_run("product_etl", "load", {})
    changed = changed_versions(engine, 0.05, now - dt.timedelta(minutes=10))
    print(f"products_staging: {changed} changed versions appended")
    _print_run("product_etl", "changes", {})


CALLIO_SANDBOX_PORT = 18765  # the default `callio_api` connection's port (airflow_settings.yaml)


def demo_callio() -> None:
    """The simulator's three tenants (the accounts of the default connection): a full run, a re-run
    that merges nothing, then an hour of changes picked up by a scheduled-style run."""
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    world = CallioWorld(3, 2000, 5000, span_ms=20 * DAY_MS, end_ms=now_ms - 3_600_000, burst=600)
    with CallioSimulator(world).serve(CALLIO_SANDBOX_PORT):
        print(f"callio sandbox: {len(world.tenants)} tenants on port {CALLIO_SANDBOX_PORT}")
        _print_run("callio_etl", "all jobs", {"job": "all"})
        _print_run("callio_etl", "again", {"job": "all"})
        world.advance(now_ms - 1_000, customers=100, calls=200)
        _print_run("callio_etl", "after an hour of changes", {"job": "auto"})


def main() -> None:
    _prepare_airflow()
    demo_dialog()
    demo_product()
    demo_callio()


if __name__ == "__main__":
    main()
