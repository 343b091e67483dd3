"""Benchmark of product_etl's batches on the local MariaDB (``python -m bench.product_etl``).

``--rows`` staging rows of distinct products (the synthetic feed of :mod:`sandbox.worlds.product`:
messy spellings, 500 rows per ``src_updated_at``, one row in 1,000 broken) are processed in two
phases, each by three contenders from the same starting state, ``--repeat`` times (medians), every run
in a fresh spawned process that reports its own peak RSS:

1. first full load into an empty ``products`` (after ``migrate``);
2. "5% changed": after a full load, a new version (new price) of 5% of the products is appended to
   the staging table, all stamped with one ``src_updated_at``, and only those rows are processed,
   resuming from the watermark.

Contenders (:mod:`bench.product_contenders`):

* ours: :func:`include.product.etl.run_batches` with ``limit`` 1000: keyset read, normalize, one bulk
  upsert of what changed, change log, rejects and watermark, one transaction per batch;
* baseline: the plan's style (seed P-ETL-2, section C4): batches of 1000 rows, and per record a look-up
  by (brand_code, sku), a data_version comparison, an UPDATE or INSERT and a change-log INSERT, one
  statement each, committed with the watermark per batch. Its cursor is the plan's with the ``id``
  tie-break added: the bare ``src_updated_at > watermark`` would stop after the first 1000 of phase 2's
  rows (they share one timestamp), so it would not do the same work. It is slow, so it runs on the
  first ``--baseline-rows`` rows only (phase 2: the same share of the changed rows); rows/s stays
  comparable;
* limit: what this client cannot beat: the same rows read in batches of 1000 and normalized, then one
  multi-row ``INSERT ... ON DUPLICATE KEY UPDATE`` per batch: no comparison, no change log, no
  rejects, no watermark.

Memory: ours also runs the full load with ``limit`` 4000, whose peak should rise with the batch, and
with ``--rss-check`` on twice the rows, whose peak should not rise with the table.

Where the time goes: after phase 1, ours runs once more with each step timed, and ours and the limit
are charged their client and server CPU; from these, the best share of the limit ours could reach
(:mod:`bench.product_profile`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Callable

import sqlalchemy as sa

from bench import product_profile
from bench.common import Contender, FreshWorker, Measure, interleave, mariadb_database, report, verdict
from bench.product_contenders import BATCH, FIRST_AT, baseline, limit, ours, prepare, warm
from include.common.watermark import Watermark, load_watermark, save_watermark
from include.product.etl import WATERMARK_NAME
from include.product.migrations import migrate
from sandbox.worlds.product import changed_versions, fill_staging, generate

#: Throwaway databases with a name of their own, so that runs by others on the same server never meet.
DB, DB_2X = (f"bench_product_{what}_{uuid.uuid4().hex[:8]}" for what in ("etl", "2x"))
BAD_EVERY = 1000
CHANGED_SHARE = 0.05
CHANGED_AT = FIRST_AT + dt.timedelta(days=1)  # after every first version
ETL_TABLES = ("products", "product_change_log", "product_etl_rejects", "etl_watermark")
#: Ours' speed as a share of the limit's that counts as the target met.
LIMIT_SHARE = 0.85
WARM_UP = False
"""No untimed warm-up run: the server reads with O_DIRECT, so its only cache is the buffer pool (128 MB
here), a fraction of the tables; a warm-up would cost a whole run and leave nothing warm that matters.
Every worker is started before its timing begins (:class:`FreshWorker`), so imports are not timed."""


# --- states to start from ---------------------------------------------------------------------------


def _fill(engine: sa.Engine, rows: int) -> int:
    total = fill_staging(engine, generate(rows, start=FIRST_AT, bad_every=BAD_EVERY), batch=5000)
    migrate(engine)
    return total


def _empty(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for table in ETL_TABLES:
            conn.exec_driver_sql(f"TRUNCATE TABLE {table}")


@dataclasses.dataclass
class FullLoad:
    """The state right after a full load, kept aside so that every phase-2 run starts from it.

    ``products`` is copied whole (``products_full``) and copied back: a run may update any product.
    The change log and rejects only grow, so rows past their full-load ends are deleted instead."""

    engine: sa.Engine
    mark: Watermark
    products: int
    last_log_id: int
    last_reject_id: int

    @classmethod
    def keep(cls, engine: sa.Engine) -> FullLoad:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS products_full")
            conn.exec_driver_sql("CREATE TABLE products_full LIKE products")
            conn.exec_driver_sql("INSERT INTO products_full SELECT * FROM products")
            return cls(
                engine,
                load_watermark(conn, WATERMARK_NAME),
                conn.exec_driver_sql("SELECT COUNT(*) FROM products_full").scalar(),
                conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM product_change_log").scalar(),
                conn.exec_driver_sql("SELECT COALESCE(MAX(id), 0) FROM product_etl_rejects").scalar(),
            )

    def describe(self) -> str:
        """What the full load left, as a check that it loaded everything."""
        with self.engine.connect() as conn:
            log, rejects = (
                conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar()
                for table in ("product_change_log", "product_etl_rejects")
            )
        return (
            f"{self.products:,} products, {log:,} change-log rows, {rejects:,} rejects,"
            f" watermark {self.mark.to_xcom()}"
        )

    def restore(self) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE TABLE products")
            conn.exec_driver_sql("INSERT INTO products SELECT * FROM products_full")
            conn.exec_driver_sql("DELETE FROM product_change_log WHERE id > %s", (self.last_log_id,))
            conn.exec_driver_sql("DELETE FROM product_etl_rejects WHERE id > %s", (self.last_reject_id,))
            save_watermark(conn, WATERMARK_NAME, self.mark)


def _then_start(reset: Callable[[], None], worker: FreshWorker) -> Callable[[], None]:
    def both() -> None:
        reset()
        worker.start()

    return both


# --- phases -----------------------------------------------------------------------------------------


def _contenders(worker: FreshWorker, rows: int, baseline_rows: int, repeat: int) -> list[Contender]:
    return [
        Contender("ours: run_batches, limit 1000", rows, lambda: worker.run(ours, BATCH), repeat),
        Contender(
            f"baseline: per record, first {baseline_rows:,} rows only",
            baseline_rows,
            lambda: worker.run(baseline, baseline_rows),
            repeat,
        ),
        Contender("limit: bulk upsert of normalized rows", rows, lambda: worker.run(limit), repeat),
    ]


def _normalizing(engine: sa.Engine, rows: int) -> float:
    """Prepare the limit's input and report what normalizing cost per row (microseconds)."""
    per_row = prepare(engine) / rows * 1e6
    print(f"normalizing alone: {per_row:.1f} us a row (the limit's rows are normalized beforehand)")
    return per_row


