"""Runs of a DAG as a user starts them from the command line: ``airflow dags test`` in a subprocess,
in process or under a LocalExecutor served by a real ``airflow api-server``, with everything the run
wrote (stdout, stderr, task log files) kept for searching, e.g. for secrets at DEBUG level."""

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

    def task_logs(self, task_id: str) -> list[str]:
        """The log files of ``task_id``'s attempts (mapped instances included)."""
        return [
            text
            for where, text in self.texts.items()
            if where.endswith(".log") and f"task_id={task_id}" in where
        ]


def dags_test(env: dict[str, str], logs: Path, dag_id: str, conf: dict, *options: str) -> Output:
    """``airflow dags test dag_id -c conf``: what it printed, and the task log files under ``logs``
    (the run's ``AIRFLOW__LOGGING__BASE_LOG_FOLDER``). The run must succeed."""
    done = subprocess.run(
        [AIRFLOW, "dags", "test", dag_id, *options, "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    texts = {"stdout": done.stdout, "stderr": done.stderr}
    texts |= {str(p): p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file()}
    finished = f"DagRun Finished: dag_id={dag_id}"
    assert done.returncode == 0 and finished in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    assert "state=success" in done.stdout.split(finished, 1)[1].splitlines()[0]
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


def debug_run_under_an_executor(env: dict[str, str], tmp_path: Path, dag_id: str, conf: dict) -> Output:
    """``dags_test`` at DEBUG level under a LocalExecutor, as production runs tasks (each in its own
    supervised process); the API server's log is part of the output."""
    env = {
        **env,
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
    }
    server_log = tmp_path / "api-server.log"
    with api_server(env, server_log) as url:
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"{url}/execution/"
        output = dags_test(env, tmp_path / "logs", dag_id, conf, "--use-executor")
    output.texts["api-server"] = server_log.read_text(errors="replace")
    return output
