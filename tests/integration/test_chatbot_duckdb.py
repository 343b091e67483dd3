"""The chatbot's DuckDB schema: versioned, re-runnable, fixed-size embeddings, a clear error when locked."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest

from include.chatbot.duckdb_store import (
    EMBEDDING_DIM,
    MIGRATIONS,
    DuckDBLockedError,
    connect,
    init_duckdb,
    schema_version,
)


def test_init_is_versioned_and_rerunnable(tmp_path):
    path = tmp_path / "a" / "chatbot.duckdb"
    first = init_duckdb(path)
    assert first["applied"] == [v for v, _, _ in MIGRATIONS] and first["version"] == MIGRATIONS[-1][0]
    assert first["rows"] == {
        "conversation_context": 0,
        "message_history": 0,
        "message_embeddings": 0,
        "etl_watermark": 0,
    }
    with connect(path) as conn:
        conn.execute("INSERT INTO etl_watermark VALUES ('x', NULL, NULL, now())")
    second = init_duckdb(path)
    assert second["applied"] == [] and second["rows"]["etl_watermark"] == 1
    with connect(path) as conn:
        assert schema_version(conn) == MIGRATIONS[-1][0]
        kind = conn.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'message_embeddings' AND column_name = 'embedding'"
        ).fetchone()[0]
        assert kind == f"FLOAT[{EMBEDDING_DIM}]"
        with pytest.raises(duckdb.ConversionException):  # a vector of another size is refused
            conn.execute(
                "INSERT INTO message_embeddings VALUES ('m', 's', NULL, 'x', [1.0, 2.0]::FLOAT[2], 'm', now())"
            )


HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(30)
"""


def test_a_file_held_by_another_process_gives_a_retryable_error(tmp_path):
    path = tmp_path / "chatbot.duckdb"
    init_duckdb(path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DuckDBLockedError, match="locked by another process"):
            init_duckdb_with_short_wait(path)
    finally:
        holder.kill()
        holder.wait()
    assert init_duckdb(path)["version"] == MIGRATIONS[-1][0], "the file is intact afterwards"


def init_duckdb_with_short_wait(path):
    with connect(path, lock_timeout=0.5) as conn:
        conn.execute("SELECT 1")