def _full_load_phase(
    engine, worker, total: int, baseline_rows: int, repeat: int
) -> tuple[list[Measure], float]:
    """Phase 1, plus ours with limit 4000 on the same footing (the memory table shows it).

    Ours with limit 4000 goes last, so the state left behind is ours' full load, which phase 2 keeps.
    """
    _empty(engine)
    normalizing = _normalizing(engine, total)
    contenders = _contenders(worker, total, baseline_rows, repeat)
    contenders.append(
        Contender("ours: run_batches, limit 4000", total, lambda: worker.run(ours, 4 * BATCH), repeat)
    )
    measures = interleave(contenders, _then_start(lambda: _empty(engine), worker), warm_up=WARM_UP)
    report(f"first full load: {total:,} staging rows into an empty products", measures[:3])
    return measures, normalizing


def _where_the_time_goes(engine, worker, total: int, normalizing_us: float) -> dict:
    """The limit charged its CPU, then ours profiled step by step, which leaves ours' full load behind
    for phase 2 (:mod:`bench.product_profile`)."""
    _then_start(lambda: _empty(engine), worker)()
    limit_run = worker.run(product_profile.charge_limit)
    _then_start(lambda: _empty(engine), worker)()
    ours_run = worker.run(product_profile.profile_ours)
    return product_profile.report(ours_run, limit_run, normalizing_us * total / 1e6)


def _changed_phase(
    engine, worker, total: int, baseline_rows: int, repeat: int
) -> tuple[list[Measure], int, float]:
    """Phase 2: keep the state of ours' last full load, append the new versions, time the three."""
    full = FullLoad.keep(engine)
    print(f"\nphase 2 starts from ours' full load: {full.describe()}")
    changed = changed_versions(engine, CHANGED_SHARE, CHANGED_AT)
    full.restore()
    normalizing = _normalizing(engine, changed)
    share = max(1, round(changed * baseline_rows / total))
    measures = interleave(
        _contenders(worker, changed, share, repeat), _then_start(full.restore, worker), warm_up=WARM_UP
    )
    report(
        f"5% changed: {changed:,} new versions appended, processed from the watermark"
        f" ({full.products:,} products stored)",
        measures,
    )
    return measures, changed, normalizing


