"""The BigQuery backend against a local BigQuery REST endpoint, through the real google client.

What is asserted is what BigQuery would receive: table resources, load and query job configurations
and the SQL text (which must parse as BigQuery standard SQL and carry constant partition bounds).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections.abc import Iterator

import pyarrow.parquet as pq
import pytest
import sqlglot
from google.api_core.exceptions import BadRequest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from sqlglot import exp

from include.callio import schema
from include.callio.warehouse import open_warehouse
from include.callio.warehouse.bigquery_backend import BigQueryWarehouse
from sandbox.simulators.bigquery import BigQuerySimulator, QueryResult
from tests.conftest import set_connection

PROJECT, DATASET, LOCATION = "rio-system-migration", "dev_callio", "asia-southeast1"
D1, D2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)
PREVIOUS_DAYS = [dt.date(2023, 11, 30), dt.date(2024, 2, 29)]


class Answers:
    """Query results as BigQuery would give them for a warehouse with data in it."""

    def __init__(self, previous_days: list[dt.date]) -> None:
        self.previous_days = previous_days

    def __call__(self, sql: str) -> QueryResult | None:
        if sql.startswith("SELECT MIN("):
            return QueryResult([("low", "DATE"), ("high", "DATE")], [(D1, D2)])
        if sql.startswith("SELECT DISTINCT T.`NgayUpdate`"):
            return QueryResult([("NgayUpdate", "DATE")], [(d,) for d in self.previous_days])
        if sql.startswith("SELECT COUNT(*)"):
            return QueryResult([("n", "INT64")], [(0,)])
        if sql.startswith("SELECT `tenant`, MAX("):
            return QueryResult([("tenant", "STRING"), ("newest", "INT64")], [("A", 1_709_251_200_000)])
        if sql.rstrip(";").endswith("GROUP BY `tenant`"):  # a batch's per-tenant counts
            return QueryResult([("tenant", "STRING"), ("n", "INT64")], [("A", 2), ("B", 1)])
        if sql.startswith(("MERGE", "DELETE")):
            return QueryResult(dml_affected_rows=4)
        return None


@pytest.fixture
def bigquery_api() -> Iterator[tuple[BigQuerySimulator, BigQueryWarehouse]]:
    simulator = BigQuerySimulator(Answers(PREVIOUS_DAYS))
    with simulator.serve() as base_url:
        client = bigquery.Client(
            project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": base_url}
        )
        yield simulator, BigQueryWarehouse(client, PROJECT, DATASET, LOCATION)


def customer(_id: str, update_time: int, day: dt.date) -> dict:
    return {"_id": _id, "updateTime": update_time, "row_hash": f"h{update_time}", "NgayUpdate": day}


def run_everything(wh: BigQueryWarehouse) -> None:
    """One pipeline run's warehouse calls."""
    wh.ensure_schema()
    wh.stage_customers("A", [customer("c1", 1, D1), customer("c2", 2, D2)])
    wh.stage_calls("A", [{"_id": "k1", "NgayTao": D1, "direction": "inbound"}])
    wh.stage_staff("A", [{"_id": "u1", "name": "Lan"}])
    wh.stage_groups("A", [{"group_id": "g1"}])
    assert wh.merge_customers(["A", "B", "C"]) == {"A": 2, "B": 1, "C": 0}
    wh.append_calls(["A"])
    wh.merge_staff(["A"])
    wh.replace_groups(["A"])
    wh.log_updates([{"table_name": "customer", "tenant": "A", "mode": "MERGED", "max_updateTime": 2}])
    wh.reject([{"table_name": "call_log", "tenant": "A", "reason": "no _id", "payload": "{}"}])
    assert wh.checkpoints("customer") == {"A": 1_709_251_200_000}
    assert wh.refresh_staff_daily(D1, D2) == 4
    assert wh.prune_update_log(90) == 4


def statements(sql: str) -> list[exp.Expression]:
    tree = sqlglot.parse_one(sql, read="bigquery")
    return list(tree.expressions) if isinstance(tree, exp.Block) else [tree]


def is_date_literal(node: exp.Expression) -> bool:
    return isinstance(node, exp.Cast) and node.to.this == exp.DataType.Type.DATE and node.this.is_string


def date_bounds(condition: exp.Expression, column: str) -> list[exp.Expression]:
    """Predicates of ``condition`` that bound ``column`` by DATE literals only."""
    found = []
    for node in condition.find_all(exp.In, exp.Between):
        if isinstance(node.this, exp.Column) and node.this.name == column:
            bounds = node.expressions if isinstance(node, exp.In) else [node.args["low"], node.args["high"]]
            if bounds and all(is_date_literal(b) for b in bounds):
                found.append(node)
    return found


