"""aico_knowledge_sync end to end with dag.test() against the AICO simulator, on SQLite and MariaDB."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from include.aico.schema import documents, sync_log
from include.common.db import engine_for
from sandbox.dagrun import run_dag
from sandbox.simulators.aico import DEMO_ACCOUNTS, demo_simulator
from sandbox.worlds.aico import ITEMS, build_scenarios, edit_item
from tests.conftest import set_connection

TEST_HOST, PROD_HOST = "20.17.0.1", "20.17.0.2"


@pytest.fixture
def aico(monkeypatch):
    sim = demo_simulator()
    with sim.serve() as base_url:
        set_connection(
            monkeypatch,
            "aico_api",
            "http",
            host=base_url,
            extra=json.dumps({"backoff_s": 0.01, "attempts": 2}),
        )
        yield sim


def _xcoms(run_id: str) -> list:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return [
            x.value for x in session.scalars(XComModel.get_many(run_id=run_id, dag_ids="aico_knowledge_sync"))
        ]


def set_hosts(monkeypatch, aico_host: str | None) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_AICO_HOST_TEST", TEST_HOST)
    monkeypatch.setenv("AIRFLOW_VAR_AICO_HOST_PROD", PROD_HOST)
    if aico_host is None:
        monkeypatch.delenv("AIRFLOW_VAR_AICO_HOST", raising=False)
    else:
        monkeypatch.setenv("AIRFLOW_VAR_AICO_HOST", aico_host)


def kb(sim, name: str) -> list[tuple[str, str, bool]]:
    return [(d.title, d.content, d.online) for d in sim.docs("customer-service", name)]


def expected_kb(pairs) -> list[tuple[str, str, bool]]:
    return [(title, content, True) for title, content in pairs]


def test_sqlite_sync_skip_and_change(aico, sqlite_conn, monkeypatch, capfd, caplog):
    set_hosts(monkeypatch, None)
    target = engine_for(sqlite_conn("dialog_dst"))
    ids = build_scenarios(target)

    first = run_dag("aico_knowledge_sync")
    assert first.state == "success", first.task_states
    assert first.summary["profile"] == "DEFAULT"
    assert first.summary["scenarios"] == {
        "sales": {
            "profile": "DEFAULT",
            "config_row": "sales",
            "items": 3,
            "uploaded": 3,
            "deleted": 0,
            "skipped": False,
            "online": 3,
        },
        "support": {
            "profile": "DEFAULT",
            "config_row": "support",
            "items": 2,
            "uploaded": 2,
            "deleted": 0,
            "skipped": False,
            "online": 2,
        },
    }
    assert set(first.task_states) >= {"sync_scenario[0]", "sync_scenario[1]"}
    assert kb(aico, "kb-sales") == expected_kb(ITEMS["sales"])
    assert kb(aico, "kb-support") == expected_kb(ITEMS["support"])
    assert kb(aico, "kb-sales-test") == []

    # Nothing changed: no AICO call at all, every scenario skipped.
    calls = dict(aico.counters)
    second = run_dag("aico_knowledge_sync")
    assert second.state == "success", second.task_states
    assert dict(aico.counters) == calls
    assert {code: e["skipped"] for code, e in second.summary["scenarios"].items()} == {
        "sales": True,
        "support": True,
    }
    assert second.summary["scenarios"]["sales"]["online"] == 3

    # One item changed: only its scenario is synced, its old documents replaced.
    edit_item(target, ids["support"], "发票", "电子发票在确认收货后立即发送。")
    third = run_dag("aico_knowledge_sync")
    assert third.summary["scenarios"]["support"] == {
        "profile": "DEFAULT",
        "config_row": "support",
        "items": 2,
        "uploaded": 2,
        "deleted": 2,
        "skipped": False,
        "online": 2,
    }
    assert third.summary["scenarios"]["sales"]["skipped"] is True
    assert kb(aico, "kb-support") == [
        ITEMS["support"][0] + (True,),
        ("发票", "电子发票在确认收货后立即发送。", True),
    ]
    with target.connect() as conn:
        statuses = conn.execute(sa.select(sync_log.c.status, sync_log.c.stage)).all()
        answers = conn.scalars(sa.select(sync_log.c.answers)).all()
    assert statuses == [("success", "done")] * 3
    # Neither the scenario rows' passwords nor AICO's tokens reach the output, an XCom or the log table.
    output = capfd.readouterr()
    shown = output.out + output.err + caplog.text + json.dumps([first.summary, second.summary, third.summary])
    shown += json.dumps(_xcoms(first.run_id), default=str) + "".join(answers)
    tokens = list(aico.issued_tokens)
    assert tokens and not any(secret in shown for secret in [*DEMO_ACCOUNTS.values(), *tokens])
    for text in answers:  # AICO's answers are kept, credentials are not
        assert '"upload"' in text or '"delete"' in text
        assert not any(secret in text for secret in DEMO_ACCOUNTS.values())


@pytest.mark.parametrize(
    ("backend", "uploads_before_failure"), [("sqlite", 0), ("sqlite", 1), ("mariadb", 0)]
)
def test_a_failure_after_the_delete_is_repaired_by_the_next_run(
    aico, request, monkeypatch, backend, uploads_before_failure
):
    set_hosts(monkeypatch, None)
    target = engine_for(request.getfixturevalue(f"{backend}_conn")("dialog_dst"))
    ids = build_scenarios(target, {"sales": ITEMS["sales"]})
    assert run_dag("aico_knowledge_sync").state == "success"

    edit_item(target, ids["sales"], "退换货", "签收后十五天内可退换。")
    aico.break_uploads_after(uploads_before_failure)
    failed = run_dag("aico_knowledge_sync")
    assert failed.state == "failed"
    assert failed.task_states["sync_scenario[0]"] == "failed"
    with target.connect() as conn:
        last = conn.execute(sa.select(sync_log).order_by(sync_log.c.id.desc()).limit(1)).one()
    assert (last.status, last.stage, last.deleted, last.uploaded) == (
        "failed",
        "upload",
        3,
        uploads_before_failure,
    )
    assert "AICO upload failed after 2 tries: HTTP 503" in last.error
    assert [online for *_, online in kb(aico, "kb-sales")] == [False] * uploads_before_failure

    aico.heal()
    repaired = run_dag("aico_knowledge_sync")
    assert repaired.state == "success", repaired.task_states
    assert repaired.summary["scenarios"]["sales"]["deleted"] == uploads_before_failure
    new_items = [ITEMS["sales"][0], ("退换货", "签收后十五天内可退换。"), ITEMS["sales"][2]]
    assert kb(aico, "kb-sales") == expected_kb(new_items)  # no duplicate, nothing offline
    with target.connect() as conn:
        states = conn.execute(sa.select(documents.c.state, sa.func.count()).group_by(documents.c.state)).all()
    assert dict(states) == {"deleted": 3 + uploads_before_failure, "online": 3}
    # and then it is unchanged again
    calls = dict(aico.counters)
    assert run_dag("aico_knowledge_sync").summary["scenarios"]["sales"]["skipped"] is True
    assert dict(aico.counters) == calls


def test_dry_run_makes_no_write_call(aico, sqlite_conn, monkeypatch):
    set_hosts(monkeypatch, None)
    target = engine_for(sqlite_conn("dialog_dst"))
    build_scenarios(target)
    outcome = run_dag("aico_knowledge_sync", {"dry_run": True, "scenario_ids": ["sales"]})
    assert outcome.state == "success", outcome.task_states
    assert outcome.summary["dry_run"] is True
    assert outcome.summary["scenarios"] == {
        "sales": {
            "profile": "DEFAULT",
            "config_row": "sales",
            "items": 3,
            "uploaded": 0,
            "deleted": 0,
            "skipped": False,
            "online": 0,
            "dry_run": True,
            "would_delete": 0,
            "would_upload": 3,
        }
    }
    assert aico.writes() == 0 and aico.counters["pid"] == 1
    with target.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(sync_log)) == 0


def test_mariadb_profiles_switch_database_and_config_row_with_aico_host(
    aico, mariadb_conn, sqlite_conn, monkeypatch
):
    """Only the AICO_HOST Variable changes between the runs; databases, rows and knowledge bases follow."""
    sqlite_conn("dialog_dst")
    test_db = engine_for(mariadb_conn("dialog_dst_test"))
    prod_db = engine_for(mariadb_conn("dialog_dst_prod"))
    build_scenarios(test_db, {"sales": [("测试条目", "只在测试库")]})
    build_scenarios(prod_db, {"sales": ITEMS["sales"]})

    set_hosts(monkeypatch, TEST_HOST)
    test_run = run_dag("aico_knowledge_sync")
    assert test_run.state == "success", test_run.task_states
    assert (test_run.summary["profile"], test_run.summary["target_conn_id"]) == ("TEST", "dialog_dst_test")
    assert test_run.summary["scenarios"]["sales"]["config_row"] == "sales_test"
    assert kb(aico, "kb-sales-test") == [("测试条目", "只在测试库", True)]
    assert kb(aico, "kb-sales") == []

    set_hosts(monkeypatch, PROD_HOST)
    prod_run = run_dag("aico_knowledge_sync")
    assert (prod_run.summary["profile"], prod_run.summary["target_conn_id"]) == ("PROD", "dialog_dst_prod")
    assert prod_run.summary["scenarios"]["sales"]["config_row"] == "sales"
    assert kb(aico, "kb-sales") == expected_kb(ITEMS["sales"])
    assert kb(aico, "kb-sales-test") == [("测试条目", "只在测试库", True)]
    with test_db.connect() as conn, prod_db.connect() as conn2:
        assert conn.scalar(sa.select(sa.func.count()).select_from(sync_log)) == 1
        assert conn2.scalar(sa.select(sa.func.count()).select_from(sync_log)) == 1


def test_a_missing_profile_connection_fails_naming_it(aico, sqlite_conn, monkeypatch):
    sqlite_conn("dialog_dst")
    set_hosts(monkeypatch, TEST_HOST)
    outcome = run_dag("aico_knowledge_sync")
    assert outcome.state == "failed"
    assert outcome.task_states["resolve_profile"] == "failed"
