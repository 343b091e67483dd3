"""The chatbot backups' pruning on the local S3 server, and pg tools' errors without the password."""

from __future__ import annotations

import io

import pytest

from include.chatbot.backup import BackupError, PgTarget, list_backups, prune_backups, run_pg_tool
from include.dwh.s3 import S3Store
from sandbox.simulators.s3 import airflow_connection
from tests.conftest import new_bucket, set_connection


@pytest.fixture
def store(s3_endpoint, monkeypatch) -> S3Store:
    fields = airflow_connection(s3_endpoint, new_bucket(s3_endpoint))
    set_connection(monkeypatch, "chatbot_backups", fields.pop("conn_type"), **fields)
    return S3Store.from_connection("chatbot_backups")


def _put(store: S3Store, stamp: str, *names: str) -> None:
    for name in names:
        store.upload(f"p/{stamp}/{name}", io.BytesIO(b"x"))


def test_prune_keeps_the_newest_complete_backups_and_a_newer_unfinished_one(store):
    _put(store, "20260101T030000Z", "postgres.dump", "manifest.json")
    _put(store, "20260102T030000Z", "postgres.dump")  # failed before its manifest
    _put(store, "20260103T030000Z", "postgres.dump", "chatbot.duckdb", "manifest.json")
    _put(store, "20260104T030000Z", "postgres.dump", "manifest.json")
    _put(store, "20260105T030000Z", "postgres.dump")  # still being written
    store.upload("p/unrelated.txt", io.BytesIO(b"x"))

    result = prune_backups(store, 2, prefix="p")
    assert result == {
        "kept": ["20260103T030000Z", "20260104T030000Z"],
        "deleted": ["20260101T030000Z", "20260102T030000Z"],
    }
    assert list(list_backups(store, "p")) == ["20260103T030000Z", "20260104T030000Z", "20260105T030000Z"]
    assert store.object_info("p/unrelated.txt")["exists"]
    assert prune_backups(store, 2, prefix="p")["deleted"] == []
    with pytest.raises(ValueError, match="at least 1"):
        prune_backups(store, 0, prefix="p")


def test_a_failing_pg_tool_names_the_error_but_never_the_password():
    secret = "pw-not-to-be-seen"
    target = PgTarget("127.0.0.1", 5432, "postgres", "no_such_database_here", password=secret)
    assert secret not in " ".join(target.args()) and target.env()["PGPASSWORD"] == secret
    with pytest.raises(BackupError) as info:
        run_pg_tool(
            target, ["pg_dump", "--format=custom", "--file", "/dev/null", f"{target.database} {secret}"]
        )
    assert "pg_dump failed" in str(info.value) and secret not in str(info.value)