def _twice_the_rows(worker_db: str, rows: int) -> Measure:
    """Ours on a staging table twice as large, in its own database."""
    with mariadb_database(worker_db) as engine:
        total = _fill(engine, rows)
        worker = FreshWorker(worker_db, warm=warm)
        (measure,) = interleave(
            [Contender(f"ours: limit 1000, {total:,} rows", total, lambda: worker.run(ours, BATCH), 1)],
            _then_start(lambda: _empty(engine), worker),
            warm_up=False,
        )
        return measure


# --- main -------------------------------------------------------------------------------------------


def _rates(ours: Measure, base: Measure, limit: Measure) -> dict[str, float]:
    return {
        "ours": round(ours.rows_per_s),
        "baseline": round(base.rows_per_s),
        "limit": round(limit.rows_per_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-rows", type=int, default=100_000, help="rows the baseline is timed on")
    parser.add_argument("--rss-check", action="store_true", help="also run ours on twice the rows")
    args = parser.parse_args()

    with mariadb_database(DB) as engine:
        total = _fill(engine, args.rows)
        baseline_rows = min(args.baseline_rows, total)
        worker = FreshWorker(DB, warm=warm)
        print(
            f"product_etl benchmark: {total:,} staging rows (1 in {BAD_EVERY:,} broken), batches of {BATCH},"
            f" MariaDB; the baseline is timed on the first {baseline_rows:,} rows of each phase's share,"
            " its rows/s comparable"
        )
        (ours, base, limit, ours_4000), norm_full = _full_load_phase(
            engine, worker, total, baseline_rows, args.repeat
        )
        profile = _where_the_time_goes(engine, worker, total, norm_full)
        (ours_chg, base_chg, limit_chg), changed, norm_chg = _changed_phase(
            engine, worker, total, baseline_rows, args.repeat
        )
        idle_mb = worker.idle_mb
        worker.stop()

    memory = [ours, ours_4000, dataclasses.replace(ours_chg, label="ours: limit 1000, 5% changed")]
    ours_2x = _twice_the_rows(DB_2X, 2 * args.rows) if args.rss_check else None
    if ours_2x is not None:
        memory.append(ours_2x)
    report(f"memory (an idle worker, imports and one connection: {idle_mb:.0f} MB)", memory)

    print("\ntargets")
    results = [
        verdict("full load: speed-up over the baseline (x)", ours.rows_per_s / base.rows_per_s, 10),
        verdict("full load: share of the limit's speed", ours.rows_per_s / limit.rows_per_s, LIMIT_SHARE),
        verdict("5% changed: speed-up over the baseline (x)", ours_chg.rows_per_s / base_chg.rows_per_s, 10),
        verdict(
            "5% changed: share of the limit's speed", ours_chg.rows_per_s / limit_chg.rows_per_s, LIMIT_SHARE
        ),
    ]
    if ours_2x is not None:
        results.append(
            verdict(
                "peak RSS at 2x rows / at 1x (ratio)",
                ours_2x.rss_mb / ours.rss_mb,
                1.1,
                higher_is_better=False,
            )
        )
    else:
        results.append(
            verdict(
                f"peak RSS, {total:,} rows / {changed:,} rows (ratio)",
                ours.rss_mb / ours_chg.rss_mb,
                1.1,
                higher_is_better=False,
            )
        )
    print(
        f"  (peak RSS above the idle worker: limit 1000 {ours.rss_mb - idle_mb:.0f} MB,"
        f" limit 4000 {ours_4000.rss_mb - idle_mb:.0f} MB)"
    )
    print(
        json.dumps(
            {
                "rows": total,
                "changed": changed,
                "baseline_rows": baseline_rows,
                "full_rows_per_s": _rates(ours, base, limit),
                "changed_rows_per_s": _rates(ours_chg, base_chg, limit_chg),
                "normalize_us_per_row": {"full": round(norm_full, 1), "changed": round(norm_chg, 1)},
                "share_of_limit": {
                    "full": round(ours.rows_per_s / limit.rows_per_s, 3),
                    "changed": round(ours_chg.rows_per_s / limit_chg.rows_per_s, 3),
                },
                "targets": {"speed_up_over_baseline": 10, "share_of_limit": LIMIT_SHARE, "rss_ratio": 1.1},
                "ours_rss_mb": ours.rss_mb,
                "ours_limit_4000_rss_mb": ours_4000.rss_mb,
                "ours_changed_rss_mb": ours_chg.rss_mb,
                "ours_2x_rss_mb": ours_2x.rss_mb if ours_2x is not None else None,
                "idle_worker_rss_mb": idle_mb,
                "profile": profile,
                "all_targets_met": all(results),
            }
        )
    )


if __name__ == "__main__":
    main()
