"""Semantic search over message_embeddings: chatbot_analytics embeds the copied conversations, a
paraphrase finds the message it paraphrases, from Python and from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest

from include.chatbot.alembic_cli import migrate_postgres
from include.chatbot.config import POSTGRES_CONN_ID
from include.chatbot.embeddings import HASHING_MODEL, embed_messages, load_embedder, search
from include.common.db import REPO_ROOT, engine_for
from sandbox.dagrun import run_dag
from sandbox.worlds import chatbot as world
from tests.conftest import set_connection

PARAPHRASES = {
    "quanto custa o corolla hibrido": "m5",
    "I want a family SUV under 80 thousand": "m1",
    "câmbio automático cor prateada": "m3",
    "can it be diesel": "m9",
}


@pytest.fixture(autouse=True)
def _airflow(airflow_db):
    return airflow_db


@pytest.fixture
def copied(postgres_conn, data_dir, monkeypatch):
    engine = engine_for(postgres_conn(POSTGRES_CONN_ID))
    migrate_postgres(engine, "001")
    world.populate(engine)
    engine.dispose()
    set_connection(monkeypatch, "chatbot_duckdb", "duckdb", host="analytics.duckdb")
    outcome = run_dag("chatbot_analytics")
    assert outcome.state == "success", outcome.task_states
    return outcome, data_dir / "analytics.duckdb"


def test_dag_embeds_and_a_paraphrase_finds_its_message(copied):
    outcome, path = copied
    assert outcome.summary["embeddings"] == {"model_name": "wordllama-l2_supercat_256", "embedded": 9}
    embedder = load_embedder()
    with duckdb.connect(str(path)) as duck:
        assert duck.execute("SELECT DISTINCT model_name FROM message_embeddings").fetchall() == [
            ("wordllama-l2_supercat_256",)
        ]
        assert embed_messages(duck, embedder) == 0  # nothing new: nothing embedded again
        for query, message_id in PARAPHRASES.items():
            hits = search(duck, query, embedder, limit=3)
            assert hits[0]["message_id"] == message_id, (query, hits)
        assert hits[0]["phone_number"] == "+5511990000001" and 0 < hits[0]["score"] <= 1

        # The fallback model: re-embeds under its own name, and finds the same messages.
        fallback = load_embedder(prefer_wordllama=False)
        assert fallback.model_name == HASHING_MODEL and embed_messages(duck, fallback) == 9
        assert embed_messages(duck, fallback) == 0
        for query, message_id in PARAPHRASES.items():
            assert search(duck, query, fallback, limit=1)[0]["message_id"] == message_id, query
        assert search(duck, "corolla", embedder) == []  # other model's vectors are never compared
        embed_messages(duck, embedder)

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "include.chatbot.search",
            "quanto custa o corolla hibrido",
            "--limit",
            "2",
            "--duckdb",
            str(path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    hits = [json.loads(line) for line in out.stdout.splitlines()]
    assert [h["message_id"] for h in hits][:1] == ["m5"] and len(hits) == 2
    assert hits[0]["session_id"] == "s-bruno-1"


def test_cli_on_a_missing_file_says_what_to_run(tmp_path):
    missing = tmp_path / "none.duckdb"
    out = subprocess.run(
        [sys.executable, "-m", "include.chatbot.search", "corolla", "--duckdb", str(missing)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "run the chatbot_db_init and chatbot_analytics DAGs" in out.stderr
    assert not missing.exists()
