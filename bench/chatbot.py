"""Benchmark: chatbot_analytics' copy of ``--messages`` PostgreSQL messages into a fresh DuckDB file.

A throwaway PostgreSQL database with the chatbot schema (revision 001) is filled server-side with
``--messages`` messages (10 per session, 5 sessions per user, over 30 days). Contenders, each in a
fresh spawned process so that its peak RSS (``VmHWM``) is its own, each into a new DuckDB file:

* **ours**: :func:`include.chatbot.analytics.copy_window` of the whole table (streamed in chunks,
  replace by ``message_id``, response times and contexts set-based, watermark, one transaction);
* **limit**: the fastest bulk path available offline, with no logic: PostgreSQL
  ``COPY (same SELECT) TO STDOUT (FORMAT csv)`` into one file, then DuckDB ``read_csv`` into a table
  of the same columns without keys or indexes;
* **baseline**: row by row, as a naive copy would: fetch one row, ``INSERT`` it into
  ``message_history``, on a sample of ``--sample`` rows (rows/s extrapolated to the full size).

ours and limit alternate, ``--repeat`` times each (medians). Then ours ``--repeat`` times on a window of
a quarter of the table, with the copy's default DuckDB memory cap (``COPY_MEMORY_LIMIT``), to show
whether its peak RSS depends on the table's size: the highest peak at each size is compared, as a
run's peak varies by some 30 MB with how DuckDB's two threads meet. Both sizes run once more without
the cap (DuckDB's own default, 80% of RAM). Then embeddings per second of the embedder the DAG loads
(WordLlama's bundled model if installed, else the hashing fallback) and of the fallback, on
``--embed`` message texts. Last, ours once more on a table of twice the messages: a quarter of the
table may stay below the cap, where the peak still grows with the window; twice the table shows
whether it grows once the cap binds. Targets: ours >= 0.7x the limit, peak RSS independent of size
(within 1.25x from N/4 to N, and from N to 2N).

    python -m bench.chatbot --messages 200000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from bench.common import FreshWorker, peak_rss_mb, postgres_database, verdict

#: The copy's DuckDB memory cap of the extra runs: None, DuckDB's own default (80% of RAM).
UNCAPPED = None
#: Targets: ours / limit in rows/s (at least), peak RSS at N / at N/4 (at most).
TARGET_RATIO, TARGET_RSS_GROWTH = 0.7, 1.25
_DEFAULT = object()
_FILL = [
    "INSERT INTO users (id, phone_number, name, consent_given) "
    "SELECT g, '+5511' || lpad(g::text, 9, '0'), 'Cliente ' || g, true FROM generate_series(1, :users) g",
    "INSERT INTO sessions (id, session_id, user_id, state, turn_id, user_profile, created_at, updated_at) "
    "SELECT g, 'sess-' || g, 1 + (g - 1) / 5, (ARRAY['greeting', 'qualifying', 'recommending'])[1 + g % 3], "
    "g % 9, jsonb_build_object('budget', 40000 + (g % 50) * 2000, 'use', 'família'), t, t "
    "FROM generate_series(1, :sessions) g, "
    "LATERAL (SELECT timestamptz '2026-01-01' + (g % 30) * interval '1 day' + (g % 80000) * interval '1 second') s(t)",
    "INSERT INTO messages (id, message_id, session_id, role, content, intent, sentiment, confidence, entities, "
    "created_at, updated_at) "
    "SELECT g, 'msg-' || g, s, CASE WHEN g % 2 = 1 THEN 'user' ELSE 'assistant' END, "
    "CASE WHEN g % 2 = 1 THEN 'Quero um ' || k || ' para a família até ' || (g % 90) || ' mil, de preferência '"
    " || (ARRAY['prata', 'preto', 'branco'])[1 + g % 3] "
    "ELSE 'Temos ' || (g % 7) || ' opções de ' || k || ' nessa faixa; o mais procurado é o modelo ' || g % 13 END, "
    "CASE WHEN g % 2 = 1 THEN 'buy_car' END, CASE WHEN g % 2 = 1 THEN 'neutral' END, "
    "CASE WHEN g % 2 = 1 THEN (g % 100) / 100.0 END, "
    "CASE WHEN g % 2 = 1 THEN jsonb_build_object('type', k, 'budget', (g % 90) * 1000) ELSE '{}' END, t, t "
    "FROM generate_series(1, :messages) g, "
    "LATERAL (SELECT 1 + (g - 1) / 10, (ARRAY['SUV', 'sedã', 'hatch', 'picape'])[1 + g % 4]) a(s, k), "
    "LATERAL (SELECT timestamptz '2026-01-01' + (s % 30) * interval '1 day' + (s % 80000) * interval '1 second'"
    " + ((g - 1) % 10) * interval '20 second') b(t)",
    "ANALYZE",
]


def fill(url: str, messages: int) -> float:
    """Seconds to create the schema and ``messages`` messages on the server."""
    from include.chatbot.alembic_cli import migrate_postgres

    engine = sa.create_engine(url)
    started = time.perf_counter()
    migrate_postgres(engine, "001")
    sessions = -(-messages // 10)
    with engine.begin() as conn:
        for statement in _FILL:
            conn.execute(
                sa.text(statement), {"users": -(-sessions // 5), "sessions": sessions, "messages": messages}
            )
    engine.dispose()
    return time.perf_counter() - started


def _window(url: str, rows: int | None) -> dict:
    """The whole table, or the keyset window of its first ``rows`` messages."""
    from include.chatbot.analytics import _iso

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        newest = "ORDER BY updated_at DESC, id DESC LIMIT 1"
        end = conn.execute(
            sa.text(
                "SELECT updated_at AT TIME ZONE 'UTC', id FROM messages "
                + ("ORDER BY updated_at, id OFFSET :n LIMIT 1" if rows else newest)
            ),
            {"n": (rows or 1) - 1},
        ).one()
    engine.dispose()
    return {"start": None, "end": [_iso(end[0]), end[1]]}


def _ours(
    url: str, duckdb_file: str, window: dict, memory_limit: object = _DEFAULT
) -> tuple[float, float, int, dict]:
    """copy_window, with the seconds per phase it logs (DuckDB's memory cap changed if asked)."""
    import logging

    from include.chatbot import analytics
    from include.chatbot.analytics import copy_window, log

    if memory_limit is not _DEFAULT:
        analytics.COPY_MEMORY_LIMIT = memory_limit

    phases: dict = {}
    handler = logging.Handler()
    handler.emit = lambda record: phases.update(record.args[-1])
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    engine = sa.create_engine(url)
    started = time.perf_counter()
    copied = copy_window(engine, duckdb_file, window)
    seconds = time.perf_counter() - started
    engine.dispose()
    return seconds, peak_rss_mb(), copied["messages"], phases


def _limit(url: str, duckdb_file: str, window: dict) -> tuple[float, float, int]:
    """COPY to a CSV file, then read_csv into a plain table: no chunks, keys, indexes or logic."""
    import duckdb
    import psycopg

    from include.chatbot.analytics import _MESSAGES, _WINDOW, MESSAGE_COLUMNS, _ts
    from include.chatbot.pg_csv import read_csv

    started = time.perf_counter()
    csv = Path(duckdb_file).with_suffix(".csv")
    with psycopg.connect(url.replace("+psycopg", "")) as pg, csv.open("wb") as out:
        with pg.cursor().copy(
            _MESSAGES.format(window=_WINDOW.format(after="")),
            {"end_ts": _ts(window["end"][0]), "end_id": window["end"][1]},
        ) as copy:
            for block in copy:
                out.write(block)
    with duckdb.connect(duckdb_file) as duck:
        duck.execute(f"CREATE TABLE messages AS SELECT * FROM {read_csv(csv, MESSAGE_COLUMNS)}")
        rows = duck.execute("SELECT count(*) FROM messages").fetchone()[0]
    csv.unlink()
    return time.perf_counter() - started, peak_rss_mb(), rows


def _baseline(url: str, duckdb_file: str, sample: int) -> tuple[float, float, int]:
    """Fetch a row, insert a row: the copy without bulk paths, on the first ``sample`` messages."""
    import psycopg

    from include.chatbot.analytics import _MESSAGES, MESSAGE_COLUMNS
    from include.chatbot.duckdb_store import connect, migrate

    select = _MESSAGES.removeprefix("COPY (").removesuffix(") TO STDOUT (FORMAT csv)")
    select = select.format(window="m.id <= %(end_id)s")
    insert = f"INSERT INTO message_history ({', '.join(MESSAGE_COLUMNS)}) VALUES ({', '.join('?' * len(MESSAGE_COLUMNS))})"
    started = time.perf_counter()
    rows = 0
    with psycopg.connect(url.replace("+psycopg", "")) as pg, connect(duckdb_file) as duck:
        migrate(duck)
        cursor = pg.cursor(name="rows")
        cursor.execute(select, {"end_id": sample})
        while (row := cursor.fetchone()) is not None:
            duck.execute(insert, [*row[:10], json.dumps(row[10], sort_keys=True), *row[11:]])
            rows += 1
    return time.perf_counter() - started, peak_rss_mb(), rows


def _embed(url: str, count: int) -> dict[str, float]:
    """Embeddings per second of the DAG's embedder and of the fallback on ``count`` message texts."""
    import psycopg

    from include.chatbot.embeddings import HASHING_MODEL, hashing_embed, load_embedder

    with psycopg.connect(url.replace("+psycopg", "")) as pg:
        texts = [r[0] for r in pg.execute("SELECT content FROM messages ORDER BY id LIMIT %s", [count])]
    out = {}
    embedder = load_embedder()
    for name, embed in {embedder.model_name: embedder.embed, HASHING_MODEL: hashing_embed}.items():
        embed(texts[:100])
        seconds = statistics.median(_timed(embed, texts) for _ in range(3))
        out[name] = len(texts) / seconds
    return out


def _timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def _warm(url: str) -> float:
    """Imports every contender needs, done before the timed run: numpy is what DuckDB loads when the
    copy registers its Python function, once per process, as a task's process does at its first copy."""
    import duckdb  # noqa: F401
    import numpy  # noqa: F401
    import psycopg  # noqa: F401

    import include.chatbot.analytics  # noqa: F401

    return peak_rss_mb()


def _fresh(url: str, fn, *args):
    worker = FreshWorker(url, warm=_warm)
    worker.start()
    return worker.run(fn, *args), worker.idle_mb


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages in PostgreSQL (1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of ours and of the limit (3)")
    parser.add_argument("--sample", type=int, default=20_000, help="rows of the row-by-row baseline (20,000)")
    parser.add_argument("--embed", type=int, default=20_000, help="texts embedded (20,000)")
    args = parser.parse_args()
    n = args.messages
    from include.chatbot.analytics import COPY_MEMORY_LIMIT

    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="bench-chatbot-") as tmp,
        postgres_database(f"bench_{uuid.uuid4().hex[:10]}") as url,
    ):
        fill_s = fill(url, n)
        whole, quarter = _window(url, None), _window(url, n // 4)
        files = iter(str(Path(tmp) / f"{i}.duckdb") for i in range(1000))
        ours, limit, phases = [], [], []
        for _ in range(args.repeat):
            (seconds, rss, rows, laps), idle = _fresh(url, _ours, next(files), whole)
            assert rows == n, rows
            ours.append((seconds, rss))
            phases.append(laps)
            (seconds, rss, rows), _ = _fresh(url, _limit, next(files), whole)
            assert rows == n, rows
            limit.append((seconds, rss))
        quarters = [_fresh(url, _ours, next(files), quarter)[0] for _ in range(args.repeat)]
        q_rows = quarters[0][2]
        q_seconds = statistics.median(q[0] for q in quarters)
        q_rss = max(q[1] for q in quarters)  # the highest peak at each size, as for ours at N
        (c_seconds, c_rss, _, _), _ = _fresh(url, _ours, next(files), whole, UNCAPPED)
        (cq_seconds, cq_rss, _, _), _ = _fresh(url, _ours, next(files), quarter, UNCAPPED)
        (b_seconds, b_rss, b_rows), _ = _fresh(url, _baseline, next(files), min(args.sample, n))
        embeds = _fresh(url, _embed, args.embed)[0]
    with postgres_database(f"bench_{uuid.uuid4().hex[:10]}") as url, tempfile.TemporaryDirectory() as tmp:
        fill(url, 2 * n)  # a table twice the size: does peak RSS still grow once the cap binds?
        (d_seconds, d_rss, d_rows, _), _ = _fresh(
            url, _ours, str(Path(tmp) / "2n.duckdb"), _window(url, None)
        )
        assert d_rows == 2 * n, d_rows
    load_after = os.getloadavg()
    ours_s = statistics.median(s for s, _ in ours)
    limit_s = statistics.median(s for s, _ in limit)
    ours_rss, limit_rss = max(r for _, r in ours), max(r for _, r in limit)
    print(f"\n{n:,} messages in PostgreSQL (filled in {fill_s:.0f} s); idle worker {idle:.0f} MB")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}; {os.cpu_count()} cores")
    print(f"{'contender':<44} {'rows':>10} {'median s':>9} {'rows/s':>10} {'peak RSS MB':>12}")
    table = [
        (f"ours: copy_window (memory cap {COPY_MEMORY_LIMIT})", n, ours_s, ours_rss),
        ("limit: COPY CSV -> DuckDB read_csv, no logic", n, limit_s, limit_rss),
        (f"baseline: row by row (sample of {b_rows:,}, 1 run)", b_rows, b_seconds, b_rss),
        ("ours on a quarter of the table", q_rows, q_seconds, q_rss),
        ("ours on a table twice the size (1 run)", d_rows, d_seconds, d_rss),
        ("ours, no memory cap (1 run)", n, c_seconds, c_rss),
        ("ours, no memory cap, a quarter (1 run)", q_rows, cq_seconds, cq_rss),
    ]
    for label, rows, seconds, rss in table:
        print(f"{label:<44} {rows:>10,} {seconds:>9.2f} {rows / seconds:>10,.0f} {rss:>12.0f}")
    laps = {k: statistics.median(p[k] for p in phases) for k in phases[0]}
    print("ours, median seconds per phase: " + ", ".join(f"{k} {v:.2f}" for k, v in laps.items()))
    for name, per_s in embeds.items():
        print(f"embeddings with {name}: {per_s:,.0f} texts/s ({args.embed:,} texts, median of 3)")
    ratio = limit_s / ours_s
    ratio_ok = verdict("ours / limit (rows/s)", ratio, TARGET_RATIO)
    rss_ok = verdict("peak RSS at N / at N/4", ours_rss / q_rss, TARGET_RSS_GROWTH, higher_is_better=False)
    double_ok = verdict("peak RSS at 2N / at N", d_rss / ours_rss, TARGET_RSS_GROWTH, higher_is_better=False)
    verdict(
        "peak RSS at N / at N/4, no memory cap", c_rss / cq_rss, TARGET_RSS_GROWTH, higher_is_better=False
    )
    figures = {
        "messages": n,
        "ours_rows_per_s": n / ours_s,
        "ours_seconds": ours_s,
        "ours_rss_mb": ours_rss,
        "ours_quarter_rss_mb": q_rss,
        "ours_rss_growth": ours_rss / q_rss,
        "ours_double_rss_mb": d_rss,
        "ours_double_rows_per_s": d_rows / d_seconds,
        "ours_rss_growth_to_double": d_rss / ours_rss,
        "memory_limit": COPY_MEMORY_LIMIT,
        "uncapped_rows_per_s": n / c_seconds,
        "uncapped_rss_mb": c_rss,
        "uncapped_quarter_rss_mb": cq_rss,
        "limit_rows_per_s": n / limit_s,
        "limit_seconds": limit_s,
        "limit_rss_mb": limit_rss,
        "baseline_rows_per_s": b_rows / b_seconds,
        "baseline_sample_rows": b_rows,
        "baseline_rss_mb": b_rss,
        "ours_over_limit": ratio,
        "targets": {
            "ours_over_limit": TARGET_RATIO,
            "ours_rss_growth": TARGET_RSS_GROWTH,
            "ours_rss_growth_to_double": TARGET_RSS_GROWTH,
        },
        "met": {
            "ours_over_limit": ratio_ok,
            "ours_rss_growth": rss_ok,
            "ours_rss_growth_to_double": double_ok,
        },
        "ours_over_baseline": (n / ours_s) / (b_rows / b_seconds),
        "ours_phases_s": laps,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "embeddings_per_s": {name: round(v, 1) for name, v in embeds.items()},
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
