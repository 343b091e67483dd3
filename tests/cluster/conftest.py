"""One `make cluster` (scripts/cluster.sh) per test session: CeleryExecutor, two workers, real servers.

The fixture runs the launcher as a user does, in a process group of its own, on free ports, with a
PostgreSQL metadata database ``airflow_cluster_test_<random>`` and a Celery queue of the same name (so
clusters of concurrent test sessions never take each other's tasks from the shared Redis), and the
``dialog_src`` / ``dialog_dst`` connections on throwaway MariaDB databases. Teardown stops the launcher
with SIGTERM (as Ctrl-C does), checks that no process of the cluster is left, and drops the databases.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from include.dialog.schema import prepared_conversations
from include.dwh.config import APPMETRICA_CONN_ID, DWH_CONN_ID, S3_CONN_ID
from sandbox.simulators.appmetrica import AppMetricaSimulator
from sandbox.simulators.callio import CallioSimulator
from sandbox.simulators.s3 import airflow_connection, create_bucket, serve_s3
from sandbox.worlds.callio import DAY_MS, CallioWorld
from sandbox.worlds.dialog import build_world
from tests.conftest import MARIADB, POSTGRES, REPO_ROOT, _mariadb_admin, _postgres_admin, connection_env

DAYS = [dt.date(2024, 6, 1), dt.date(2024, 6, 2), dt.date(2024, 6, 3)]
GROUPS = 6
START_TIMEOUT_S = 420.0
WORKERS = 2
#: Task slots of each worker.
CONCURRENCY = 2
#: The dialog_etl pool: below the workers' slots together, so the pool is what caps load_group, and above
#: one worker's, so of the load_groups queued at once at least one goes to each worker (a worker takes
#: only as many tasks as it has slots) rather than wherever Celery happens to deliver them.
POOL_SLOTS = CONCURRENCY + 1
assert CONCURRENCY < POOL_SLOTS < WORKERS * CONCURRENCY
ADMIN_USER = "admin"
#: Seconds a failed task waits for its retry on the test cluster (the DAGs' own delay is minutes).
RETRY_DELAY_S = 2
POLL_S = 0.5
#: Seconds a task may stay queued on the test cluster before the scheduler requeues it (Airflow's
#: default is 600): well above any wait for a free worker slot here, well below a run's time limit.
QUEUED_TIMEOUT_S = 120
#: Seconds the AppMetrica simulator prepares each export (answering 202) before it is ready.
APPMETRICA_READY_S = 6.0


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class Cluster:
    url: str
    home: Path
    env: dict[str, str] = field(repr=False)
    password: str = field(repr=False)
    queue: str = ""
    callio: CallioSimulator | None = field(default=None, repr=False)
    appmetrica: AppMetricaSimulator | None = field(default=None, repr=False)
    token: str = field(default="", repr=False)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs)

    def ok(self, method: str, path: str, **kwargs) -> dict:
        response = self.request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json() if response.content else {}

    def pids(self) -> dict[str, int]:
        return {p.stem: int(p.read_text()) for p in (self.home / "run").glob("*.pid")}

    def log_tail(self, name: str, lines: int = 30) -> str:
        log = self.home / "logs" / f"{name}.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def script(self, *args: str) -> None:
        subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "cluster.sh"), *args],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker as a lost machine loses it: the worker and every process under it. Killing
        its process group is not enough: each task runs in a process group of its own, which would
        outlive the worker and finish the task's work unseen while its retry runs."""
        import psutil

        worker = psutil.Process(self.pids()[name])
        tree = [worker, *worker.children(recursive=True)]
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=10)

    def restart(self, name: str, timeout: float = 120) -> None:
        """Restart one process (a killed worker comes back); for a worker, wait until it takes tasks."""
        log = self.home / "logs" / f"{name}.log"
        ready = "ready. [celery.apps.worker]"
        before = log.read_text(errors="replace").count(ready) if log.exists() else 0
        self.script("restart", name)
        deadline = time.monotonic() + timeout
        while name.startswith("worker") and log.read_text(errors="replace").count(ready) <= before:
            assert time.monotonic() < deadline, f"{name} not ready again:\n{self.log_tail(name)}"
            time.sleep(POLL_S)

    def running_ti(self, dag_id: str, run_id: str, task_id: str, timeout: float = 120) -> dict:
        """The first mapped instance of ``task_id`` seen running, with the worker it runs on."""
        deadline = time.monotonic() + timeout
        while True:
            for ti in self.task_instances(dag_id, run_id):
                if ti["task_id"] == task_id and ti["state"] == "running" and ti["hostname"]:
                    return ti
            assert time.monotonic() < deadline, f"no {task_id} was seen running"
            time.sleep(0.2)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        """Wait until the dag-processor has serialized ``dag_id``, then unpause it."""
        deadline = time.monotonic() + timeout
        while self.request("GET", f"/api/v2/dags/{dag_id}").status_code != 200:
            assert time.monotonic() < deadline, f"{dag_id} not parsed:\n{self.log_tail('dag-processor')}"
            time.sleep(POLL_S)
        self.ok("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict) -> str:
        run = self.ok("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.ok("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            assert time.monotonic() < deadline, (
                f"{run_id} still {run['state']}:\n{self.log_tail('scheduler')}"
            )
            time.sleep(POLL_S)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.ok("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")[
            "task_instances"
        ]

    def xcom(self, dag_id: str, run_id: str, task_id: str):
        entry = self.ok(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            params={"deserialize": True},
        )
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value


def _mariadb_database(admin, names: list[str]) -> dict:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    names.append(name)
    return {
        "conn_type": "mysql",
        "host": MARIADB["host"],
        "port": MARIADB["port"],
        "login": MARIADB["user"],
        "schema": name,
    }


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def callio_simulator() -> Iterator[tuple[CallioSimulator, str]]:
    """The Callio API over real HTTP in this process, for the cluster's ``callio_api``: a world that ends
    a minute ago, inside the first fetch's 30-day window, so every run of it fetches the same records."""
    world = CallioWorld(
        tenants=2,
        customers=300,
        calls=600,
        burst=200,
        span_ms=20 * DAY_MS,
        end_ms=int(time.time() * 1000) - 60_000,
    )
    simulator = CallioSimulator(world)
    with simulator.serve() as base_url:
        yield simulator, base_url


@pytest.fixture(scope="session")
def appmetrica_simulator() -> Iterator[tuple[AppMetricaSimulator, str]]:
    """The AppMetrica Logs API for the cluster's ``appmetrica_api``: each export is prepared for
    :data:`APPMETRICA_READY_S` seconds (202 meanwhile) and, as AppMetrica does, at most three wait at once."""
    simulator = AppMetricaSimulator(ready_after_polls=None, ready_after_s=APPMETRICA_READY_S, rows_per_day=96)
    with simulator.serve() as base_url:
        yield simulator, base_url


@pytest.fixture(scope="session")
def s3_store() -> Iterator[dict]:
    """A local S3 server and bucket for the cluster's ``dwh_s3``."""
    with serve_s3() as url:
        bucket = f"cluster-{uuid.uuid4().hex[:8]}"
        create_bucket(url, bucket)
        yield airflow_connection(url, bucket)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, callio_simulator, appmetrica_simulator, s3_store) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("cluster")
    name = f"airflow_cluster_test_{uuid.uuid4().hex[:10]}"
    mariadb = _mariadb_admin()
    mariadb_names: list[str] = []
    simulator, callio_url = callio_simulator
    appmetrica, appmetrica_url = appmetrica_simulator
    dwh_name = f"{name}_dwh"
    api_port, log_port, health_port = _free_ports(3)
    password = uuid.uuid4().hex
    env = {
        **os.environ,
        "CLUSTER_HOME": str(home),
        "CLUSTER_PORT": str(api_port),
        "CLUSTER_WORKERS": str(WORKERS),
        "CLUSTER_CONCURRENCY": str(CONCURRENCY),
        "CLUSTER_DB": name,
        "CLUSTER_QUEUE": name,
        # workers and the triggerer serve their logs on consecutive ports from here
        "CLUSTER_LOG_PORT": str(log_port),
        "CLUSTER_HEALTH_PORT": str(health_port),
        "_AIRFLOW_WWW_USER_USERNAME": ADMIN_USER,
        "_AIRFLOW_WWW_USER_PASSWORD": password,
        "PIPELINES_DATA_DIR": str(home / "data"),
        # A task whose worker died is failed (and retried) after this long without a heartbeat.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "12",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        # A task the killed worker had taken from the queue but not yet started stays queued (no
        # heartbeat to miss) until the scheduler revokes and requeues it: after this long, not 10 min.
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(QUEUED_TIMEOUT_S),
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # Tasks follow each other sooner: the scheduler sleeps less when a loop found nothing to do.
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        "PIPELINES_RETRY_DELAY_SECONDS": str(RETRY_DELAY_S),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    }
    env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW_CONN_DIALOG_SRC"] = json.dumps(_mariadb_database(mariadb, mariadb_names))
    env["AIRFLOW_CONN_DIALOG_DST"] = json.dumps(_mariadb_database(mariadb, mariadb_names))
    # Small pages, so that a tenant's fetch takes many requests (a drill slows each one down).
    env |= connection_env(
        "callio_api", "http", host=callio_url, extra={"accounts": simulator.accounts(), "page_size": 25}
    )
    env |= connection_env("callio_warehouse", "duckdb", host=str(home / "callio.duckdb"))
    env |= connection_env(
        APPMETRICA_CONN_ID,
        "http",
        host=appmetrica_url,
        password=appmetrica.token,
        extra={"application_id": appmetrica.application_id},
    )
    env |= connection_env(S3_CONN_ID, **s3_store)
    postgres = _postgres_admin()
    postgres.cursor().execute(f"CREATE DATABASE {dwh_name} ENCODING 'UTF8'")
    postgres.close()
    env |= connection_env(DWH_CONN_ID, "postgres", host=POSTGRES["host"], port=POSTGRES["port"],
                          login=POSTGRES["user"], schema=dwh_name)  # fmt: skip
    out = (home / "cluster.out").open("wb")
    launcher = subprocess.Popen(
        ["bash", str(REPO_ROOT / "scripts" / "cluster.sh"), "start"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Cluster(
        url=f"http://127.0.0.1:{api_port}",
        home=home,
        env=env,
        password=password,
        queue=name,
        callio=simulator,
        appmetrica=appmetrica,
    )
    pids: dict[str, int] = {}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (home / "run" / "ready").exists():
            if launcher.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make cluster did not come up:\n{(home / 'cluster.out').read_text()[-4000:]}")
            time.sleep(POLL_S)
        pids = server.pids()
        response = httpx.post(
            f"{server.url}/auth/token", json={"username": ADMIN_USER, "password": password}, timeout=60
        )
        assert response.status_code == 201, response.text
        server.token = response.json()["access_token"]
        yield server
    finally:
        pids.update(server.pids())
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGTERM)
            launcher.wait(timeout=90)
        out.close()
        left = {name: pid for name, pid in pids.items() if _alive(pid)}
        for pid in left.values():
            os.killpg(pid, signal.SIGKILL)
        postgres = _postgres_admin()
        for database in (name, dwh_name):
            postgres.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        postgres.close()
        for db in mariadb_names:
            mariadb.cursor().execute(f"DROP DATABASE IF EXISTS `{db}`")
        mariadb.close()
        assert not left, f"processes left running after the cluster stopped: {left}"


def day_conf(day: dt.date) -> dict:
    return {"target_date": day.isoformat()}


@pytest.fixture(scope="session")
def world(cluster):
    """A few hundred utterances a day in the cluster's source database; dialog_etl unpaused."""
    source = engine_for_conn(cluster, "DIALOG_SRC")
    world = build_world(source, DAYS, groups=GROUPS, calls_per_group_day=4)
    cluster.ok(
        "PATCH",
        "/api/v2/pools/dialog_etl",
        params={"update_mask": "slots"},
        json={"pool": "dialog_etl", "slots": POOL_SLOTS, "include_deferred": False},
    )
    cluster.wait_for_dag("dialog_etl")
    return world


def engine_for_conn(cluster, name: str) -> sa.Engine:
    """An engine on the database of the cluster's connection ``AIRFLOW_CONN_<name>`` (MariaDB or PostgreSQL)."""
    from sqlalchemy.engine import URL

    conn = json.loads(cluster.env[f"AIRFLOW_CONN_{name}"])
    mysql = conn["conn_type"] == "mysql"
    return sa.create_engine(
        URL.create(
            "mysql+mysqldb" if mysql else "postgresql+psycopg",
            username=conn["login"],
            host=conn["host"],
            port=conn["port"],
            database=conn["schema"],
            query={"charset": "utf8mb4"} if mysql else {},
        )
    )


def calls(engine: sa.Engine, day: dt.date | None = None) -> dict[str, str]:
    query = sa.select(prepared_conversations.c.call_id, prepared_conversations.c.dialog_text)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return {r.call_id: r.dialog_text for r in rows if day is None or r.call_id.startswith(f"C{day:%Y%m%d}")}
