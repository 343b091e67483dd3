"""No AICO credential of a scenario row, and no token AICO issued, in what a DEBUG-level
aico_knowledge_sync run writes: stdout, stderr, every task log file, and the API server's log.

The run is ``airflow dags test aico_knowledge_sync`` under a LocalExecutor, as production runs tasks,
against the AICO simulator, with the scenario rows in a SQLite ``dialog_dst``. (In process, at DEBUG,
Airflow's own test supervisor prints every value a task registers for masking: see
``tests/dags/test_callio_logs.py``.)
"""

from __future__ import annotations

import json
import os

import pytest

from include.common.db import engine_for
from sandbox.simulators.aico import DEMO_ACCOUNTS, demo_simulator
from sandbox.worlds.aico import build_scenarios
from tests.conftest import connection_env
from tests.dags.airflow_runs import debug_run_under_an_executor


@pytest.fixture
def target(airflow_db, tmp_path, monkeypatch):
    """The scenario rows, with their AICO accounts, in a SQLite file: its connection environment."""
    env = connection_env("dialog_dst", "sqlite", host=str(tmp_path / "dialog_dst.sqlite"))
    monkeypatch.setenv(*next(iter(env.items())))
    engine = engine_for("dialog_dst")
    try:
        build_scenarios(engine)
    finally:
        engine.dispose()
    return env


def test_a_debug_sync_under_an_executor_writes_no_credential_and_no_token(target, tmp_path):
    sim = demo_simulator()
    with sim.serve() as base_url:
        env = {
            **os.environ,
            **target,
            **connection_env("aico_api", "http", host=base_url, extra=json.dumps({"backoff_s": 0.01})),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(tmp_path / "logs"),
            "PIPELINES_DATA_DIR": str(tmp_path),
        }
        env.pop("AIRFLOW_VAR_AICO_HOST", None)
        output = debug_run_under_an_executor(env, tmp_path, "aico_knowledge_sync", {})
    syncs = output.task_logs("sync_scenario")
    assert len(syncs) == 2 and all('"level":"debug"' in text for text in syncs)  # both scenarios, at DEBUG
    assert sim.counters["upload"] > 0 and len(sim.issued_tokens) >= 2  # the run did log in and write
    secrets = [*DEMO_ACCOUNTS.values(), *sim.issued_tokens]
    assert {secret: output.lines_with(secret) for secret in secrets} == {secret: [] for secret in secrets}
