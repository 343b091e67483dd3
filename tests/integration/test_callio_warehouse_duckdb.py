"""The Callio warehouse on a real DuckDB file: merges, dedupe, checkpoints, report, parallel staging."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from include.callio.warehouse import open_warehouse
from include.callio.warehouse.arrow_rows import BATCH_ROWS
from include.callio.warehouse.duckdb_backend import DuckDBWarehouse
from tests.conftest import set_connection

D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)


@pytest.fixture
def wh(tmp_path) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(tmp_path / "callio.duckdb")
    warehouse.ensure_schema()
    return warehouse


def customer(_id: str, update_time: int, row_hash: str, day: dt.date = D1, **extra) -> dict:
    return {
        "_id": _id,
        "updateTime": update_time,
        "row_hash": row_hash,
        "NgayUpdate": day,
        "name": f"name {row_hash}",
        **extra,
    }


def call(_id: str, day: dt.date = D1, **extra) -> dict:
    return {"_id": _id, "createTime": 1, "NgayTao": day, "row_hash": f"h{_id}", **extra}


def phoned(
    _id: str,
    day: dt.date,
    direction: str,
    staff: str | None,
    answer: int,
    end: int,
    bill: int | None,
    **extra,
) -> dict:
    return call(
        _id,
        day,
        direction=direction,
        fromUser__id=staff,
        answerTime=answer,
        endTime=end,
        billDuration=bill,
        **extra,
    )


def rows(wh: DuckDBWarehouse, query: str) -> list[tuple]:
    with wh.connect() as conn:
        return conn.execute(query).fetchall()


def customers(wh: DuckDBWarehouse) -> list[tuple]:
    return rows(
        wh, 'SELECT tenant, _id, "updateTime", row_hash, "NgayUpdate", name FROM customer ORDER BY ALL'
    )


def test_newer_update_wins_older_never_overwrites_and_same_hash_is_a_noop(wh):
    wh.stage_customers("A", [customer("c1", 100, "h1"), customer("c2", 100, "h2")])
    assert wh.merge_customers(["A"]) == {"A": 2}

    wh.stage_customers("A", [customer("c1", 200, "h1-new", D2)])  # newer, changed: moves to D2
    wh.stage_customers("A", [customer("c2", 50, "h2-old")])  # older: never overwrites
    assert wh.merge_customers(["A"]) == {"A": 1}
    assert customers(wh) == [
        ("A", "c1", 200, "h1-new", D2, "name h1-new"),
        ("A", "c2", 100, "h2", D1, "name h2"),
    ]

    before = rows(wh, "SELECT * FROM customer ORDER BY ALL")
    wh.stage_customers("A", [customer("c2", 300, "h2", D2, name="ignored: the hash says unchanged")])
    assert wh.merge_customers(["A"]) == {"A": 0}
    assert rows(wh, "SELECT * FROM customer ORDER BY ALL") == before
    assert rows(wh, "SELECT count(*) FROM stg_customer") == [(0,)]


def test_a_customer_in_an_old_partition_is_updated_not_duplicated(wh):
    wh.stage_customers("A", [customer("c1", 100, "h1", dt.date(2023, 1, 1))])
    wh.merge_customers(["A"])
    with wh.connect() as conn:  # a row from before NgayUpdate was filled in
        conn.execute(
            "INSERT INTO customer (tenant, _id, \"updateTime\", row_hash) VALUES ('A', 'c0', 1, 'h0')"
        )
    wh.stage_customers("A", [customer(c, 200, f"h{c}", D2) for c in ("c0", "c1", "c9")])
    assert wh.merge_customers(["A"]) == {"A": 3}
    assert customers(wh) == [
        ("A", "c0", 200, "hc0", D2, "name hc0"),
        ("A", "c1", 200, "hc1", D2, "name hc1"),
        ("A", "c9", 200, "hc9", D2, "name hc9"),
    ]


def test_staged_twice_by_two_runs_merges_the_newest_once(wh):
    wh.stage_customers("A", [customer("c1", 100, "h1")])
    wh.stage_customers("A", [customer("c1", 150, "h1b"), customer("c1", 100, "h1")])  # a retried run
    assert wh.merge_customers(["A"]) == {"A": 1}
    assert customers(wh) == [("A", "c1", 150, "h1b", D1, "name h1b")]


def test_tenants_are_isolated_and_only_merged_tenants_are_cleared(wh):
    wh.stage_customers("A", [customer("same", 100, "ha")])
    wh.stage_customers("B", [customer("same", 100, "hb")])
    wh.stage_customers("C", [customer("other", 100, "hc")])
    assert wh.merge_customers(["A", "B", "Z"]) == {"A": 1, "B": 1, "Z": 0}
    assert [r[:2] for r in customers(wh)] == [("A", "same"), ("B", "same")]
    assert rows(wh, "SELECT tenant, _id FROM stg_customer") == [("C", "other")]


def test_clear_staging_removes_only_the_job_and_tenants_given(wh):
    wh.stage_customers("A", [customer("c1", 100, "h1")])
    wh.stage_customers("B", [customer("c1", 100, "h1")])
    wh.stage_staff("A", [{"_id": "u1", "name": "Lan"}])
    wh.stage_groups("A", [{"group_id": "g1"}, {"group_id": "g2"}])
    assert wh.clear_staging("customer", ["A"]) == 1
    assert wh.clear_staging("call", ["A"]) == 0
    assert wh.clear_staging("staffgroup", ["A", "B"]) == 3
    assert rows(wh, "SELECT tenant FROM stg_customer") == [("B",)]
    assert rows(wh, "SELECT count(*) FROM stg_staff UNION ALL SELECT count(*) FROM stg_group") == [(0,), (0,)]


def test_the_tenant_argument_fills_the_column_and_keys_are_required(wh):
    wh.stage_customers("A", [customer("c1", 100, "h1", tenant="somebody else")])
    assert rows(wh, "SELECT tenant FROM stg_customer") == [("A",)]
    with pytest.raises(ValueError, match="have no _id"):
        wh.stage_customers("A", [customer(None, 100, "h")])
    with pytest.raises(ValueError, match="have no NgayTao"):
        wh.stage_calls("A", [call("x", day=None)])
    assert rows(wh, "SELECT count(*) FROM stg_customer") == [(1,)]


def test_a_bad_row_in_a_later_batch_stages_nothing_of_the_chunk(wh):
    """DuckDB inserts each batch while the next is built: a row that fails in the third batch, after
    two went into the INSERT, must fail the whole chunk with the error itself."""
    good = [customer(f"c{i}", 100, "h") for i in range(2 * BATCH_ROWS + 5)]
    with pytest.raises(ValueError, match="^2 stg_customer row\\(s\\) of tenant 'A' have no _id$"):
        wh.stage_customers("A", [*good, customer(None, 100, "h"), customer(None, 100, "h")])
    with pytest.raises(ValueError, match=r"stg_customer\.updateTime \(INT64\): .*str"):
        wh.stage_customers("A", [*good, customer("late", "yesterday", "h")])
    assert rows(wh, "SELECT count(*) FROM stg_customer") == [(0,)]
    assert wh.stage_customers("A", good) == len(good)
    assert rows(wh, "SELECT count(*), count(DISTINCT _id) FROM stg_customer") == [(len(good), len(good))]


def test_staging_in_a_fresh_process_never_imports_pandas(wh):
    """pyarrow's converter of Python objects imports pandas on its first call: a second of every
    fetch task's time, which staging through :mod:`arrow_rows` avoids, the DuckDB insert included."""
    script = textwrap.dedent(
        f"""
        import sys
        from include.callio.warehouse.duckdb_backend import DuckDBWarehouse
        from tests.integration.test_callio_warehouse_duckdb import call, customer
        warehouse = DuckDBWarehouse({str(wh.path)!r})
        assert warehouse.stage_customers("A", [customer("c1", 100, "h", name="Nguyễn")]) == 1
        assert warehouse.stage_calls("A", [call("k1")]) == 1
        warehouse.reject([{{"tenant": "A", "table_name": "customer", "reason": "no _id", "payload": {{}}}}])
        print("pandas" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    assert rows(wh, "SELECT tenant, _id, name FROM stg_customer") == [("A", "c1", "Nguyễn")]
    assert rows(wh, "SELECT tenant, reason FROM rejects") == [("A", "no _id")]


def test_calls_are_appended_once(wh):
    wh.stage_calls("A", [call("k1"), call("k2", D2), call("k1")])
    wh.stage_calls("B", [call("k1")])
    assert wh.append_calls(["A", "B"]) == {"A": 2, "B": 1}
    wh.stage_calls("A", [call("k1"), call("k2", D2), call("k3", D2)])
    assert wh.append_calls(["A"]) == {"A": 1}
    wh.stage_calls("A", [call("k1"), call("k3", D2)])
    assert wh.append_calls(["A"]) == {"A": 0}
    assert rows(wh, "SELECT tenant, _id FROM call_log ORDER BY ALL") == [
        ("A", "k1"),
        ("A", "k2"),
        ("A", "k3"),
        ("B", "k1"),
    ]
    assert rows(wh, "SELECT count(*) FROM stg_call_log") == [(0,)]


def test_staff_merge_on_tenant_and_name(wh):
    lan = {"_id": "u1", "name": "Lan", "group_id": "g1", "updateTime": 1, "row_hash": "a"}
    wh.stage_staff("A", [lan, {"_id": "u2", "name": "Minh", "updateTime": 1, "row_hash": "b"}])
    wh.stage_staff("B", [lan])
    assert wh.merge_staff(["A", "B"]) == {"A": 2, "B": 1}
    wh.stage_staff(
        "A", [{**lan, "group_id": "g2", "row_hash": "a2"}, {"_id": "u2", "name": "Minh", "row_hash": "b"}]
    )
    assert wh.merge_staff(["A"]) == {"A": 1}
    assert rows(wh, "SELECT tenant, name, group_id FROM staff ORDER BY ALL") == [
        ("A", "Lan", "g2"),
        ("A", "Minh", None),
        ("B", "Lan", "g1"),
    ]


def test_groups_are_replaced_per_staged_tenant(wh):
    wh.stage_groups("A", [{"group_id": "a1", "name": "x"}, {"group_id": "a2", "name": "y"}])
    wh.stage_groups("B", [{"group_id": "b1", "name": "z"}])
    assert wh.replace_groups(["A", "B"]) == {"A": 2, "B": 1}
    wh.stage_groups("A", [{"group_id": "a3", "name": "new"}, {"group_id": "a3", "name": "new"}])
    # B staged nothing this time: a missing snapshot must not wipe its groups.
    assert wh.replace_groups(["A", "B"]) == {"A": 1, "B": 0}
    assert rows(wh, 'SELECT tenant, group_id FROM "group" ORDER BY ALL') == [("A", "a3"), ("B", "b1")]


def test_checkpoints_ignore_null_rows_and_survive_pruning(wh):
    wh.log_updates(
        [
            {
                "table_name": "customer",
                "tenant": "A",
                "max_updateTime": 100,
                "mode": "MERGED",
                "run_id": "r1",
            },
            {
                "table_name": "customer",
                "tenant": "A",
                "max_updateTime": 200,
                "mode": "MERGED",
                "rows_loaded": 5,
            },
            {"table_name": "customer", "tenant": "A", "mode": "STAGED"},
            {"table_name": "customer", "tenant": "B", "max_updateTime": 50, "mode": "NOOP"},
            {"table_name": "call_log", "tenant": "A", "max_updateTime": 300, "mode": "APPEND"},
        ]
    )
    wh.log_updates([{"table_name": "customer", "tenant": "A", "mode": "ERROR_LOGIN", "detail": "401"}])
    assert wh.checkpoints("customer") == {"A": 200, "B": 50}
    assert wh.checkpoints("call_log") == {"A": 300}
    assert wh.checkpoints("staff") == {}

    assert wh.prune_update_log(keep_days=90) == 0
    assert wh.prune_update_log(keep_days=0) == 3  # A@100, STAGED, ERROR_LOGIN
    assert wh.checkpoints("customer") == {"A": 200, "B": 50}
    assert wh.checkpoints("call_log") == {"A": 300}
    assert rows(wh, "SELECT count(*) FROM update_log") == [(3,)]
    with pytest.raises(ValueError, match="mode"):
        wh.log_updates([{"table_name": "customer", "tenant": "A", "mode": "DONE"}])


def test_rejects_keep_reason_and_payload(wh):
    assert wh.reject(
        [{"table_name": "call_log", "tenant": "A", "reason": "no _id", "payload": {"b": 1, "a": "ư"}}]
    )
    assert rows(wh, "SELECT reason, payload, rejected_at IS NOT NULL FROM rejects") == [
        ("no _id", '{"a":"ư","b":1}', True)
    ]


def _report_dataset(wh: DuckDBWarehouse) -> None:
    wh.stage_staff(
        "A",
        [
            {"_id": "u1", "name": "Lan", "group_id": "g1", "updateTime": 1, "row_hash": "s1"},
            {"_id": "u2", "name": "Minh", "group_id": "g2", "updateTime": 1, "row_hash": "s2"},
        ],
    )
    wh.merge_staff(["A"])
    lan = {"fromUser__name": "name on the call"}  # the staff table's name wins
    wh.stage_calls(
        "A",
        [
            # id, day, direction, staff, answerTime, endTime, billDuration
            phoned("c1", D1, "inbound", "u1", 1_000, 61_400, 61, **lan),  # talk 60.4 s
            phoned("c2", D1, "outbound", "u1", 0, 5_000, 0, **lan),  # not answered
            phoned("c3", D1, "outbound", "u1", 10_000, 40_000, 30, **lan),  # talk 30 s
            phoned("c4", D2, "inbound", "u2", 5, 12_305, 13),  # talk 12.3 s
            phoned("c5", D1, "inbound", None, 0, 9_000, None),  # missed, nobody's
            phoned("c6", D1, "inbound", "u9", 100, 5_100, 5, fromUser__name="Ghost", fromGroup__id="g9"),
            phoned("c7", dt.date(2024, 2, 28), "inbound", "u1", 1, 2, 1),  # before the range
        ],
    )
    wh.stage_calls("B", [phoned("c1", D1, "outbound", "u1", 1, 20_001, 20, fromUser__name="B-Lan")])
    wh.append_calls(["A", "B"])
    wh.stage_customers(
        "A",
        [
            customer("k1", 2, "k1", D2, user_id="u1", NgayAssign=D1),
            customer("k2", 1, "k2", D1, user_id="u1", NgayAssign=D1),
            customer("k3", 2, "k3", D2, user_id="u2", NgayAssign=dt.date(2024, 1, 15)),
            customer("k4", 1, "k4", D1),
        ],
    )
    wh.merge_customers(["A"])


FACT = (
    "SELECT tenant, day, staff_id, staff_name, group_id, calls_in, calls_out, calls_answered, talk_seconds, "
    'bill_seconds, customers_assigned, customers_updated FROM "fact_staff_daily_PK" ORDER BY ALL'
)


def test_staff_daily_report_figures(wh):
    _report_dataset(wh)
    assert wh.refresh_staff_daily(D1, D2) == 6
    assert rows(wh, FACT) == [
        # tenant day staff name group in out answered talk bill assigned updated
        ("A", D1, "", None, None, 1, 0, 0, 0, 0, 0, 1),
        ("A", D1, "u1", "Lan", "g1", 1, 2, 2, 90, 91, 2, 1),
        ("A", D1, "u9", "Ghost", "g9", 1, 0, 1, 5, 5, 0, 0),
        ("A", D2, "u1", "Lan", "g1", 0, 0, 0, 0, 0, 0, 1),
        ("A", D2, "u2", "Minh", "g2", 1, 0, 1, 12, 13, 0, 1),
        ("B", D1, "u1", "B-Lan", None, 0, 1, 1, 20, 20, 0, 0),
    ]
    assert wh.refresh_staff_daily(D1, D2) == 0

    # k1 is reassigned to u2 on D2: u1 loses its D2 row and one assignment on D1.
    wh.stage_customers("A", [customer("k1", 3, "k1b", D2, user_id="u2", NgayAssign=D2)])
    wh.merge_customers(["A"])
    d1_before = rows(wh, "SELECT * FROM \"fact_staff_daily_PK\" WHERE day = DATE '2024-03-01' ORDER BY ALL")
    assert wh.refresh_staff_daily(D2, D2) == 2  # (A, D2, u1) deleted, (A, D2, u2) updated
    assert (
        rows(wh, "SELECT * FROM \"fact_staff_daily_PK\" WHERE day = DATE '2024-03-01' ORDER BY ALL")
        == d1_before
    )
    assert wh.refresh_staff_daily(D1, D2) == 1  # (A, D1, u1): assigned 2 -> 1
    got = {(r[0], r[1], r[2]): r[10:] for r in rows(wh, FACT)}
    assert ("A", D2, "u1") not in got
    assert got[("A", D2, "u2")] == (1, 2) and got[("A", D1, "u1")] == (1, 1)


def _one_run(wh: DuckDBWarehouse) -> dict[str, dict[str, int]]:
    for tenant in ("A", "B"):
        wh.stage_customers(tenant, [customer("c1", 100, "h1"), customer("c2", 200, "h2", D2, user_id="u1")])
        wh.stage_calls(tenant, [call("k1", direction="inbound", fromUser__id="u1"), call("k2", D2)])
        wh.stage_staff(tenant, [{"_id": "u1", "name": "Lan", "row_hash": "s"}])
        wh.stage_groups(tenant, [{"group_id": "g1", "name": "G", "row_hash": "g"}])
    counts = {
        "customer": wh.merge_customers(["A", "B"]),
        "call_log": wh.append_calls(["A", "B"]),
        "staff": wh.merge_staff(["A", "B"]),
        "group": wh.replace_groups(["A", "B"]),
    }
    counts["report"] = {"rows": wh.refresh_staff_daily(D1, D2)}
    return counts


def _tables(wh: DuckDBWarehouse) -> dict[str, list[tuple]]:
    names = ["customer", "call_log", "staff", "group", "fact_staff_daily_PK", "stg_customer", "stg_call_log"]
    return {name: rows(wh, f'SELECT * FROM "{name}" ORDER BY ALL') for name in names}


def test_a_rerun_leaves_the_same_tables(wh):
    first = _one_run(wh)
    assert first["customer"] == {"A": 2, "B": 2} and first["report"] == {"rows": 8}
    tables = _tables(wh)
    second = _one_run(wh)
    assert second["customer"] == second["call_log"] == second["staff"] == {"A": 0, "B": 0}
    assert second["group"] == {"A": 1, "B": 1} and second["report"] == {"rows": 0}
    assert _tables(wh) == tables


def _stage_many(path: str, tenant: str, batches: int) -> None:
    warehouse = DuckDBWarehouse(path, lock_timeout=60)
    for batch in range(batches):
        warehouse.stage_customers(tenant, [customer(f"{batch}-{i}", 1, "h") for i in range(500)])


def test_parallel_staging_from_two_processes_both_land(wh):
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_stage_many, args=(str(wh.path), t, 20)) for t in ("A", "B")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert rows(wh, "SELECT tenant, count(*) FROM stg_customer GROUP BY ALL ORDER BY ALL") == [
        ("A", 10_000),
        ("B", 10_000),
    ]


def _hold(path: str, seconds: float, holding) -> None:
    with DuckDBWarehouse(path).connect():
        holding.set()
        time.sleep(seconds)


def test_a_locked_file_is_waited_for_within_the_timeout(wh):
    spawn = multiprocessing.get_context("spawn")
    holding = spawn.Event()
    holder = spawn.Process(target=_hold, args=(str(wh.path), 2, holding))
    holder.start()
    try:
        assert holding.wait(timeout=60)
        with pytest.raises(duckdb.IOException, match="lock"):
            DuckDBWarehouse(wh.path, lock_timeout=0.3).stage_groups("A", [{"group_id": "g"}])
        assert wh.stage_groups("A", [{"group_id": "g"}]) == 1  # waits for the holder
    finally:
        holder.join(timeout=30)
    assert rows(wh, "SELECT count(*) FROM stg_group") == [(1,)]


def test_a_failed_batch_changes_nothing(wh):
    wh.stage_customers("A", [customer("c1", 100, "h1")])
    with pytest.raises(duckdb.CatalogException):
        wh._run_atomically(["DELETE FROM stg_customer", "DELETE FROM no_such_table"], "SELECT 1")
    assert rows(wh, "SELECT count(*) FROM stg_customer") == [(1,)]


def test_open_warehouse_resolves_a_relative_duckdb_host_under_the_data_dir(monkeypatch, data_dir):
    set_connection(monkeypatch, "callio_warehouse", "duckdb", host="wh/callio.duckdb")
    warehouse = open_warehouse()
    assert isinstance(warehouse, DuckDBWarehouse) and warehouse.path == data_dir / "wh" / "callio.duckdb"
    warehouse.ensure_schema()
    warehouse.ensure_schema()
    assert (data_dir / "wh" / "callio.duckdb").exists()
    set_connection(monkeypatch, "callio_warehouse", "sqlite", host="x")
    with pytest.raises(ValueError, match="expected duckdb or google_cloud_platform"):
        open_warehouse()
