"""The dialog load on real databases: counts, ownership rules, rejects, re-runs and races."""

from __future__ import annotations

import datetime as dt
import json
import threading

import sqlalchemy as sa

from include.common.db import engine_for
from include.dialog.etl import find_groups, load_group, reject_unroutable, summarize
from include.dialog.schema import ensure_target_tables, prepared_conversation_rejects, prepared_conversations
from include.sandbox.dialog_data import build_world

DAYS = [dt.date(2024, 6, 1), dt.date(2024, 6, 2)]
DAY = DAYS[0]


def run_day(source, target, day, run_id="test_run"):
    ensure_target_tables(target)
    results = [
        load_group(source, target, day, g, run_id, batch_size=7).as_dict() for g in find_groups(source, day)
    ]
    reject_unroutable(source, target, day, run_id)
    return summarize(day, results)


def conversations(target):
    with target.connect() as conn:
        return {r.call_id: r for r in conn.execute(sa.select(prepared_conversations))}


def rejects(target):
    with target.connect() as conn:
        return {(r.source_id, r.reason) for r in conn.execute(sa.select(prepared_conversation_rejects))}


def check_day(world, source, target, *, invalid_bytes=True):
    summary = run_day(source, target, DAY)
    expected = world.expected(DAY)
    assert summary == {
        "target_date": "2024-06-01",
        "groups_processed": expected["groups"],
        "conversations_total": expected["conversations"],
        "inserted": expected["conversations"],
        "skipped_existing": 0,
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

    # A call handed over to the next group is loaded once, by its first group, with both groups' turns.
    transfer = rows["C20240601-G01-00001"]
    assert {t["group_code"] for t in json.loads(transfer.turns_json)} == {"G01", "G02"}
    # A call that started at 23:59 keeps its utterances after midnight, and June 2 does not load it.
    midnight = rows["C20240601-G01-00000"]
    assert midnight.first_time.date() == DAY and midnight.last_time.date() == DAYS[1]

    found = rejects(target)
    reasons = {reason for _, reason in found}
    assert {"empty_content", "undecodable_text", "missing_call_id", "missing_group_code"} <= reasons
    day_bad = {i for i, _ in found}
    assert day_bad <= world.bad_row_ids

    # Re-run: nothing inserted twice, nothing rejected twice.
    again = run_day(source, target, DAY, run_id="second_run")
    assert (again["inserted"], again["skipped_existing"]) == (0, expected["conversations"])
    assert len(conversations(target)) == len(owned)
    assert rejects(target) == found

    summary2 = run_day(source, target, DAYS[1])
    assert "C20240601-G01-00000" in conversations(target)
    assert summary2["inserted"] == world.expected(DAYS[1])["conversations"]


def test_sqlite_to_sqlite(sqlite_conn):
    source, target = engine_for(sqlite_conn("dialog_src")), engine_for(sqlite_conn("dialog_dst"))
    world = build_world(source, DAYS, groups=3, calls_per_group_day=12)
    check_day(world, source, target)


def test_mariadb_source_and_target_in_different_databases(mariadb_conn):
    source, target = engine_for(mariadb_conn("dialog_src")), engine_for(mariadb_conn("dialog_dst"))
    assert source.url.database != target.url.database
    world = build_world(source, DAYS, groups=3, calls_per_group_day=12, invalid_bytes=False)
    check_day(world, source, target, invalid_bytes=False)


def test_mariadb_source_postgres_target(mariadb_conn, postgres_conn):
    source, target = engine_for(mariadb_conn("dialog_src")), engine_for(postgres_conn("dialog_dst"))
    world = build_world(source, DAYS, groups=3, calls_per_group_day=12, invalid_bytes=False)
    check_day(world, source, target, invalid_bytes=False)


def test_two_runs_of_the_same_day_at_once_never_duplicate(mariadb_conn):
    source, target = engine_for(mariadb_conn("dialog_src")), engine_for(mariadb_conn("dialog_dst"))
    world = build_world(source, DAYS, groups=2, calls_per_group_day=60, invalid_bytes=False)
    ensure_target_tables(target)
    results: list[dict] = []

    def run(run_id):
        for group in find_groups(source, DAY):
            results.append(load_group(source, target, DAY, group, run_id, batch_size=5).as_dict())

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
