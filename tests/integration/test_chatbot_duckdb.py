"""The chatbot's DuckDB schema: versioned, re-runnable, fixed-size embeddings, a clear error when locked."""

from __future__ import annotations

import datetime as dt
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


def test_a_file_with_the_indexed_message_history_upgrades_and_keeps_its_rows(tmp_path, monkeypatch):
    from include.chatbot import duckdb_store

    path = tmp_path / "chatbot.duckdb"
    monkeypatch.setattr(duckdb_store, "MIGRATIONS", MIGRATIONS[:1])  # a file made before migration 2
    init_duckdb(path)
    rows = [
        (
            f"m{i}",
            i,
            f"s{i % 3}",
            "+55",
            "user",
            f"texto {i}",
            "text",
            "buy",
            "neutral",
            0.5,
            '{"a": 1}',
            dt.datetime(2026, 3, 1, 10, i),
            dt.datetime(2026, 3, 1, 11, i),
            i * 10,
        )
        for i in range(5)
    ]
    with connect(path) as conn:
        conn.executemany(f"INSERT INTO message_history VALUES ({', '.join('?' * 14)})", rows)
        before = conn.execute("SELECT * FROM message_history ORDER BY message_id").fetchall()
        columns = conn.execute("DESCRIBE message_history").fetchall()
        assert conn.execute(
            "SELECT count(*) FROM duckdb_indexes() WHERE table_name = 'message_history'"
        ).fetchone() == (2,)
    monkeypatch.undo()

    upgraded = init_duckdb(path)
    assert upgraded["applied"] == [2] and upgraded["rows"]["message_history"] == 5
    with connect(path) as conn:
        assert conn.execute("SELECT * FROM message_history ORDER BY message_id").fetchall() == before
        assert [c[:3] for c in conn.execute("DESCRIBE message_history").fetchall()] == [
            (name, kind, "NO" if name == "message_id" else null) for name, kind, null, *_ in columns
        ]  # same columns and types; message_id still NOT NULL, no longer a key
        assert conn.execute(
            "SELECT count(*) FROM duckdb_indexes() WHERE table_name = 'message_history'"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'message_history'"
            " GROUP BY 1 ORDER BY 1"
        ).fetchall() == [("NOT NULL",)]
    assert init_duckdb(path)["applied"] == []


HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize("row_group_size", [None, 16_384])
def test_a_file_held_by_another_process_gives_a_retryable_error(tmp_path, row_group_size):
    path = tmp_path / "chatbot.duckdb"
    init_duckdb(path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DuckDBLockedError, match="locked by another process"):
            init_duckdb_with_short_wait(path, row_group_size)
    finally:
        holder.kill()
        holder.wait()
    assert init_duckdb(path)["version"] == MIGRATIONS[-1][0], "the file is intact afterwards"


def init_duckdb_with_short_wait(path, row_group_size):
    with connect(path, lock_timeout=0.5, row_group_size=row_group_size) as conn:
        conn.execute("SELECT 1")


def test_a_row_group_size_of_its_own_writes_smaller_groups_into_the_same_file(tmp_path):
    """The copy opens the file with small row groups; every other reader opens it as before."""
    path = tmp_path / "chatbot.duckdb"
    init_duckdb(path)
    with connect(path, row_group_size=16_384) as conn:
        conn.begin()
        conn.execute(
            "INSERT INTO etl_watermark SELECT 'w' || range, TIMESTAMP '2026-01-01', range, now()::TIMESTAMP"
            " FROM range(50000)"
        )
        conn.commit()
        groups = conn.execute(
            "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('etl_watermark')"
        ).fetchone()[0]
    assert groups == 4  # 50,000 rows in groups of 16,384; DuckDB's default would make one
    with connect(path, read_only=True) as conn:
        assert conn.execute("SELECT count(*), max(last_id) FROM etl_watermark").fetchone() == (50000, 49999)


def test_what_spills_goes_beside_the_file_and_is_gone_when_it_closes(tmp_path, monkeypatch):
    """Opened by ``ATTACH``, DuckDB would spill into ``.tmp`` of the working directory (a task's could be
    anywhere); the copy spills beside its file, as a plainly opened file does, and leaves nothing."""
    path = tmp_path / "chatbot.duckdb"
    init_duckdb(path)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    with connect(path, row_group_size=16_384) as conn:
        conn.execute("SET memory_limit = '32MB'")
        conn.execute("SET threads = 1")
        sorted_rows = conn.execute(
            "SELECT count(*) FROM (SELECT md5(range::VARCHAR) || md5((range + 1)::VARCHAR) AS t"
            " FROM range(2000000) ORDER BY t)"
        ).fetchone()[0]
        assert sorted_rows == 2_000_000
        assert (tmp_path / "chatbot.duckdb.tmp").is_dir(), "the sort spilled beside the file"
        assert not (tmp_path / "cwd" / ".tmp").exists()
    assert not (tmp_path / "chatbot.duckdb.tmp").exists()
