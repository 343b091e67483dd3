"""Benchmark of dialog_etl's per-group work on the local MariaDB (``make bench``).

One Shanghai day of ``--rows`` utterances (about 20 per call, in 20 groups) is loaded four ways into
an empty ``prepared_conversations`` with ``--workers`` groups at a time, each repeated ``--repeat``
times, interleaved (medians):

* pushdown: :func:`include.dialog.pushdown.load_group_pushdown` per group (the path dialog_etl takes
  when source and target share a server: the same rules in ``INSERT ... SELECT`` statements), in
  worker processes as Airflow runs mapped tasks;
* streaming: :func:`include.dialog.etl.load_group` per group (streamed, batched insert-ignore), the
  path for two servers, in worker processes too;
* baseline: what the original service did: ``ETL_MAX_WORKERS`` threads of one process, each taking a
  group, fetching its rows, then for every call checking whether its call_id exists and inserting it,
  one commit each;
* limit: the server alone, ``INSERT INTO ... SELECT ... GROUP BY call_id`` with JSON_ARRAYAGG, one
  statement per group on parallel connections.

Then both paths again on twice the rows, to show that peak RSS does not grow with the day. The load
average is printed before and after (the machine is shared) and goes into the JSON line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import functools
import json
import multiprocessing as mp
import os
import uuid
from collections.abc import Callable

import sqlalchemy as sa

from bench.common import MARIADB_URL, Contender, interleave, mariadb_database, peak_rss_mb, report, verdict
from include.dialog.conversation import Utterance, assemble, speaking_order
from include.dialog.etl import find_groups, load_group
from include.dialog.pushdown import load_group_pushdown, same_server
from include.dialog.schema import ensure_target_tables, people_customer_dialog
from sandbox.worlds.dialog import fill_source, generate

DAY = dt.date(2024, 6, 1)
GROUPS = 20
#: Ours' speed as a share of the server-side statement's that counts as the target met.
LIMIT_SHARE = 0.85


def _db_names() -> tuple[str, str]:
    """The run's own database names (others use the server too); the worker processes, started later,
    inherit them through the environment."""
    suffix = os.environ.setdefault("DIALOG_BENCH_DB_SUFFIX", uuid.uuid4().hex[:8])
    return f"bench_dialog_src_{suffix}", f"bench_dialog_dst_{suffix}"


@functools.cache
def _engines() -> tuple[sa.Engine, sa.Engine]:
    """One pair per worker, as one task process holds one pair."""
    src_db, dst_db = _db_names()
    return sa.create_engine(MARIADB_URL.format(db=src_db)), sa.create_engine(MARIADB_URL.format(db=dst_db))


def _ours(group: str) -> float:
    source, target = _engines()
    load_group(source, target, DAY, group, "bench")
    return peak_rss_mb()


def _pushdown(group: str) -> float:
    source, target = _engines()
    load_group_pushdown(source, target, DAY, group, "bench")
    return peak_rss_mb()


def _baseline(group: str) -> float:
    """The original DialogETLService's shape: read the group, then check-then-insert per call."""
    source, target = _engines()
    src = people_customer_dialog
    with source.connect() as conn:
        rows = conn.execute(
            sa.select(
                src.c.id,
                src.c.call_id,
                src.c.group_code,
                src.c.speaker,
                src.c.content,
                src.c.seq,
                src.c.created_at,
            )
            .where(
                src.c.group_code == group,
                src.c.created_at >= DAY,
                src.c.created_at < DAY + dt.timedelta(days=1),
            )
            .order_by(src.c.call_id, src.c.seq)
        ).all()
    calls: dict[str, list[Utterance]] = {}
    for row in rows:
        calls.setdefault(row.call_id, []).append(Utterance(*row))
    with target.connect() as conn:
        for call_id, utterances in calls.items():
            if conn.exec_driver_sql(
                "SELECT 1 FROM prepared_conversations WHERE call_id = %s", (call_id,)
            ).first():
                continue
            conversation, _ = assemble(speaking_order(utterances))
            conversation.update(etl_run_id="baseline", loaded_at=dt.datetime.now())
            conn.execute(
                sa.text(
                    "INSERT INTO prepared_conversations (call_id, group_code, dialog_date, turn_count, turns_json,"
                    " dialog_text, first_time, last_time, etl_run_id, loaded_at) VALUES (:call_id, :group_code,"
                    " :dialog_date, :turn_count, :turns_json, :dialog_text, :first_time, :last_time, :etl_run_id,"
                    " :loaded_at)"
                ),
                conversation,
            )
            conn.commit()
    return peak_rss_mb()


