"""Applying airflow_settings.yaml into a real Airflow metadata database, through the CLI and the API.

Every test uses ids with a random suffix and deletes them afterwards: the metadata database is shared
with the other tests.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from include.common import settings, settings_file
from include.dialog import legacy_env as dialog_legacy_env

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Apply-Secret-9f3c"
EXTRA_SECRET = "extra-token-77ab"


@pytest.fixture
def ids(airflow_db):
    """Unique ids for one test; whatever was created under them is deleted afterwards."""
    suffix = uuid.uuid4().hex[:10]
    names = {
        "mysql": f"t_mysql_{suffix}",
        "sqlite": f"t_sqlite_{suffix}",
        "pool": f"t_pool_{suffix}",
        "variable": f"T_VAR_{suffix}",
    }
    yield names
    _delete(names)


def _delete(names: dict[str, str]) -> None:
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(Connection).where(Connection.conn_id.in_([names["mysql"], names["sqlite"]])))
        session.execute(delete(Pool).where(Pool.pool == names["pool"]))
        session.execute(delete(Variable).where(Variable.key == names["variable"]))


def settings_doc(ids: dict[str, str], *, host="db1.example", password=PASSWORD, slots=3, value="4") -> dict:
    connection = {
        "conn_id": ids["mysql"],
        "conn_type": "mysql",
        "conn_host": host,
        "conn_port": 3306,
        "conn_schema": "dialog",
        "conn_login": "etl",
        "conn_extra": {"charset": "utf8mb4", "api_token": EXTRA_SECRET},
    }
    if password is not None:
        connection["conn_password"] = password
    return {
        "airflow": {
            "connections": [
                connection,
                {"conn_id": ids["sqlite"], "conn_type": "sqlite", "conn_host": "probe.sqlite"},
            ],
            "pools": [{"pool_name": ids["pool"], "pool_slot": slots, "pool_description": "probe pool"}],
            "variables": [{"variable_name": ids["variable"], "variable_value": value}],
        }
    }


def write_settings(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def run_settings_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "include.common.settings", *args],
        cwd=REPO_ROOT,
        env=env or os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def statuses(stdout: str) -> dict[str, str]:
    """``{"connection <id>": "created", ...}`` from the CLI's one-line-per-item output."""
    found = re.findall(r"^((?:connection|pool|variable) \S+): (created|updated|unchanged)$", stdout, re.M)
    return dict(found)


def stored(ids: dict[str, str]) -> dict:
    """Read back through the ORM, counting rows to prove nothing was duplicated."""
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conns = session.scalars(select(Connection).where(Connection.conn_id == ids["mysql"])).all()
        sqlite = session.scalars(select(Connection).where(Connection.conn_id == ids["sqlite"])).all()
        pools = session.scalars(select(Pool).where(Pool.pool == ids["pool"])).all()
        variables = session.scalars(select(Variable).where(Variable.key == ids["variable"])).all()
        assert (len(conns), len(sqlite), len(pools), len(variables)) == (1, 1, 1, 1)
        conn, pool, var = conns[0], pools[0], variables[0]
        return {
            "conn_row": conn.id,
            "conn": (conn.conn_type, conn.host, conn.port, conn.schema, conn.login, conn.password),
            "extra": conn.extra_dejson,
            "sqlite": (sqlite[0].conn_type, sqlite[0].host),
            "pool": (pool.slots, pool.description),
            "variable": var.val,
        }


def assert_secret_free(proc: subprocess.CompletedProcess, *secrets: str) -> None:
    for secret in (PASSWORD, EXTRA_SECRET, *secrets):
        assert secret not in proc.stdout + proc.stderr


def test_cli_apply_twice_creates_once_then_reports_unchanged(ids, tmp_path):
    path = write_settings(tmp_path / "airflow_settings.yaml", settings_doc(ids))

    first = run_settings_cli("apply", str(path))
    second = run_settings_cli("apply", str(path))

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    expected_keys = {
        f"connection {ids['mysql']}",
        f"connection {ids['sqlite']}",
        f"pool {ids['pool']}",
        f"variable {ids['variable']}",
    }
    assert statuses(first.stdout) == dict.fromkeys(expected_keys, "created")
    assert statuses(second.stdout) == dict.fromkeys(expected_keys, "unchanged")
    state = stored(ids)
    assert state["conn"] == ("mysql", "db1.example", 3306, "dialog", "etl", PASSWORD)
    assert state["extra"] == {"charset": "utf8mb4", "api_token": EXTRA_SECRET}
    assert state["sqlite"] == ("sqlite", "probe.sqlite")
    assert state["pool"] == (3, "probe pool")
    assert state["variable"] == "4"
    assert_secret_free(first)
    assert_secret_free(second)


