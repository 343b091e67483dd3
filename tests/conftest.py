"""Shared fixtures: a migrated Airflow metadata DB, and throwaway databases on the real servers.

The Airflow settings mirror ``scripts/env.sh`` and must be in the environment before Airflow is first
imported, which is why they are set at module import time.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_AIRFLOW_HOME = REPO_ROOT / ".airflow" / "test"

os.environ.setdefault("AIRFLOW_HOME", str(TEST_AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO_ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO_ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP", r"(airflow|include)\..*")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
# One Fernet key for this process and the CLI subprocesses the tests start: on a fresh checkout Airflow
# is imported here before `airflow db migrate` writes airflow.cfg, and each would otherwise differ.
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", "l5BLkb-O0ovgUm0Y1A6Br-COaQ9e-KGusOX7xasJu0g=")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the test metadata database once per session (idempotent, about 8 s)."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return TEST_AIRFLOW_HOME


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A private directory for the embedded SQLite files of one test."""
    monkeypatch.setenv("PIPELINES_DATA_DIR", str(tmp_path))
    return tmp_path


def connection_env(conn_id: str, conn_type: str, **fields) -> dict[str, str]:
    """The environment variable that defines an Airflow connection: ``AIRFLOW_CONN_<ID>`` (JSON form)."""
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps({"conn_type": conn_type, **fields})}


def set_connection(monkeypatch, conn_id: str, conn_type: str, **fields) -> None:
    """Expose an Airflow connection to tasks (and to this process) through its environment variable."""
    for name, value in connection_env(conn_id, conn_type, **fields).items():
        monkeypatch.setenv(name, value)


def _mariadb_admin():
    import MySQLdb

    try:
        return MySQLdb.connect(**MARIADB, charset="utf8mb4", autocommit=True)
    except Exception as exc:  # the server is part of the test environment: fail loudly, never skip
        pytest.fail(f"MariaDB on 127.0.0.1:3306 is not reachable: {exc}")


def _postgres_admin():
    import psycopg2

    try:
        admin = psycopg2.connect(dbname="postgres", **POSTGRES)
    except Exception as exc:
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is not reachable: {exc}")
    admin.autocommit = True
    return admin


@contextlib.contextmanager
def _throwaway_databases(monkeypatch, admin, server: dict, conn_type: str, create: str, drop: str):
    """Yield ``register(conn_id)``: it creates an empty database, points the Airflow connection
    ``conn_id`` at it and returns the conn_id. Every database created is dropped afterwards."""
    created: list[str] = []

    def register(conn_id: str) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        admin.cursor().execute(create.format(name=name))
        created.append(name)
        set_connection(
            monkeypatch,
            conn_id,
            conn_type,
            host=server["host"],
            port=server["port"],
            login=server["user"],
            schema=name,
        )
        return conn_id

    try:
        yield register
    finally:
        for name in created:
            admin.cursor().execute(drop.format(name=name))
        admin.close()


@pytest.fixture
def mariadb_conn(monkeypatch) -> Iterator:
    """Factory of connection ids, each on its own empty utf8mb4 database of the local MariaDB."""
    with _throwaway_databases(
        monkeypatch,
        _mariadb_admin(),
        MARIADB,
        "mysql",
        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        "DROP DATABASE IF EXISTS `{name}`",
    ) as register:
        yield register


@pytest.fixture
def postgres_conn(monkeypatch) -> Iterator:
    """Factory of connection ids, each on its own empty database of the local PostgreSQL."""
    with _throwaway_databases(
        monkeypatch,
        _postgres_admin(),
        POSTGRES,
        "postgres",
        "CREATE DATABASE \"{name}\" ENCODING 'UTF8'",
        'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
    ) as register:
        yield register


@pytest.fixture
def sqlite_conn(monkeypatch, data_dir):
    """Factory: register an Airflow connection id for a SQLite file in the test's data dir."""

    def register(conn_id: str, filename: str | None = None) -> str:
        set_connection(monkeypatch, conn_id, "sqlite", host=filename or f"{conn_id}.sqlite")
        return conn_id

    return register


@pytest.fixture(params=["sqlite", "mariadb", "postgres"])
def any_db_conn(request):
    """The same factory on each backend in turn: dialect-sensitive code runs on all three."""
    return request.getfixturevalue(f"{request.param}_conn")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A local S3 server (moto) shared by a module's tests; :func:`new_bucket` keeps them apart."""
    from sandbox.simulators.s3 import serve_s3

    with serve_s3() as url:
        yield url


def new_bucket(endpoint: str, *, versioned: bool = False) -> str:
    """A bucket of one test's own: moto's state is shared by every server in the process."""
    from sandbox.simulators.s3 import create_bucket

    name = f"t-{uuid.uuid4().hex[:12]}"
    create_bucket(endpoint, name, versioned=versioned)
    return name
