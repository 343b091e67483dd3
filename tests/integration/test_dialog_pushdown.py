"""The pushdown path on real MariaDB: the same rows as the streaming path, byte for byte, on awkward
data; the groups it hands back to streaming; and which connections choose it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from include.common.db import engine_for
from include.dialog.etl import find_groups, reject_unroutable, summarize
from include.dialog.pushdown import choose_path, load_group_on, same_server
from include.dialog.schema import ensure_target_tables, people_customer_dialog
from sandbox.worlds.dialog import build_world
from tests.conftest import MARIADB

DAY = dt.date(2024, 6, 1)
NOON = dt.datetime(2024, 6, 1, 12)

#: Content and speakers Python treats in ways a naive SQL statement would not: Unicode spaces that
#: str.strip() removes, control characters and quotes JSON escapes, NULLs, whitespace-only text, U+FFFD.
AWKWARD_ROWS = [
    # call, group, speaker, content, seq, seconds after noon
    ("C-ODD-1", "G01", " Agent\t", "\u3000\u00a0前后有空格\u2003\n", 1, 0),
    ("C-ODD-1", "G01", None, 'tab\tvt\x0bus\x1f "quote" \\back\\ \x7f \u2028', None, 1),
    ("C-ODD-1", "G01", "", "\x1c\x1d只有前缀控制符", 0, 1),
    ("C-ODD-1", "G01", "Robot", "😀 four-byte", 3, 2),
    ("C-ODD-1", "G02", "customer ", None, 4, 3),
    ("C-ODD-1", "G01", "bot", "\u3000\u00a0\u2028 ", 5, 4),
    ("C-ODD-1", "G01", "agent", "坏\ufffd字", 6, 5),
    ("C-ODD-1", "G01", "CUSTOMER", "last word \\u001F literal", 7, 6),
    ("C-ODD-2", "G01", "customer", "", 1, 10),  # every utterance rejected: no conversation
    ("C-ODD-2", "G01", "agent", "   ", 2, 11),
    ("C-ODD-3", "G01", "agent", "seq ties", 2, 20),
    ("C-ODD-3", "G01", "agent", "seq null first", None, 20),
    ("C-ODD-3", "G01", "agent", "seq one", 1, 20),
    ("C-ODD-4", "G02", "agent", "the previous day's call", 1, -13 * 3600),
    ("C-ODD-4", "G01", "customer", "reached G01 after midnight", 2, 0),
    ("c-odd-5", "G01", "agent", "lower-case call", 1, 30),
    # Escapes next to escaped backslashes, a turn-like text, a NUL first, ideographic spaces last.
    ("C-ODD-6", "G01", "agent", '\\\x0b\\\\\x1e \\\\u001E {"seq":1}', 1, 40),
    ("C-ODD-6", "G01", "customer", "\x00 starts with NUL\u3000\u3000", 2, 41),
    ("C-ODD-6", "G01", "bot", "\u3000", 3, 42),
]


def add_rows(engine: sa.Engine, rows: list[tuple], first_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            people_customer_dialog.insert(),
            [
                {
                    "id": first_id + i,
                    "call_id": call,
                    "group_code": group,
                    "speaker": speaker,
                    "content": content,
                    "seq": seq,
                    "created_at": NOON + dt.timedelta(seconds=offset),
                }
                for i, (call, group, speaker, content, seq, offset) in enumerate(rows)
            ],
        )


def run_day(source, target, path: str, run_id: str) -> tuple[dict, list[dict]]:
    ensure_target_tables(target)
    results = [
        load_group_on(path, source, target, DAY, g, run_id, batch_size=7).as_dict()
        for g in find_groups(source, DAY)
    ]
    reject_unroutable(source, target, DAY, run_id)
    return summarize(DAY, results, path), results


def stored(target) -> tuple[list[tuple], list[tuple]]:
    """Everything both paths must write alike (ids, run ids and load times aside)."""
    with target.connect() as conn:
        conversations = conn.exec_driver_sql(
            "SELECT call_id, group_code, dialog_date, turn_count, turns_json, dialog_text, first_time,"
            " last_time FROM prepared_conversations ORDER BY call_id"
        ).all()
        rejects = conn.exec_driver_sql(
            "SELECT source_id, call_id, group_code, dialog_date, reason, detail"
            " FROM prepared_conversation_rejects ORDER BY source_id, reason"
        ).all()
    return [tuple(r) for r in conversations], [tuple(r) for r in rejects]


def _without_path(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("path", "streaming_fallbacks")}


@pytest.fixture
def three_databases(mariadb_conn):
    """A source and two targets on the local MariaDB: one per path."""
    return (
        engine_for(mariadb_conn("dialog_src")),
        engine_for(mariadb_conn("dialog_dst")),
        engine_for(mariadb_conn("dialog_dst_other")),
    )


def test_both_paths_store_identical_rows_and_rejects(three_databases):
    source, streamed, pushed = three_databases
    world = build_world(source, [DAY], groups=3, calls_per_group_day=12, invalid_bytes=False)
    add_rows(source, AWKWARD_ROWS, world.rows + 1)

    by_stream, stream_results = run_day(source, streamed, "streaming", "s")
    by_push, push_results = run_day(source, pushed, "pushdown", "p")
    assert {r["path"] for r in push_results} == {"pushdown"}
    assert "streaming_fallbacks" not in by_push
    assert _without_path(by_push) == _without_path(by_stream)
    assert [r["rejected"] for r in push_results] == [r["rejected"] for r in stream_results]
    conversations, rejects = stored(pushed)
    assert (conversations, rejects) == stored(streamed)
    # The awkward calls are there (or not) as the rules say; C-ODD-4 belongs to May 31.
    calls = {c[0] for c in conversations}
    assert {"C-ODD-1", "C-ODD-3", "c-odd-5", "C-ODD-6"} <= calls and not calls & {"C-ODD-2", "C-ODD-4"}
    assert {r[4] for r in rejects if r[1] in ("C-ODD-1", "C-ODD-2")} == {"empty_content", "undecodable_text"}

    # Either path re-running after the other adds nothing.
    again, _ = run_day(source, streamed, "pushdown", "p2")
    assert (again["inserted"], again["skipped_existing"]) == (0, by_stream["conversations_total"])
    assert stored(streamed) == (conversations, rejects)


@pytest.mark.parametrize(
    ("content", "speaker", "why"),
    [
        ("坏".encode() + b"\xed\xa0\x80", "agent", "not UTF-8"),  # a surrogate: MariaDB keeps it
        ("fine", "客服", "outside ASCII"),
    ],
)
def test_a_group_needing_python_is_streamed_with_the_same_result(three_databases, content, speaker, why):
    source, streamed, pushed = three_databases
    world = build_world(source, [DAY], groups=3, calls_per_group_day=6, invalid_bytes=False)
    with source.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO people_customer_dialog (id, call_id, group_code, speaker, content, seq, created_at)"
            " VALUES (%s, 'C-PY-1', 'G02', %s, %s, 1, %s)",
            (world.rows + 1, speaker, content, NOON),
        )

    by_stream, _ = run_day(source, streamed, "streaming", "s")
    by_push, results = run_day(source, pushed, "pushdown", "p")
    assert {r["group_code"]: r["path"] for r in results} == {
        "G01": "pushdown",
        "G02": "streaming",
        "G03": "pushdown",
    }
    assert by_push["path"] == "pushdown"
    assert list(by_push["streaming_fallbacks"]) == ["G02"] and why in by_push["streaming_fallbacks"]["G02"]
    assert _without_path(by_push) == _without_path(by_stream)
    assert stored(pushed) == stored(streamed)


def test_other_servers_or_logins_choose_streaming(mariadb_conn, sqlite_conn, postgres_conn, monkeypatch):
    source = engine_for(mariadb_conn("dialog_src"))
    target = engine_for(mariadb_conn("dialog_dst"))
    assert choose_path(source, target) == "pushdown"
    assert choose_path(source, target, "streaming") == "streaming"  # the DAG's load_path param
    with pytest.raises(ValueError, match="load_path"):
        choose_path(source, target, "fast")

    def variant(**changes) -> sa.Engine:
        return sa.create_engine(target.url.set(**changes))

    assert not same_server(source, variant(port=3307))
    assert not same_server(source, variant(host="db.internal"))
    assert not same_server(source, variant(username="etl_reader"))
    assert same_server(source, variant(host="127.0.0.1", password="not compared"))
    assert choose_path(source, engine_for(sqlite_conn("dialog_dst_sqlite"))) == "streaming"
    assert choose_path(source, engine_for(postgres_conn("dialog_dst_pg"))) == "streaming"


def test_a_second_login_on_the_same_server_streams_and_loads_the_same(mariadb_conn, monkeypatch):
    """Another user may not read the source database, so a run with two logins streams."""
    import MySQLdb

    from tests.conftest import set_connection

    source = engine_for(mariadb_conn("dialog_src"))
    target = engine_for(mariadb_conn("dialog_dst"))
    user = f"t_{uuid.uuid4().hex[:10]}"
    admin = MySQLdb.connect(**MARIADB, autocommit=True)
    try:
        admin.cursor().execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
        admin.cursor().execute(f"GRANT ALL ON `{target.url.database}`.* TO '{user}'@'%'")
        set_connection(
            monkeypatch,
            "dialog_dst_login",
            "mysql",
            host=MARIADB["host"],
            port=MARIADB["port"],
            login=user,
            password="pw",
            schema=target.url.database,
        )
        other_login = engine_for("dialog_dst_login")
        assert choose_path(source, other_login) == "streaming"
        world = build_world(source, [DAY], groups=2, calls_per_group_day=5, invalid_bytes=False)
        summary, results = run_day(source, other_login, choose_path(source, other_login), "r")
        assert summary["path"] == "streaming" and {r["path"] for r in results} == {"streaming"}
        assert summary["inserted"] == world.expected(DAY)["conversations"]
        other_login.dispose()
    finally:
        admin.cursor().execute(f"DROP USER IF EXISTS '{user}'@'%'")
        admin.close()
