"""``make demo``: build the embedded world and run every pipeline on it, printing each run's summary.

No external system and no credentials: SQLite files under ``PIPELINES_DATA_DIR`` stand in for the
servers (the chatbot's JSONB and Alembic need the local PostgreSQL, database ``chatbot``), and the
connections come from ``airflow_settings.yaml``. The source data is rebuilt on every
demo; targets are kept, so a second demo shows the pipelines' idempotency (nothing inserted twice).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import sqlalchemy as sa

from include.common.db import REPO_ROOT, sqlite_engine, sqlite_path
from include.dialog.days import SHANGHAI
from sandbox.dagrun import run_dag
from sandbox.simulators.callio import CallioSimulator
from sandbox.worlds.callio import DAY_MS, CallioWorld
from sandbox.worlds.dialog import build_world
from sandbox.worlds.product import changed_versions, fill_staging, generate


def _airflow(*args: str) -> None:
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    subprocess.run([airflow, *args], check=True, stdout=subprocess.DEVNULL)


def _prepare_airflow() -> None:
    _airflow("db", "migrate")
    subprocess.run(
        [sys.executable, "-m", "include.common.settings", "apply", str(REPO_ROOT / "airflow_settings.yaml")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _print_run(dag_id: str, label: str, conf: dict) -> None:
    outcome = run_dag(dag_id, conf)
    print(f"{dag_id} {label}: {outcome.state}\n  {json.dumps(outcome.summary, ensure_ascii=False)}")
    if outcome.state != "success":
        raise SystemExit(f"{dag_id} failed: {outcome.task_states}")


def demo_dialog() -> None:
    today = dt.datetime.now(SHANGHAI).date()
    days = [today - dt.timedelta(days=n) for n in (3, 2, 1)]
    source = sqlite_path("dialog_src.sqlite")
    source.unlink(missing_ok=True)
    # The file behind the default `dialog_src` connection (airflow_settings.yaml).
    world = build_world(sqlite_engine("dialog_src.sqlite"), days, groups=4, calls_per_group_day=40)
    print(f"dialog_src: {world.rows} utterances over {', '.join(map(str, days))}")
    for conf in ({"target_date": days[0].isoformat()}, {"target_date": days[1].isoformat()}, {}):
        _print_run("dialog_etl", conf.get("target_date", "(no target_date: yesterday)"), conf)


def demo_product() -> None:
    """A staging feed with a few broken rows; a dry run, the load, then 5% of the products changed.
    The feed is kept between demos, so a second demo shows only the new changes being applied."""
    engine = sqlite_engine("product_db.sqlite")  # the file behind the default `product_db` connection
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    if not sa.inspect(engine).has_table("products_staging"):
        rows = fill_staging(engine, generate(3000, start=now - dt.timedelta(days=2), bad_every=150))
        print(f"products_staging: {rows} rows")
    _print_run("product_etl", "dry run", {"dry_run": True})
    _print_run("product_etl", "load", {})
    changed = changed_versions(engine, 0.05, now - dt.timedelta(minutes=10))
    print(f"products_staging: {changed} changed versions appended")
    _print_run("product_etl", "changes", {})


CALLIO_SANDBOX_PORT = 18765  # the default `callio_api` connection's port (airflow_settings.yaml)


def demo_callio() -> None:
    """The simulator's three tenants (the accounts of the default connection): a full run, a re-run
    that merges nothing, then an hour of changes picked up by a scheduled-style run."""
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    world = CallioWorld(3, 2000, 5000, span_ms=20 * DAY_MS, end_ms=now_ms - 3_600_000, burst=600)
    with CallioSimulator(world).serve(CALLIO_SANDBOX_PORT):
        print(f"callio sandbox: {len(world.tenants)} tenants on port {CALLIO_SANDBOX_PORT}")
        _print_run("callio_etl", "all jobs", {"job": "all"})
        _print_run("callio_etl", "again", {"job": "all"})
        world.advance(now_ms - 1_000, customers=100, calls=200)
        _print_run("callio_etl", "after an hour of changes", {"job": "auto"})


AICO_SANDBOX_PORT = 18768  # the default `aico_api` connection's port (airflow_settings.yaml)


def demo_aico() -> None:
    """The knowledge sync under both profiles, switched by the AICO_HOST Variable alone: the TEST
    profile's database and `<code>_test` rows, then the PROD ones; then one prod item changes, and the
    second PROD run syncs that scenario only, the other one unchanged (no AICO call for it)."""
    from include.dialog.config import AICO_HOST_VARIABLE
    from sandbox.simulators.aico import demo_simulator
    from sandbox.worlds.aico import ITEMS, build_scenarios, edit_item

    hosts = {"TEST": "20.17.0.1", "PROD": "20.17.0.2"}  # AICO_HOST_TEST / _PROD of airflow_settings.yaml
    databases = {}
    for profile in hosts:
        name = f"dialog_{profile.lower()}.sqlite"  # dialog_dst_test / dialog_dst_prod
        for suffix in ("", "-wal", "-shm"):
            sqlite_path(name + suffix).unlink(missing_ok=True)
        items = (
            ITEMS if profile == "PROD" else {c: [(t, f"[测试] {x}") for t, x in p] for c, p in ITEMS.items()}
        )
        databases[profile] = (sqlite_engine(name), build_scenarios(sqlite_engine(name), items))
    sim = demo_simulator()
    variable = f"AIRFLOW_VAR_{AICO_HOST_VARIABLE}"
    try:
        with sim.serve(AICO_SANDBOX_PORT):
            print(f"aico sandbox on port {AICO_SANDBOX_PORT}")
            for profile, host in hosts.items():
                os.environ[variable] = host
                _print_run("aico_knowledge_sync", f"AICO_HOST={host} ({profile})", {})
            engine, ids = databases["PROD"]
            edit_item(engine, ids["support"], "发票", "电子发票在确认收货后立即发送到邮箱。")
            writes = sim.writes()
            _print_run("aico_knowledge_sync", "PROD again, support changed", {})
            print(f"  AICO write calls of that run: {sim.writes() - writes} (sales unchanged: none for it)")
            edit_item(engine, ids["sales"], "会员积分", "每消费 1 元积 2 分。")
            writes = sim.writes()
            _print_run(
                "aico_knowledge_sync", "dry run, sales changed", {"dry_run": True, "scenario_ids": ["sales"]}
            )
            print(f"  AICO write calls of the dry run: {sim.writes() - writes}")
    finally:
        os.environ.pop(variable, None)


def _airflow_token(username: str = "admin", role: str = "admin") -> str:
    """A token as ``POST /auth/token`` would issue it: signed by this Airflow's auth manager (the
    default Simple auth manager), so the plugin checks it exactly as it does in the API server."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    manager = create_auth_manager()
    manager.init()
    return manager.generate_jwt(SimpleAuthManagerUser(username=username, role=role))