def test_cli_apply_updates_changed_items_in_place(ids, tmp_path):
    path = write_settings(tmp_path / "airflow_settings.yaml", settings_doc(ids))
    assert run_settings_cli("apply", str(path)).returncode == 0
    row_before = stored(ids)["conn_row"]

    new_password = "Rotated-Secret-5e1d"
    write_settings(path, settings_doc(ids, host="db2.example", password=new_password, slots=8, value="8"))
    proc = run_settings_cli("apply", str(path))

    assert proc.returncode == 0, proc.stderr
    assert statuses(proc.stdout) == {
        f"connection {ids['mysql']}": "updated",
        f"connection {ids['sqlite']}": "unchanged",
        f"pool {ids['pool']}": "updated",
        f"variable {ids['variable']}": "updated",
    }
    state = stored(ids)
    assert state["conn_row"] == row_before  # same row, fields replaced
    assert state["conn"] == ("mysql", "db2.example", 3306, "dialog", "etl", new_password)
    assert state["pool"] == (8, "probe pool")
    assert state["variable"] == "8"
    assert_secret_free(proc, new_password)


def test_removing_a_password_clears_it(ids, tmp_path):
    path = write_settings(tmp_path / "airflow_settings.yaml", settings_doc(ids))
    assert run_settings_cli("apply", str(path)).returncode == 0

    write_settings(path, settings_doc(ids, password=None))
    proc = run_settings_cli("apply", str(path))

    assert statuses(proc.stdout)[f"connection {ids['mysql']}"] == "updated"
    assert stored(ids)["conn"][-1] is None


def test_apply_in_process_with_a_session(ids):
    from airflow.utils.session import create_session

    with create_session() as session:
        outcomes = settings.apply(settings_doc(ids), session=session)
    assert {str(o) for o in outcomes} == {
        f"connection {ids['mysql']}: created",
        f"connection {ids['sqlite']}: created",
        f"pool {ids['pool']}: created",
        f"variable {ids['variable']}: created",
    }
    assert {o.status for o in settings.apply(settings_doc(ids))} == {"unchanged"}
    assert stored(ids)["conn"][-1] == PASSWORD


def test_a_pool_counts_deferred_tasks_when_the_file_says_so_and_keeps_it_otherwise(ids):
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    def include_deferred() -> bool:
        with create_session() as session:
            return Pool.get_pool(ids["pool"], session=session).include_deferred

    doc = settings_doc(ids)
    settings.apply(doc)
    assert include_deferred() is False  # Airflow's default for a new pool
    doc["airflow"]["pools"][0]["pool_include_deferred"] = True
    assert {str(o) for o in settings.apply(doc) if o.kind == "pool"} == {f"pool {ids['pool']}: updated"}
    assert include_deferred() is True
    del doc["airflow"]["pools"][0]["pool_include_deferred"]
    assert {o.status for o in settings.apply(doc)} == {"unchanged"}  # not said: the pool keeps it
    assert include_deferred() is True
    doc["airflow"]["pools"][0]["pool_include_deferred"] = "yes"
    with pytest.raises(settings_file.SettingsError, match="pool_include_deferred must be true or false"):
        settings.apply(doc)


def test_invalid_file_fails_before_writing_anything(ids, tmp_path):
    doc = settings_doc(ids)
    doc["airflow"]["pools"][0]["pool_slot"] = "many"
    proc = run_settings_cli("apply", str(write_settings(tmp_path / "bad.yaml", doc)))
    assert proc.returncode == 1
    assert f"pool {ids['pool']}: pool_slot must be an integer" in proc.stderr
    assert_secret_free(proc)

    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        count = session.scalar(
            select(func.count()).select_from(Connection).where(Connection.conn_id == ids["mysql"])
        )
    assert count == 0


def test_show_masks_passwords_and_secret_extras(tmp_path):
    doc = settings_doc({"mysql": "m", "sqlite": "s", "pool": "p", "variable": "db_password"})
    doc["airflow"]["connections"].append(
        {"conn_id": "by_uri", "conn_uri": f"postgres://user:{PASSWORD}@pg.example:5432/app"}
    )
    proc = run_settings_cli("show", str(write_settings(tmp_path / "s.yaml", doc)))

    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)["airflow"]
    conns = {c["conn_id"]: c for c in shown["connections"]}
    assert conns["m"]["conn_password"] == "***"
    assert conns["m"]["conn_extra"] == {"charset": "utf8mb4", "api_token": "***"}
    assert conns["by_uri"]["conn_uri"] == "postgres://user:***@pg.example:5432/app"
    assert shown["variables"] == [{"variable_name": "db_password", "variable_value": "***"}]
    assert_secret_free(proc)


