"""The dialog load on real databases: counts, stored content, ownership rules, rejects, re-runs, races
and batch bounds, on the streaming path and, where source and target share a MariaDB server, on the
pushdown path with the same assertions and identical rows."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter

import pytest
import sqlalchemy as sa

from include.common.db import engine_for
from include.common.table_shape import TableShapeError
from include.dialog.etl import find_groups, load_group, reject_unroutable, summarize
from include.dialog.pushdown import choose_path, load_group_on
from include.dialog.schema import (
    check_source_table,
    ensure_target_tables,
    prepared_conversation_rejects,
    prepared_conversations,
)
from sandbox.worlds.dialog import build_world

DAYS = [dt.date(2024, 6, 1), dt.date(2024, 6, 2)]
DAY = DAYS[0]


@pytest.fixture(params=["streaming", "pushdown"])
def load_path(request) -> str:
    """The path a MariaDB-to-MariaDB test forces: the same assertions hold on both."""
    return request.param


def run_day(source, target, day, run_id="test_run", path="streaming"):
    ensure_target_tables(target)
    results = [
        load_group_on(path, source, target, day, g, run_id, batch_size=7).as_dict()
        for g in find_groups(source, day)
    ]
    assert {(r["path"], r["fallback"]) for r in results} <= {(path, None)}
    reject_unroutable(source, target, day, run_id)
    return summarize(day, results, path)


def conversations(target):
    with target.connect() as conn:
        return {r.call_id: r for r in conn.execute(sa.select(prepared_conversations))}


def rejects(target) -> Counter:
    """How often each (source row, reason) is stored: a re-run must leave every count at 1."""
    with target.connect() as conn:
        return Counter(
            (r.source_id, r.reason) for r in conn.execute(sa.select(prepared_conversation_rejects))
        )


def assert_stored_as_generated(world, row):
    """A stored conversation holds exactly the call's usable utterances in speaking order, as the
    synthetic world generated them: turns_json, dialog_text, turn_count, first and last time."""
    turns = world.turns(row.call_id)
    assert json.loads(row.turns_json) == turns, row.call_id
    assert row.dialog_text == world.dialog_text(row.call_id), row.call_id
    assert row.turn_count == len(turns)
    times = [dt.datetime.fromisoformat(t["time"]) for t in turns]
    assert (row.first_time, row.last_time) == (times[0], times[-1]), row.call_id


def check_day(world, source, target, *, invalid_bytes=True, path="streaming"):
    summary = run_day(source, target, DAY, path=path)
    expected = world.expected(DAY)
    assert summary == {
        "target_date": "2024-06-01",
        "groups_processed": expected["groups"],
        "conversations_total": expected["conversations"],
        "inserted": expected["conversations"],
        "skipped_existing": 0,
        "path": path,
    }
    rows = conversations(target)
    owned = {c: v for c, v in world.calls.items() if v[0] == DAY}
    assert set(rows) == set(owned)
    for call_id, (day, group, usable) in owned.items():
        assert (rows[call_id].dialog_date, rows[call_id].group_code, rows[call_id].turn_count) == (
            day,
            group,
            usable,
        )
        assert_stored_as_generated(world, rows[call_id])

    # A call handed over to the next group is loaded once, by its first group, with both groups' turns.
    transfer = rows["C20240601-G01-00001"]
    assert {t["group_code"] for t in json.loads(transfer.turns_json)} == {"G01", "G02"}
    # A call that started at 23:59 keeps its utterances after midnight, and June 2 does not load it.
    midnight = rows["C20240601-G01-00000"]
    assert midnight.first_time.date() == DAY and midnight.last_time.date() == DAYS[1]
    # Turns follow time, then seq: the source numbered the first utterance of call 5 late, and the
    # second and third of call 6 share a second with their seq numbers swapped against their ids.
    assert [t["seq"] for t in json.loads(rows["C20240601-G01-00005"].turns_json)][:2] == [2, 1]
    assert [t["seq"] for t in json.loads(rows["C20240601-G01-00006"].turns_json)][:3] == [1, 2, 3]

    found = rejects(target)
    reasons = {reason for _, reason in found}
    assert {"empty_content", "undecodable_text", "missing_call_id", "missing_group_code"} <= reasons
    day_bad = {i for i, _ in found}
    assert day_bad <= world.bad_row_ids
    assert set(found.values()) == {1}

    # Re-run: nothing inserted twice, nothing rejected twice.
    again = run_day(source, target, DAY, run_id="second_run", path=path)
    assert (again["inserted"], again["skipped_existing"]) == (0, expected["conversations"])
    assert len(conversations(target)) == len(owned)
    assert rejects(target) == found
    assert conversations(target) == rows  # the second run rewrote nothing either

    summary2 = run_day(source, target, DAYS[1], path=path)
    assert "C20240601-G01-00000" in conversations(target)
    assert summary2["inserted"] == world.expected(DAYS[1])["conversations"]


def test_sqlite_to_sqlite(sqlite_conn):
    source, target = engine_for(sqlite_conn("dialog_src")), engine_for(sqlite_conn("dialog_dst"))
    world = build_world(source, DAYS, groups=3, calls_per_group_day=12)
    check_day(world, source, target)


def test_mariadb_source_and_target_in_different_databases(mariadb_conn, load_path):
    source, target = engine_for(mariadb_conn("dialog_src")), engine_for(mariadb_conn("dialog_dst"))
    assert source.url.database != target.url.database
    assert choose_path(source, target) == "pushdown"  # one server, one login: the default
    world = build_world(source, DAYS, groups=3, calls_per_group_day=12, invalid_bytes=False)
    check_day(world, source, target, invalid_bytes=False, path=load_path)


def test_mariadb_source_postgres_target(mariadb_conn, postgres_conn):
    source, target = engine_for(mariadb_conn("dialog_src")), engine_for(postgres_conn("dialog_dst"))
    world = build_world(source, DAYS, groups=3, calls_per_group_day=12, invalid_bytes=False)
    check_day(world, source, target, invalid_bytes=False)


def test_two_runs_of_the_same_day_at_once_never_duplicate(mariadb_conn, load_path):
    source, target = engine_for(mariadb_conn("dialog_src")), engine_for(mariadb_conn("dialog_dst"))
    world = build_world(source, DAYS, groups=2, calls_per_group_day=60, invalid_bytes=False)
    ensure_target_tables(target)
    results: list[dict] = []

    def run(run_id):
        for group in find_groups(source, DAY):
            loaded = load_group_on(load_path, source, target, DAY, group, run_id, batch_size=5).as_dict()
            assert (loaded["path"], loaded["fallback"]) == (load_path, None)
            results.append(loaded)

    threads = [threading.Thread(target=run, args=(f"run{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = world.expected(DAY)["conversations"]
    assert len(conversations(target)) == expected
    assert sum(r["inserted"] for r in results) == expected
    assert sum(r["skipped_existing"] for r in results) == expected


def test_batches_are_bounded_by_rows_and_by_text_size(sqlite_conn):
    source, target = engine_for(sqlite_conn("dialog_src")), engine_for(sqlite_conn("dialog_dst"))
    build_world(source, [DAY], groups=1, calls_per_group_day=40, edge_cases=False)
    ensure_target_tables(target)
    statements: list[str] = []
    sa.event.listen(
        target,
        "before_cursor_execute",
        lambda conn, cursor, statement, *args: (
            statements.append(statement)
            if statement.startswith("INSERT INTO prepared_conversations ")
            else None
        ),
    )

    def inserts(**limits) -> int:
        with target.begin() as conn:
            conn.execute(prepared_conversations.delete())
        statements.clear()
        assert load_group(source, target, DAY, "G01", "r", **limits).inserted == 40
        return len(statements)

    assert inserts(batch_size=1000, batch_bytes=10**9) == 1
    assert inserts(batch_size=15, batch_bytes=10**9) == 3  # 15 + 15 + 10
    assert inserts(batch_size=1000, batch_bytes=1) == 40  # every conversation exceeds one byte


def test_the_text_size_bound_counts_utf8_bytes_not_characters(sqlite_conn):
    """Chinese text takes three bytes a character in UTF-8. With the bound set between the day's
    character count and its byte count, a bound counted in characters would never be reached (one
    batch); counted in bytes it splits the day, and no batch holds the bound's worth of bytes before
    its last conversation was added."""
    source, target = engine_for(sqlite_conn("dialog_src")), engine_for(sqlite_conn("dialog_dst"))
    build_world(source, [DAY], groups=1, calls_per_group_day=40, edge_cases=False)
    ensure_target_tables(target)
    assert load_group(source, target, DAY, "G01", "sizes").inserted == 40
    with target.begin() as conn:
        texts = [(r.turns_json, r.dialog_text) for r in conn.execute(sa.select(prepared_conversations))]
        conn.execute(prepared_conversations.delete())
    chars = sum(len(a) + len(b) for a, b in texts)
    size = sum(len(a.encode()) + len(b.encode()) for a, b in texts)
    bound = chars + 1
    assert chars < bound <= size  # the content is mostly Chinese: the two counts straddle the bound

    batches: list[list[int]] = []  # per INSERT statement, the UTF-8 size of each conversation

    def record(conn, clauseelement, multiparams, params, execution_options, result):
        if getattr(clauseelement, "table", None) is prepared_conversations:
            rows = multiparams[0] if multiparams and isinstance(multiparams[0], list) else multiparams
            batches.append([len(r["turns_json"].encode()) + len(r["dialog_text"].encode()) for r in rows])

    sa.event.listen(target, "after_execute", record)
    assert load_group(source, target, DAY, "G01", "bounded", batch_bytes=bound).inserted == 40
    assert sum(len(b) for b in batches) == 40
    assert len(batches) >= 2, f"{size} bytes in one batch under a bound of {bound} bytes"
    assert all(sum(b[:-1]) < bound for b in batches), [sum(b) for b in batches]


GENERATED_ID = {
    "sqlite": "id INTEGER PRIMARY KEY",
    "mysql": "id INTEGER PRIMARY KEY AUTO_INCREMENT",
    "postgresql": "id SERIAL PRIMARY KEY",
}


def table_rows(engine, table: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY id")]


def test_an_existing_target_of_another_shape_fails_before_anything_is_written(any_db_conn):
    """A DBA's prepared_conversations without turns_json / dialog_text, with an integer call_id, a
    short group_code, a NOT NULL column the pipeline does not fill and no unique call_id: the load stops
    at the check, naming each problem and the expected shape, and the table keeps its one row."""
    source, target = engine_for(any_db_conn("dialog_src")), engine_for(any_db_conn("dialog_dst"))
    build_world(source, [DAY], groups=1, calls_per_group_day=5, invalid_bytes=False)
    with target.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE prepared_conversations ({GENERATED_ID[target.dialect.name]},"
            " call_id INTEGER NOT NULL, group_code VARCHAR(8) NOT NULL, dialog_date DATE NOT NULL,"
            " turn_count INTEGER NOT NULL, conversation TEXT, agent VARCHAR(32) NOT NULL,"
            " first_time TIMESTAMP NOT NULL, last_time TIMESTAMP NOT NULL, etl_run_id VARCHAR(250) NOT NULL,"
            " loaded_at TIMESTAMP NOT NULL)"
        )
        conn.exec_driver_sql(
            "INSERT INTO prepared_conversations (call_id, group_code, dialog_date, turn_count, conversation,"
            " agent, first_time, last_time, etl_run_id, loaded_at) VALUES (7, 'G01', '2024-05-31', 2, 'x',"
            " 'a1', '2024-05-31 10:00:00', '2024-05-31 10:01:00', 'old', '2024-06-01 00:00:00')"
        )
    before = table_rows(target, "prepared_conversations")

    with pytest.raises(TableShapeError) as caught:
        ensure_target_tables(target)
    message = str(caught.value)
    assert "nothing was written" in message  # the nullable extra column `conversation` is no problem
    problems = message.split("prepared_conversations:\n")[1].split("\n  expected:")[0].splitlines()
    assert problems[0].startswith("  - call_id is INT") and problems[0].endswith(": expected text(64)")
    assert problems[1:] == [
        # SQLite stores any length in a VARCHAR(8)
        *(
            []
            if target.dialect.name == "sqlite"
            else ["  - group_code is VARCHAR(8): shorter than the 32 characters the pipeline stores there"]
        ),
        "  - missing column turns_json (text)",
        "  - missing column dialog_text (text)",
        "  - extra column agent is NOT NULL without a default: the pipeline's inserts leave it out",
        "  - no unique key on (call_id)",
    ]
    assert "expected: id integer, generated primary key; call_id text(64), not null; group_code" in message

    with target.connect() as conn:
        assert not sa.inspect(conn).has_table("prepared_conversation_rejects")  # nothing was created
    assert table_rows(target, "prepared_conversations") == before


def test_an_existing_target_with_extra_columns_is_loaded(any_db_conn):
    """The pipeline's columns plus the DBA's own (nullable, or NOT NULL with a default) take the load."""
    source, target = engine_for(any_db_conn("dialog_src")), engine_for(any_db_conn("dialog_dst"))
    world = build_world(source, [DAY], groups=2, calls_per_group_day=8, invalid_bytes=False)
    ensure_target_tables(target)
    with target.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE prepared_conversations ADD COLUMN remark VARCHAR(255)")
        conn.exec_driver_sql(
            "ALTER TABLE prepared_conversations ADD COLUMN reviewed INTEGER NOT NULL DEFAULT 0"
        )
    summary = run_day(source, target, DAY, path=choose_path(source, target))
    assert summary["inserted"] == world.expected(DAY)["conversations"]
    with target.connect() as conn:
        extras = conn.exec_driver_sql("SELECT remark, reviewed FROM prepared_conversations").all()
    assert set(extras) == {(None, 0)}


def test_a_source_without_the_columns_read_fails_naming_them(any_db_conn):
    source = engine_for(any_db_conn("dialog_src"))
    with source.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE people_customer_dialog ({GENERATED_ID[source.dialect.name]}, call_id VARCHAR(64),"
            " group_code VARCHAR(32), role VARCHAR(16), content TEXT, seq INTEGER, created_at VARCHAR(32))"
        )
    with pytest.raises(TableShapeError) as caught:
        check_source_table(source)
    message = str(caught.value)
    problems = message.split("people_customer_dialog:\n")[1].split("\n  expected:")[0].splitlines()
    assert problems[0] == "  - missing column speaker (text)"
    assert problems[1].startswith("  - created_at is VARCHAR(32)") and problems[1].endswith(
        ": expected datetime"
    )
    assert len(problems) == 2
