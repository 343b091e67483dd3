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

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sandbox.simulators.callio import CallioSimulator
from sandbox.worlds.callio import DAY_MS, CallioWorld

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@dataclass
class Output:
    texts: dict[str, str]  # where -> what was written there

    def lines_with(self, secret: str) -> list[str]:
        return [
            f"{where}: {line}"
            for where, text in self.texts.items()
            for line in text.splitlines()
            if secret in line
        ]


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


def dags_test(env: dict[str, str], tmp_path: Path, *options: str) -> Output:
    """``airflow dags test callio_etl`` with every job; what it printed, and the task log files."""
    done = subprocess.run(
        [AIRFLOW, "dags", "test", "callio_etl", *options, "-c", '{"job": "all"}'],
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    texts = {"stdout": done.stdout, "stderr": done.stderr}
    texts |= {str(p): p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*") if p.is_file()}
    assert done.returncode == 0 and "DagRun Finished: dag_id=callio_etl" in done.stdout, done.stdout[-3000:]
    assert "state=success" in done.stdout.split("DagRun Finished: dag_id=callio_etl", 1)[1].splitlines()[0]
    return Output(texts)


@contextlib.contextmanager
def api_server(env: dict[str, str], log: Path) -> Generator[str]:
    """An ``airflow api-server`` on a free port (its Execution API serves the executor's tasks)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]],
            env={**env, "AIRFLOW__API__WORKERS": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for _ in range(120):
            assert server.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            pytest.fail(f"the API server did not start:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_a_debug_run_under_an_executor_writes_no_tenant_password(callio, tmp_path):
    world, env = callio
    env |= {
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
    }
    server_log = tmp_path / "api-server.log"
    with api_server(env, server_log) as url:
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{url}/execution/"
        output = dags_test(env, tmp_path, "--use-executor")
    output.texts["api-server"] = server_log.read_text(errors="replace")
    task_logs = {where: text for where, text in output.texts.items() if where.endswith(".log")}
    fetches = [text for where, text in task_logs.items() if "task_id=fetch_" in where]
    assert len(fetches) == 3 * len(world.tenants)  # every fetch task wrote its log file...
    assert all('"level":"debug","event":"POST /auth/login' in text for text in fetches)  # ...at DEBUG
    for account in world.accounts():
        assert output.lines_with(account["password"]) == []


def test_at_plain_debug_only_airflows_in_process_supervisor_prints_tenant_passwords(callio, tmp_path):
    world, env = callio
    env |= {"AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"}
    output = dags_test(env, tmp_path)
    for account in world.accounts():
        for line in output.lines_with(account["password"]):
            assert "Sending request" in line and "loc=supervisor.py" in line and "msg=MaskSecret(" in line, (
                line
            )
