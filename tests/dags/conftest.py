"""Fixtures of the DAG tests: every one runs against the session's migrated Airflow metadata database;
the export DAGs' tests share the exports' work directory and a fresh bucket behind ``dwh_s3`` on the
local S3 server."""

from __future__ import annotations

import pytest

from include.dwh.config import EXPORT_WORKDIR_ENV, S3_CONN_ID
from sandbox.simulators.s3 import airflow_connection
from tests.conftest import new_bucket, set_connection


@pytest.fixture(autouse=True)
def _airflow(airflow_db):
    """Loading or running a DAG reads and writes the metadata database."""
    return airflow_db


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    path = tmp_path / "work"
    monkeypatch.setenv(EXPORT_WORKDIR_ENV, str(path))
    return path


@pytest.fixture
def bucket(s3_endpoint, monkeypatch) -> str:
    name = new_bucket(s3_endpoint)
    fields = airflow_connection(s3_endpoint, name)
    set_connection(monkeypatch, S3_CONN_ID, fields.pop("conn_type"), **fields)
    return name
