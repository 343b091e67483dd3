"""No tenant password in what a DEBUG-level callio_etl run writes: stdout, stderr, task log files, and the
API server's log.

Each test runs ``airflow dags test callio_etl`` in a subprocess, as a user would, against the Callio
simulator, and searches everything the run wrote for every tenant password.

Airflow 3.3's in-process test supervisor (``airflow dags test`` and ``dag.test()`` without an executor:
``InProcessSupervisorComms.send`` in ``airflow/sdk/execution_time/supervisor.py``) logs every message a
task sends it at DEBUG, the ``MaskSecret`` messages with the secret in clear among them. Airflow sends one
for every connection password and extra and every Variable a task reads, so no place to keep the
accounts avoids it, and the logger has no name, so ``[logging] namespace_levels`` cannot quiet it while
the level is DEBUG. Runs under an executor go through the real supervisor, which logs those messages
without their body. Hence the two tests: a DEBUG run under an executor, as production runs, writes no
password anywhere; and at DEBUG in process, every line holding a password is that Airflow line, none
of ours (the README says to debug under an executor).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator

import pytest

from sandbox.simulators.callio import CallioSimulator
from sandbox.worlds.callio import DAY_MS, CallioWorld
from tests.dags.airflow_runs import dags_test, debug_run_under_an_executor

CONF = {"job": "all"}


@pytest.fixture
def callio(airflow_db, tmp_path) -> Generator[tuple[CallioWorld, dict[str, str]]]:
    """Serve a small world; yield it and the environment of an Airflow process pointed at it."""
    world = CallioWorld(2, 200, 300, span_ms=10 * DAY_MS, end_ms=int(time.time() * 1000) - 60_000, burst=20)
    with CallioSimulator(world).serve() as base_url:
        extra = {"accounts": world.accounts(), "page_size": 50}
        yield (
            world,
            {
                **os.environ,
                "AIRFLOW_CONN_CALLIO_API": json.dumps(
                    {"conn_type": "http", "host": base_url, "extra": extra}
                ),
                "AIRFLOW_CONN_CALLIO_WAREHOUSE": json.dumps(
                    {"conn_type": "duckdb", "host": str(tmp_path / "callio.duckdb")}
                ),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(tmp_path / "logs"),
                "PIPELINES_DATA_DIR": str(tmp_path),
            },
        )


def test_a_debug_run_under_an_executor_writes_no_tenant_password(callio, tmp_path):
    world, env = callio
    output = debug_run_under_an_executor(env, tmp_path, "callio_etl", CONF)
    fetches = [
        text
        for task in ("fetch_customers", "fetch_calls", "fetch_staffgroup")
        for text in output.task_logs(task)
    ]
    assert len(fetches) == 3 * len(world.tenants)  # every fetch task wrote its log file...
    assert all('"level":"debug","event":"POST /auth/login' in text for text in fetches)  # ...at DEBUG
    for account in world.accounts():
        assert output.lines_with(account["password"]) == []


def test_at_plain_debug_only_airflows_in_process_supervisor_prints_tenant_passwords(callio, tmp_path):
    world, env = callio
    env |= {"AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"}
    output = dags_test(env, tmp_path / "logs", "callio_etl", CONF)
    for account in world.accounts():
        for line in output.lines_with(account["password"]):
            assert "Sending request" in line and "loc=supervisor.py" in line and "msg=MaskSecret(" in line, (
                line
            )