@pytest.mark.parametrize("previous_days", [PREVIOUS_DAYS, []], ids=["updates", "inserts-only"])
def test_every_statement_parses_and_merges_carry_constant_partition_bounds(previous_days):
    simulator = BigQuerySimulator(Answers(previous_days))
    with simulator.serve() as base_url:
        client = bigquery.Client(
            project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": base_url}
        )
        run_everything(BigQueryWarehouse(client, PROJECT, DATASET, LOCATION))

    parsed = [s for sql in simulator.queries for s in statements(sql)]
    assert all('"' not in sql for sql in simulator.queries)  # a double quote is a string in BigQuery
    merges = {m.this.name: m for m in parsed if isinstance(m, exp.Merge)}
    assert set(merges) == {"customer", "staff", "fact_staff_daily_PK"}

    on = merges["customer"].args["on"]
    if previous_days:
        (bound,) = date_bounds(on, "NgayUpdate")
        assert [b.this.name for b in bound.expressions] == ["2023-11-30", "2024-02-29"]
    else:
        assert on.find(exp.Boolean) and not on.find(exp.Boolean).this  # ON FALSE: nothing to read
    assert date_bounds(merges["fact_staff_daily_PK"].args["on"], "day")
    by_source = merges["fact_staff_daily_PK"].args["whens"].expressions[-1]
    assert by_source.args["source"] and date_bounds(by_source.args["condition"], "day")

    # The changed-row scans read the target within the same bounds as the MERGE.
    creates = [s for s in parsed if isinstance(s, exp.Create)]
    call_scan = next(c for c in creates if "call_log" in c.sql("bigquery") and "NgayTao" in c.sql("bigquery"))
    assert len(date_bounds(call_scan, "NgayTao")) == 2  # the staged rows and the target
    customer_scan = next(c for c in creates if "stg_customer" in c.sql("bigquery"))
    assert date_bounds(customer_scan, "NgayUpdate")
    deletes = [s for s in parsed if isinstance(s, exp.Delete) and s.this.name == "update_log"]
    assert deletes and deletes[0].find(exp.Cast).to.this == exp.DataType.Type.TIMESTAMPTZ


def _posted(simulator: BigQuerySimulator, path_end: str) -> list[dict]:
    return [
        json.loads(r.body) for r in simulator.api.requests if r.method == "POST" and r.path.endswith(path_end)
    ]


def test_tables_are_created_partitioned_and_clustered(bigquery_api):
    simulator, wh = bigquery_api
    wh.ensure_schema()
    created = len(simulator.api.requests)
    simulator.tables.pop((PROJECT, DATASET, "rejects"))
    wh.ensure_schema()  # one listing, then only the missing table
    again = simulator.api.requests[created:]
    assert [(r.method, r.path.rsplit("/", 2)[-2:]) for r in again] == [
        ("GET", [DATASET, "tables"]),
        ("POST", [DATASET, "tables"]),
    ]
    assert json.loads(again[1].body)["tableReference"]["tableId"] == "rejects"

    (dataset,) = [json.loads(r.body) for r in simulator.api.requests if r.path.endswith("/datasets")]
    assert dataset["datasetReference"] == {"projectId": PROJECT, "datasetId": DATASET}
    assert dataset["location"] == LOCATION
    tables = {t["tableReference"]["tableId"]: t for t in _posted(simulator, f"/datasets/{DATASET}/tables")}
    assert set(tables) == {t.name for t in schema.TABLES}
    customer = tables["customer"]
    assert customer["timePartitioning"] == {"type": "DAY", "field": "NgayUpdate"}
    assert customer["clustering"] == {"fields": ["tenant", "_id"]}
    assert customer["description"] == schema.CUSTOMER.description
    assert [(f["name"], f["type"]) for f in customer["schema"]["fields"]] == list(schema.CUSTOMER.columns)
    assert tables["update_log"]["timePartitioning"] == {"type": "DAY", "field": "updated_at"}
    assert dict(schema.UPDATE_LOG.columns)["updated_at"] == "TIMESTAMP"
    assert tables["call_log"]["clustering"] == {"fields": ["tenant"]}
    assert "timePartitioning" not in tables["staff"] and "timePartitioning" not in tables["group"]
    assert len(simulator.tables) == len(schema.TABLES)