LIMIT_SQL = """
INSERT INTO prepared_conversations (call_id, group_code, dialog_date, turn_count, turns_json, dialog_text,
                                    first_time, last_time, etl_run_id, loaded_at)
SELECT call_id, MIN(group_code), DATE(MIN(created_at)), COUNT(*),
       JSON_ARRAYAGG(JSON_OBJECT('seq', seq, 'time', DATE_FORMAT(created_at, '%%Y-%%m-%%d %%H:%%i:%%s'),
                                 'speaker', speaker, 'group_code', group_code, 'content', content)
                     ORDER BY created_at, seq),
       GROUP_CONCAT(CONCAT('[', TIME(created_at), '] ', speaker, ': ', content) ORDER BY created_at, seq SEPARATOR '\\n'),
       MIN(created_at), MAX(created_at), 'limit', UTC_TIMESTAMP()
FROM people_customer_dialog
WHERE created_at >= %s AND created_at < %s AND group_code = %s
GROUP BY call_id
"""


def _limit(group: str) -> None:
    _, target = _engines()
    with target.begin() as conn:
        conn.exec_driver_sql("SET SESSION group_concat_max_len = 16777216")
        conn.exec_driver_sql(
            LIMIT_SQL.replace(
                "FROM people_customer_dialog", f"FROM `{_db_names()[0]}`.people_customer_dialog"
            ),
            (DAY, DAY + dt.timedelta(days=1), group),
        )


def _fan_out(fn, groups: list[str], workers: int) -> float | None:
    """Run ``fn`` per group in fresh worker processes; return the largest peak RSS they report."""
    with mp.get_context("spawn").Pool(workers) as pool:
        peaks = pool.map(fn, groups, chunksize=1)
    return max(peaks) if peaks and peaks[0] is not None else None


