"""Every DAG file imports cleanly, follows the house rules and parses fast without heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sandbox.dagrun import DAGS_FOLDER

DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))
HEAVY = ["pandas", "duckdb", "sqlalchemy", "boto3", "google.cloud", "httpx", "MySQLdb", "psycopg2"]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS_FOLDER))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {p.stem for p in DAG_FILES} <= set(dagbag.dag_ids), "one DAG per file, file name = dag_id"


def test_house_rules(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id}: doc_md missing"
        assert dag.tags, f"{dag_id}: no tags"
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id}: owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id}: retries"


PROBE = """
import importlib, json, sys, time, runpy
import airflow.sdk, pendulum  # what every DAG file needs anyway
before = set(sys.modules)
t = time.perf_counter()
runpy.run_path(sys.argv[1])
elapsed = time.perf_counter() - t
print(json.dumps({"seconds": elapsed, "modules": sorted(set(sys.modules) - before)}))
"""


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parses_fast_without_heavy_imports(path):
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = [m for m in probe["modules"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == [], f"{path.name} imports heavy modules at parse time: {heavy[:5]}"
    assert probe["seconds"] < 0.5, f"{path.name} took {probe['seconds']:.2f}s to parse"
