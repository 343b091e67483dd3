"""copy_window streamed in chunks: many small chunks give exactly what one chunk gives, awkward text
survives PostgreSQL's CSV, and a failure half-way leaves the DuckDB file as it was."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest
import sqlalchemy as sa

from include.chatbot import analytics
from include.chatbot.alembic_cli import migrate_postgres
from include.chatbot.analytics import copy_window, plan_window
from include.chatbot.config import POSTGRES_CONN_ID
from include.common.db import engine_for
from sandbox.worlds import chatbot as world

AT = dt.datetime(2026, 3, 4, 10, 0, tzinfo=dt.UTC)
#: message id, role, content, entities, seconds after AT: quotes, commas, newlines, non-breaking and
#: ideographic spaces, a long text, an empty one, a tie between a question and a reply.
AWKWARD = [
    ("x1", "user", 'Olá,\n  "quero"\u00a0um carro', {"type": "hatch", "extras": {"cor": "azul"}}, 0),
    ("x2", "assistant", "", {}, 0),
    ("x3", "assistant", "Claro\u3000" + "muito longo " * 12, {}, 5),
    ("x4", "user", "a, b; c", {"type": "sedã", "budget": 50000.0}, 9),
    ("x5", "user", "   ", {"extras": None}, 9),
    ("x6", "assistant", "ok", {}, 9),
    ("x7", "user", "última", {"z": 1, "a": [1, 2]}, 20),
    ("x8", "assistant", "fim", {}, 21),
]


@pytest.fixture
def chatbot(postgres_conn, tmp_path):
    engine = engine_for(postgres_conn(POSTGRES_CONN_ID))
    migrate_postgres(engine, "001")
    world.populate(engine)
    yield engine, tmp_path
    engine.dispose()


def _add_awkward_session(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        key = conn.scalar(
            sa.text(
                "INSERT INTO sessions (session_id, user_id, state, turn_id, user_profile)"
                " SELECT 's-x', id, 'qualifying', 7, CAST(:p AS jsonb) FROM users WHERE name = 'Bruno'"
                " RETURNING id"
            ),
            {"p": json.dumps({"nome": "Bruno", "budget": 1.5})},
        )
        for mid, role, content, ents, after in AWKWARD:
            at = AT + dt.timedelta(seconds=after)
            conn.execute(
                sa.text(
                    "INSERT INTO messages (message_id, session_id, role, content, entities, created_at,"
                    " updated_at) VALUES (:m, :s, :r, :c, CAST(:e AS jsonb), :at, :at)"
                ),
                {"m": mid, "s": key, "r": role, "c": content, "e": json.dumps(ents), "at": at},
            )


def _dump(path) -> dict:
    with duckdb.connect(str(path), read_only=True) as conn:
        return {
            table: conn.execute(f"SELECT * EXCLUDE (updated_at) FROM {table} ORDER BY 1").fetchall()
            if table == "etl_watermark"
            else conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("message_history", "conversation_context", "etl_watermark")
        }


def _copy(engine, path, chunk_rows: int) -> dict:
    return copy_window(engine, path, plan_window(engine, path), chunk_rows=chunk_rows)


def test_small_chunks_copy_exactly_what_one_chunk_copies(chatbot):
    engine, tmp = chatbot
    _add_awkward_session(engine)
    one, many = tmp / "one.duckdb", tmp / "many.duckdb"
    whole = _copy(engine, one, chunk_rows=1000)
    chunked = _copy(engine, many, chunk_rows=2)
    assert whole == chunked
    assert whole["messages"] == 17 and whole["sessions"] == 4
    assert whole["days"] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    assert _dump(one) == _dump(many)

    with duckdb.connect(str(many), read_only=True) as conn:
        history = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT message_id, content, response_time_ms FROM message_history"
            ).fetchall()
        }
        ctx = conn.execute(
            "SELECT summary, key_entities, user_profile, message_count, turn_id, state, last_message_at"
            " FROM conversation_context WHERE session_id = 's-x'"
        ).fetchone()
    assert history["x1"] == ('Olá,\n  "quero"\u00a0um carro', 5000)  # the reply at the same instant is none
    assert history["x2"] == ("", None)
    assert history["x4"][1] == history["x5"][1] == 12000 and history["x7"][1] == 1000
    summary = ctx[0].splitlines()
    assert len(summary) == analytics.SUMMARY_TURNS
    assert summary[0] == "assistant: Claro " + ("muito longo " * 12)[: analytics.SUMMARY_CHARS - 6] + "…"
    assert summary[1:] == ["user: a, b; c", "user: ", "assistant: ok", "user: última", "assistant: fim"]
    merged = {"type": "sedã", "budget": 50000.0, "extras": None, "z": 1, "a": [1, 2]}
    assert ctx[1] == json.dumps(merged, sort_keys=True)
    assert ctx[2] == '{"budget": 1.5, "nome": "Bruno"}'
    assert ctx[3:] == (8, 7, "qualifying", dt.datetime(2026, 3, 4, 10, 0, 21))


def test_a_failure_half_way_leaves_the_file_as_it_was(chatbot, monkeypatch):
    engine, tmp = chatbot
    path = tmp / "a.duckdb"
    _copy(engine, path, chunk_rows=2)
    _add_awkward_session(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE messages SET content = 'mudou' WHERE message_id = 'm1'"))
    before = _dump(path)

    real, calls = analytics._load_messages, []

    def fail_on_third_chunk(duck, chunk, *args):
        calls.append(chunk)
        real(duck, chunk, *args)
        if len(calls) == 3:
            raise RuntimeError("PostgreSQL went away")

    monkeypatch.setattr(analytics, "_load_messages", fail_on_third_chunk)
    with pytest.raises(RuntimeError, match="went away"):
        _copy(engine, path, chunk_rows=2)
    assert len(calls) == 3 and not any(c.exists() for c in calls)  # chunk files never outlive the copy
    assert _dump(path) == before

    monkeypatch.setattr(analytics, "_load_messages", real)
    retried = _copy(engine, path, chunk_rows=2)
    assert retried["messages"] == 9 and retried["sessions"] == 2
    fresh = tmp / "fresh.duckdb"
    _copy(engine, fresh, chunk_rows=1000)
    assert _dump(path)["message_history"] == _dump(fresh)["message_history"]
    assert _dump(path)["conversation_context"] == _dump(fresh)["conversation_context"]


def test_batches_and_an_overlapping_window_change_nothing(chatbot, monkeypatch):
    engine, tmp = chatbot
    _add_awkward_session(engine)
    whole, batched = tmp / "whole.duckdb", tmp / "batched.duckdb"
    _copy(engine, whole, chunk_rows=1000)
    monkeypatch.setattr(analytics, "BATCH_ROWS", 3)  # several batches of sessions, most with one session
    _copy(engine, batched, chunk_rows=4)
    assert _dump(batched) == _dump(whole)

    window = plan_window(engine, batched)
    again = copy_window(engine, batched, {"start": None, "end": [window["start"][0], window["start"][1]]})
    assert again["messages"] == 17  # the whole table again, over rows already copied
    assert _dump(batched) == _dump(whole)
    with duckdb.connect(str(batched), read_only=True) as conn:
        assert conn.execute(
            "SELECT count(*), count(DISTINCT message_id) FROM message_history"
        ).fetchone() == (17, 17)


def test_long_replies_copy_within_a_small_memory_cap(chatbot, monkeypatch):
    """Only each session's latest turns' texts are held: replies of 4,000 characters (80 MB in all) copy
    in one batch under a 64 MB cap, and their summary lines are Python's, whitespace collapsed."""
    engine, tmp = chatbot
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sessions (session_id, user_id, state) SELECT 'long-' || g, min(u.id), 'qualifying'"
                " FROM generate_series(1, 2000) g, users u GROUP BY g"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO messages (message_id, session_id, role, content, created_at, updated_at)"
                " SELECT 'long-' || s.id || '-' || k, s.id, CASE WHEN k % 2 = 0 THEN 'user' ELSE 'assistant' END,"
                " repeat(E'Temos  opções\\n\\tde ' || k || ' ', 200), :at + k * interval '1 second', :at"
                " FROM sessions s, generate_series(0, 9) k WHERE s.session_id LIKE 'long-%'"
            ),
            {"at": AT},
        )
    monkeypatch.setattr(analytics, "COPY_MEMORY_LIMIT", "64MB")
    monkeypatch.setattr(analytics, "REFRESH_THREADS", 1)
    path = tmp / "long.duckdb"
    copied = _copy(engine, path, chunk_rows=5000)
    assert copied["messages"] == 20_000 + 9
    with duckdb.connect(str(path), read_only=True) as conn:
        summary = conn.execute(
            "SELECT summary FROM conversation_context WHERE session_id = 'long-7'"
        ).fetchone()[0]
    expected = []
    for k in range(4, 10):
        text = " ".join((f"Temos  opções\n\tde {k} " * 200).split())
        role = "user" if k % 2 == 0 else "assistant"
        expected.append(f"{role}: {text[: analytics.SUMMARY_CHARS]}…")
    assert summary.splitlines() == expected