def test_staging_and_logs_are_load_jobs_with_an_explicit_schema(bigquery_api):
    simulator, wh = bigquery_api
    wh.ensure_schema()
    assert wh.stage_customers("A", [customer("c1", 1, D1), customer("c2", 2, D2)]) == 2
    wh.log_updates([{"table_name": "customer", "tenant": "A", "mode": "STAGED", "run_id": "r1"}])

    stage, log = simulator.jobs_of("load")
    assert stage.resource["jobReference"]["location"] == LOCATION
    config = stage.configuration
    assert config["destinationTable"] == {
        "projectId": PROJECT,
        "datasetId": DATASET,
        "tableId": "stg_customer",
    }
    assert config["sourceFormat"] == "PARQUET" and config["writeDisposition"] == "WRITE_APPEND"
    assert [(f["name"], f["type"]) for f in config["schema"]["fields"]] == list(schema.STG_CUSTOMER.columns)
    uploaded = pq.read_table(io.BytesIO(stage.data)).to_pylist()
    assert [(r["tenant"], r["_id"], r["NgayUpdate"]) for r in uploaded] == [("A", "c1", D1), ("A", "c2", D2)]
    assert log.configuration["destinationTable"]["tableId"] == "update_log"
    assert log.configuration["writeDisposition"] == "WRITE_APPEND"
    (entry,) = pq.read_table(io.BytesIO(log.data)).to_pylist()
    assert entry["mode"] == "STAGED" and entry["updated_at"].tzinfo is not None
    assert not [r for r in simulator.api.requests if "insertAll" in r.path]  # never streaming


def test_a_large_stage_goes_through_a_resumable_upload(bigquery_api):
    simulator, wh = bigquery_api
    rows = [
        {"_id": os.urandom(12).hex(), "NgayUpdate": D1, "row_hash": os.urandom(32).hex()}
        for _ in range(80_000)
    ]
    assert wh.stage_customers("A", rows) == 80_000
    (load,) = simulator.jobs_of("load")
    assert len(load.data) > 5 * 1024 * 1024
    assert load.resource["statistics"]["load"]["outputRows"] == "80000"
    assert any(r.method == "PUT" for r in simulator.api.requests)


def test_merges_run_as_one_transaction_of_standard_sql(bigquery_api):
    simulator, wh = bigquery_api
    run_everything(wh)
    queries = simulator.jobs_of("query")
    assert all(q.configuration["useLegacySql"] is False for q in queries)
    assert {q.resource["jobReference"]["location"] for q in queries} == {LOCATION}
    script = next(
        q.configuration["query"]
        for q in queries
        if "MERGE INTO `rio-system-migration.dev_callio.customer`" in q.configuration["query"]
    )
    kinds = [type(s).__name__ for s in statements(script)]
    assert kinds == ["Transaction", "Create", "Merge", "Delete", "Commit", "Select"]
    assert (
        "DELETE FROM `rio-system-migration.dev_callio.stg_customer` WHERE `tenant` IN ('A', 'B', 'C')"
        in script
    )
    refresh = next(q for q in queries if q.configuration["query"].startswith("MERGE INTO"))
    assert "fact_staff_daily_PK" in refresh.configuration["query"]


def test_clearing_an_empty_staging_runs_no_dml(bigquery_api):
    simulator, wh = bigquery_api
    assert wh.clear_staging("staffgroup", ["A"]) == 0
    assert all(q.startswith("SELECT COUNT(*)") for q in simulator.queries) and len(simulator.queries) == 2


def test_a_refused_statement_fails_the_call(bigquery_api):
    _, wh = bigquery_api
    with pytest.raises(BadRequest, match="Syntax error"):
        wh._execute("MERGE INTO")


def test_tenant_names_are_escaped_as_bigquery_strings(bigquery_api):
    simulator, wh = bigquery_api
    wh.merge_staff(["O'Brien\\co"])
    (select,) = [s for s in statements(simulator.queries[-1]) if isinstance(s, exp.Create)]
    assert {lit.this for lit in select.find_all(exp.Literal) if lit.is_string} == {"O'Brien\\co"}


def test_open_warehouse_from_a_google_cloud_connection(monkeypatch):
    simulator = BigQuerySimulator()
    with simulator.serve() as base_url:
        extra = {"project": "proj-x", "dataset": "callio_test", "location": "EU", "api_endpoint": base_url}
        set_connection(monkeypatch, "callio_warehouse", "google_cloud_platform", extra=json.dumps(extra))
        wh = open_warehouse()
        assert isinstance(wh, BigQueryWarehouse)
        assert (wh.project, wh.dataset, wh.location) == ("proj-x", "callio_test", "EU")
        wh.ensure_schema()
    assert ("proj-x", "callio_test") in simulator.datasets
    assert simulator.datasets[("proj-x", "callio_test")]["location"] == "EU"