def _in_threads(fn, groups: list[str], workers: int) -> float:
    """Run ``fn`` per group on a thread pool of one fresh process, as the original service did."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_thread_pool, (fn, groups, workers))


def _thread_pool(fn, groups: list[str], workers: int) -> float:
    with concurrent.futures.ThreadPoolExecutor(workers) as executor:
        list(executor.map(fn, groups))
    return peak_rss_mb()


def _fill(engine: sa.Engine, rows: int) -> int:
    calls = rows // 20 // GROUPS
    return fill_source(
        engine,
        generate([DAY], groups=GROUPS, calls_per_group_day=calls, turns=(10, 30), edge_cases=False, seed=11),
        batch=20000,
    )


def _truncate(engine: sa.Engine) -> Callable[[], None]:
    def reset() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE TABLE prepared_conversations")

    return reset


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-repeat", type=int, default=1)
    args = parser.parse_args()
    load_before = _load()
    print(f"load average before: {load_before}")
    src_db, dst_db = _db_names()
    assert same_server(*_engines()), "the pushdown path needs source and target on one server"

    with mariadb_database(src_db) as source, mariadb_database(dst_db) as target:
        total = _fill(source, args.rows)
        groups = find_groups(source, DAY)
        ensure_target_tables(target)
        print(
            f"dialog_etl benchmark: {total:,} utterances, {len(groups)} groups, {args.workers} workers, MariaDB"
        )
        push, ours, base, limit = interleave(
            [
                Contender(
                    "pushdown: load_group_pushdown (INSERT ... SELECT)",
                    total,
                    lambda: _fan_out(_pushdown, groups, args.workers),
                    args.repeat,
                ),
                Contender(
                    "streaming: load_group (stream + insert-ignore)",
                    total,
                    lambda: _fan_out(_ours, groups, args.workers),
                    args.repeat,
                ),
                Contender(
                    "baseline: check call_id, then insert, per call",
                    total,
                    lambda: _in_threads(_baseline, groups, args.workers),
                    args.baseline_repeat,
                ),
                Contender(
                    "limit: INSERT ... SELECT ... GROUP BY call_id",
                    total,
                    lambda: _fan_out(_limit, groups, args.workers),
                    args.repeat,
                ),
            ],
            _truncate(target),
        )
        with target.connect() as conn:
            loaded = conn.scalar(sa.text("SELECT COUNT(*) FROM prepared_conversations"))
        report(f"{loaded:,} conversations (last run) from {total:,} rows", [push, ours, base, limit])

    with mariadb_database(src_db) as source, mariadb_database(dst_db) as target:
        total2 = _fill(source, 2 * args.rows)
        groups2 = find_groups(source, DAY)
        ensure_target_tables(target)
        push2, ours2 = interleave(
            [
                Contender(
                    "pushdown at twice the rows",
                    total2,
                    lambda: _fan_out(_pushdown, groups2, args.workers),
                    1,
                ),
                Contender(
                    "streaming at twice the rows", total2, lambda: _fan_out(_ours, groups2, args.workers), 1
                ),
            ],
            _truncate(target),
        )
        report("memory when the day doubles", [push, push2, ours, ours2])
    load_after = _load()
    print(f"load average after: {load_after}")

    print("\ntargets")
    results = [
        verdict("pushdown: share of the server-side limit's speed", limit.median / push.median, LIMIT_SHARE),
        verdict("pushdown: peak RSS growth at 2x rows (ratio)", push2.rss_mb / push.rss_mb, 1.1, False),
        verdict("streaming: speed-up over the baseline (x)", base.median / ours.median, 5),
        verdict("streaming: share of the server-side limit's speed", limit.median / ours.median, LIMIT_SHARE),
        verdict("streaming: peak RSS per worker (MB)", ours.rss_mb, 300, higher_is_better=False),
        verdict("streaming: peak RSS growth at 2x rows (ratio)", ours2.rss_mb / ours.rss_mb, 1.1, False),
    ]
    print(
        json.dumps(
            {
                "rows": total,
                "pushdown_s": round(push.median, 2),
                "streaming_s": round(ours.median, 2),
                "baseline_s": round(base.median, 2),
                "limit_s": round(limit.median, 2),
                "pushdown_share_of_limit": round(limit.median / push.median, 3),
                "streaming_share_of_limit": round(limit.median / ours.median, 3),
                "pushdown_speed_up_over_streaming": round(ours.median / push.median, 2),
                "streaming_speed_up_over_baseline": round(base.median / ours.median, 2),
                "pushdown_rss_mb": push.rss_mb,
                "pushdown_2x_rss_mb": push2.rss_mb,
                "streaming_rss_mb": ours.rss_mb,
                "streaming_2x_rss_mb": ours2.rss_mb,
                "load_average": {"before": load_before, "after": load_after},
                "targets": {
                    "pushdown_share_of_limit": LIMIT_SHARE,
                    "rss_growth_at_2x": 1.1,
                    "streaming_speed_up_over_baseline": 5,
                    "streaming_share_of_limit": LIMIT_SHARE,
                    "streaming_rss_mb": 300,
                },
                "pushdown_targets_met": all(results[:2]),
                "all_targets_met": all(results),
            }
        )
    )


if __name__ == "__main__":
    main()