def demo_dwh_helper() -> None:
    """The plugin's blueprints, mounted in a plain Flask app with the connections of
    airflow_settings.yaml (inside Airflow they answer under /pluginsv2/dwh-helper), against the
    embedded S3 server and the AppMetrica / Amplitude simulators."""
    import httpx

    # Read connections and Variables from the metadata DB as the API server process does.
    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"
    from dwh_helper.app import create_app
    from dwh_helper.services import Services
    from sandbox.dwh_sandbox import serve_all
    from sandbox.http import serve_wsgi

    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    day = yesterday.strftime("%Y%m%d")
    with serve_all(), serve_wsgi(create_app(Services.from_airflow())) as base_url:
        api = httpx.Client(
            base_url=f"{base_url}/dwh-helper",
            headers={"Authorization": f"Bearer {_airflow_token()}"},
            timeout=120,
        )
        event = {
            "uuid": "demo-1",
            "event_type": "open_app",
            "event_time": f"{yesterday} 09:30:00",
            "user_id": "u-1",
        }
        calls = [
            (
                "POST /dwh/events-part",
                api.post("/dwh/events-part", json={"data": [event, {**event, "uuid": "demo-2"}]}),
            ),
            ("GET /dwh/events-part?limit=1", api.get("/dwh/events-part", params={"limit": 1})),
            ("POST /dwh/events-part (invalid)", api.post("/dwh/events-part", json={"data": [{"uuid": 5}]})),
            (
                "POST /s3/upload",
                api.post(
                    "/s3/upload",
                    params={"key": "demo/hello.txt"},
                    files={"file": ("hello.txt", b"xin chao\n")},
                ),
            ),
            (
                "PATCH /s3/patch",
                api.patch("/s3/patch", params={"key": "demo/hello.txt", "offset": 0}, files={"file": b"X"}),
            ),
            ("GET /s3/objects", api.get("/s3/objects", params={"prefix": "demo/"})),
            (
                "GET /appmetrica/fetch-export",
                api.get(
                    "/appmetrica/fetch-export", params={"export_id": "events_yesterday", "poll_interval": 0.2}
                ),
            ),
            (
                "GET /amplitude/export",
                api.get("/amplitude/export", params={"start": day, "end": day, "source": "web"}),
            ),
            ("GET /dwh/events-part without a token", httpx.get(f"{base_url}/dwh-helper/dwh/events-part")),
        ]
        for label, response in calls:
            if response.headers.get("content-type", "").startswith("application/json"):
                body = response.json()
                if isinstance(body.get("rows"), list):
                    body = {**body, "rows": body["rows"][:1]}
                shown = json.dumps(body, ensure_ascii=False)[:300]
            else:
                shown = f"{len(response.content)} bytes, {response.headers.get('content-disposition')}"
            print(f"dwh_helper {label}: {response.status_code}\n  {shown}")


