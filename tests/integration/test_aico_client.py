"""The AICO client against the simulator over real HTTP: the contract, token expiry, 429/5xx, overrides."""

from __future__ import annotations

import pytest

from include.aico.client import AicoApiError, AicoClient
from include.aico.config import AicoConfigError, settings_from
from include.aico.contract import Contract
from sandbox.simulators.aico import AicoSimulator

PASSWORD = "pw-Секрет-1"


def make_sim(contract: Contract | None = None) -> AicoSimulator:
    sim = AicoSimulator(contract)
    sim.add_account("bot", PASSWORD)
    sim.add_knowledge_base("crm", "kb-sales")
    return sim


def client_for(base_url: str, extra: dict | None = None, password: str = PASSWORD, waits=None) -> AicoClient:
    settings = settings_from(base_url, None, None, {"backoff_s": 0.01, **(extra or {})}, None)
    return AicoClient(
        settings, "bot", password, sleep=(waits.append if waits is not None else lambda s: None)
    )


def test_the_whole_sequence_and_an_expired_token():
    sim = make_sim()
    with sim.serve() as url, client_for(url) as client:
        pid = client.project_id("crm")
        kb = client.kb_id(pid, "kb-sales")
        first = client.upload(pid, kb, "发货", "48 小时内")
        sim.expire_tokens()
        second = client.upload(pid, kb, "退货", "七天")
        assert client.online(pid, kb, [first, second]) == 2
        assert client.delete(pid, kb, [first, "never-existed"]) == 2
    assert [(d.doc_id, d.title, d.online) for d in sim.docs("crm", "kb-sales")] == [(second, "退货", True)]
    assert sim.counters["token"] == 2  # the expired token was replaced once
    assert all(PASSWORD not in str(a) and "access_token" not in str(a) for a in client.answers)
    assert client.calls["upload"] == 3  # the refused attempt and two uploads


def test_429_and_5xx_are_retried_honouring_retry_after():
    sim, waits = make_sim(), []
    with sim.serve() as url, client_for(url, waits=waits) as client:
        sim.faults.fail_next(429, headers={"Retry-After": "2"})
        sim.faults.fail_next(502)
        assert client.project_id("crm")
    assert waits[0] == 2.0 and len(waits) == 2


def test_failures_name_the_operation_without_secrets():
    sim = make_sim()
    with sim.serve() as url:
        with client_for(url, password="wrong-password") as client, pytest.raises(AicoApiError) as info:
            client.project_id("crm")
        assert "AICO token: HTTP 401" in str(info.value) and "wrong-password" not in str(info.value)
        with client_for(url) as client, pytest.raises(AicoApiError, match="project not found"):
            client.project_id("nope")
        with client_for(url, {"attempts": 2}) as client:
            pid = client.project_id("crm")
            kb = client.kb_id(pid, "kb-sales")
            sim.break_uploads_after(0)
            with pytest.raises(AicoApiError, match="AICO upload failed after 2 tries: HTTP 503"):
                client.upload(pid, kb, "t", "c")


def test_overridden_paths_and_field_names_from_the_connection_extra():
    overrides = {
        "token_path": "/api/login",
        "token_field": "token",
        "upload_path": "/api/kb/{kb_id}/docs",
        "doc_id_field": "documentId",
        "code_field": "errcode",
        "ok_codes": [200],
    }
    sim = make_sim(Contract.from_extra(overrides))
    with sim.serve() as url, client_for(url, {"contract": overrides}) as client:
        pid = client.project_id("crm")
        kb = client.kb_id(pid, "kb-sales")
        doc = client.upload(pid, kb, "t", "c")
    assert [d.doc_id for d in sim.docs("crm", "kb-sales")] == [doc]
    assert {r.path for r in sim.api.requests} >= {"/api/login", f"/api/kb/{kb}/docs"}


@pytest.mark.parametrize(
    ("host", "extra", "aico_host", "message"),
    [
        (None, {}, None, "needs the AICO_HOST Variable"),
        ("h", {"contract": {"nope": "x"}}, None, "unknown key(s) nope"),
        ("h", {"contract": {"upload_path": "/x/{project}"}}, None, "may only use {pid} and {kb_id}"),
        ("h", {"attempts": "zero"}, None, "attempts must be a positive number"),
    ],
)
def test_bad_settings_are_named(host, extra, aico_host, message):
    with pytest.raises(AicoConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings_from(host, None, None, extra, aico_host)


def test_base_url_follows_aico_host():
    assert settings_from(None, None, None, {}, "20.17.0.1").base_url == "http://20.17.0.1"
    assert (
        settings_from("https://{AICO_HOST}:8443", None, None, {}, "a.example").base_url
        == "https://a.example:8443"
    )
    assert (
        settings_from("http://127.0.0.1:18768", None, None, {}, "20.17.0.1").base_url
        == "http://127.0.0.1:18768"
    )