def test_repo_defaults_are_valid_settings():
    defaults = settings_file.load(REPO_ROOT / "airflow_settings.yaml")["airflow"]
    conns = {c["conn_id"]: (c["conn_type"], c["conn_host"]) for c in defaults["connections"]}
    assert conns["dialog_src"] == ("sqlite", "dialog_src.sqlite")
    assert conns["dialog_dst"] == ("sqlite", "dialog_dst.sqlite")
    pools = {p["pool_name"]: (p["pool_slot"], p["pool_description"]) for p in defaults["pools"]}
    # the importer writes the same description, so importing ETL_MAX_WORKERS changes the slots only
    assert pools["dialog_etl"] == (4, dialog_legacy_env.DIALOG_POOL_DESCRIPTION)


@pytest.fixture
def private_airflow_home(airflow_db, tmp_path) -> dict[str, str]:
    """An environment whose metadata DB is a copy of the migrated test DB, for fixed connection ids."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    shutil.copy(airflow_db / "airflow.db", home / "airflow.db")
    with closing(sqlite3.connect(home / "airflow.db")) as db, db:  # start from none of the dialog items
        db.execute("DELETE FROM connection WHERE conn_id LIKE 'dialog%'")
        db.execute("DELETE FROM slot_pool WHERE pool = 'dialog_etl'")
        db.execute("DELETE FROM variable WHERE key = 'AICO_HOST'")
    env = os.environ.copy()
    env["AIRFLOW_HOME"] = str(home)
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home / 'airflow.db'}"
    return env


READ_BACK = textwrap.dedent("""\
    import json
    import os
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select
    with create_session() as s:
        conns = s.scalars(select(Connection).where(Connection.conn_id.like("dialog_%"))).all()
        print(json.dumps({
            "connections": sorted([c.conn_id, c.host, c.port, c.schema, c.login, c.password == os.environ["EXPECTED_PASSWORD"]]
                                  for c in conns),
            "pools": [[p.pool, p.slots] for p in s.scalars(select(Pool).where(Pool.pool == "dialog_etl"))],
            "variables": [[v.key, v.val] for v in s.scalars(select(Variable).where(Variable.key == "AICO_HOST"))],
        }))
""")


def test_legacy_env_apply_goes_straight_into_airflow(private_airflow_home, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"url=jdbc:mysql://db.example:3307/dialog?serverTimezone=Asia/Shanghai\nusername: etl\n"
        f"password={PASSWORD}\nDST_DB_NAME=dialog_out\nETL_MAX_WORKERS=5\nAICO_HOST=20.17.0.1\n",
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "include.common.legacy_env", str(env_file), "--apply"]

    runs = [
        subprocess.run(
            command, cwd=REPO_ROOT, env=private_airflow_home, capture_output=True, text=True, timeout=300
        )
        for _ in range(2)
    ]

    for proc in runs:
        assert proc.returncode == 0, proc.stderr
        assert_secret_free(proc)
    assert "connection dialog_src: created" in runs[0].stdout
    assert statuses(runs[0].stdout) == {
        "connection dialog_src": "created",
        "connection dialog_dst": "created",
        "pool dialog_etl": "created",
        "variable AICO_HOST": "created",
    }
    assert statuses(runs[1].stdout) == {
        "connection dialog_src": "unchanged",
        "connection dialog_dst": "unchanged",
        "pool dialog_etl": "unchanged",
        "variable AICO_HOST": "unchanged",
    }
    read = subprocess.run(
        [sys.executable, "-c", READ_BACK],
        cwd=REPO_ROOT,
        env={**private_airflow_home, "EXPECTED_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert read.returncode == 0, read.stderr
    state = yaml.safe_load(read.stdout.strip().splitlines()[-1])
    assert state["connections"] == [
        ["dialog_dst", "db.example", 3307, "dialog_out", "etl", True],
        ["dialog_src", "db.example", 3307, "dialog", "etl", True],
    ]
    assert state["pools"] == [["dialog_etl", 5]]
    assert state["variables"] == [["AICO_HOST", "20.17.0.1"]]