def demo_exports() -> None:
    """amplitude_export (the last closed week, both sources) and appmetrica_export (yesterday), each run
    twice against the embedded stand-ins: the second run leaves the same rows (counts and checksums)."""
    from include.common.db import engine_for
    from include.dwh.amplitude_split import TABLES
    from include.dwh.config import DWH_CONN_ID
    from include.dwh.exports import table_fingerprint
    from sandbox.dwh_sandbox import serve_all

    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"  # read dwh_db from the metadata DB, as demo_dwh_helper
    engine = engine_for(DWH_CONN_ID)
    with serve_all():
        for dag_id, conf in (
            ("amplitude_export", {"backoff_seconds": 1}),
            ("appmetrica_export", {"poll_interval_seconds": 0.2}),
        ):
            _print_run(dag_id, "run", conf)
            before = {table.name: table_fingerprint(engine, table) for table in TABLES}
            _print_run(dag_id, "re-run", conf)
            after = {table.name: table_fingerprint(engine, table) for table in TABLES}
            counts = {name: count for name, (count, _) in after.items()}
            print(f"{dag_id} re-run left the tables identical: {before == after}; rows {counts}")


def demo_chatbot() -> None:
    """chatbot_db_init, the synthetic conversations, chatbot_analytics, then chatbot_maintenance (LGPD
    retention of the two users due, a backup to the local S3). The `chatbot_postgres` database and the
    DuckDB file are rebuilt, like every demo source, but only when they are the embedded defaults."""
    from include.chatbot.config import DEFAULT_DUCKDB_FILE, POSTGRES_CONN_ID, duckdb_path
    from include.chatbot.restore import ensure_database
    from include.common.db import engine_for
    from sandbox.dwh_sandbox import serve_all
    from sandbox.worlds import chatbot as world

    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"  # read chatbot_postgres from the metadata DB
    engine = engine_for(POSTGRES_CONN_ID)
    url = engine.url
    print(f"chatbot_postgres: postgresql://{url.username}@{url.host}:{url.port}/{url.database}")
    if url.host in ("127.0.0.1", "localhost") and url.database == "chatbot":
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text('DROP DATABASE IF EXISTS "chatbot" WITH (FORCE)'))
        admin.dispose()
        duck = duckdb_path()
        if duck.name == DEFAULT_DUCKDB_FILE:
            duck.unlink(missing_ok=True)
    print(f"chatbot_postgres database {url.database!r} created: {ensure_database(engine, url.database)}")
    _print_run("chatbot_db_init", "schema", {})
    world.populate(engine)
    world.populate_maintenance(engine)
    engine.dispose()
    print(f"chatbot: {len(world.MESSAGES) + len(world.DUE_MESSAGES)} synthetic messages")
    _print_run("chatbot_analytics", "copy", {})
    with serve_all():
        _print_run("chatbot_maintenance", "anonymize", {"retention_action": "anonymize", "backup_keep": 3})
        _print_run("chatbot_maintenance", "re-run", {"retention_action": "anonymize", "backup_keep": 3})


def main() -> None:
    _prepare_airflow()
    demo_dialog()
    demo_product()
    demo_callio()
    demo_aico()
    demo_dwh_helper()
    demo_exports()
    demo_chatbot()


if __name__ == "__main__":
    main()
