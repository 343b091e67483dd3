"""The synthetic Callio world: reproducible, sized as asked, with its edge cases, and able to change."""

from __future__ import annotations

import ast
import json
import re
from collections import Counter

import pytest

from sandbox.worlds.callio import DAY_MS, DEFAULT_END_MS, CallioWorld, ascii_slug, time_value

OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def snapshot(world: CallioWorld) -> str:
    return json.dumps(
        {n: [t.account(), t.groups, t.staff, t.customers, t.calls] for n, t in world.tenants.items()},
        sort_keys=True,
        ensure_ascii=False,
    )


def test_same_seed_same_world_and_tenants_independent_of_their_number():
    assert snapshot(CallioWorld(2, 300, 400, seed=4)) == snapshot(CallioWorld(2, 300, 400, seed=4))
    assert snapshot(CallioWorld(2, 300, 400, seed=4)) != snapshot(CallioWorld(2, 300, 400, seed=5))
    three = CallioWorld(3, 300, 400, seed=4)
    one = CallioWorld(1, 300, 400, seed=4)
    assert one.tenants["anphat"].customers == three.tenants["anphat"].customers


def test_sizes_ids_and_times():
    world = CallioWorld(tenants=12, customers=500, calls=700, span_ms=10 * DAY_MS, burst=100, seed=2)
    assert len(world.tenants) == 12 and len(set(world.tenants)) == 12
    assert len({a["email"] for a in world.accounts()}) == 12 and all(a["password"] for a in world.accounts())
    assert world.end_ms == DEFAULT_END_MS and world.start_ms == DEFAULT_END_MS - 10 * DAY_MS
    ids = []
    for tenant in world.tenants.values():
        assert (len(tenant.customers), len(tenant.calls), len(tenant.staff)) == (500, 700, 4)
        assert len(tenant.groups) >= 2
        for records, field in ((tenant.customers, "updateTime"), (tenant.calls, "createTime")):
            times = [time_value(r[field]) for r in records]
            assert world.start_ms <= min(times) and max(times) <= world.end_ms
        everything = tenant.customers + tenant.calls + tenant.staff + tenant.groups
        ids += [r["_id"] for r in everything if "_id" in r]
        staff_ids = {s["_id"] for s in tenant.staff}
        assert {c["user"]["_id"] for c in tenant.customers if c.get("user")} <= staff_ids
        assert {s["group"] for s in tenant.staff} <= {g["_id"] for g in tenant.groups}
        assert len({s["name"] for s in tenant.staff}) == len(tenant.staff)
    assert all(OBJECT_ID.fullmatch(i) for i in ids) and len(set(ids)) == len(ids)


def test_edge_cases_are_present():
    world = CallioWorld(tenants=1, customers=3_000, calls=3_000, burst=2_000, seed=3)
    tenant = world.tenants["anphat"]
    customers, calls = tenant.customers, tenant.calls
    assert sum(c["updateTime"] == tenant.burst_ms for c in customers) == 1_500  # half of them at most
    assert sum(c["createTime"] == tenant.burst_ms for c in calls) == 1_500
    assert tenant.burst_ms % 3_600_000 == 0
    # malformed records
    assert sum("_id" not in c for c in customers) == 1 and sum("_id" not in c for c in calls) == 1
    assert sum(isinstance(c["updateTime"], str) for c in customers) == 1
    assert sum(isinstance(c["createTime"], str) for c in calls) == 1
    assert any(c.get("assignedTime") == "N/A" for c in customers)
    assert any(c.get("startTime") == "" for c in calls)
    # references in every spelling
    forms = Counter(_reference_form(c["fromUser"]) for c in calls if "fromUser" in c)
    assert set(forms) == {"object", "json", "repr", "json twice"} and forms["object"] > len(calls) // 3
    assert {_reference_form(c["fromGroup"]) for c in calls if "fromGroup" in c} == set(forms)
    assert all(set(c["fromUser"]) == {"_id", "name"} for c in calls if isinstance(c.get("fromUser"), dict))
    # custom fields in every spelling, unassigned customers, unanswered calls
    value_keys = {k for c in customers for f in c["customFields"] for k in f if k != "key"}
    assert value_keys == {"val", "value", "values", "text", "name"}
    assert any(c["customFields"] == [] for c in customers)
    assert any(c.get("user") is None and c.get("assignedTime") == 0 for c in customers)
    assert any("user" not in c for c in customers)
    unanswered = [c for c in calls if c["hangupCause"] != "NORMAL_CLEARING"]
    assert any(c.get("answerTime") == 0 for c in unanswered) and any(
        "answerTime" not in c for c in unanswered
    )
    assert all(c["billDuration"] == 0 for c in unanswered)
    assert {c["direction"] for c in calls} == {"inbound", "outbound"}
    # Vietnamese names
    assert any(
        re.search("[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", c["name"]) for c in customers
    )
    assert ascii_slug("Đặng Thu Hà") == "dang.thu.ha"


def _reference_form(value) -> str:
    if isinstance(value, dict):
        return "object"
    try:
        decoded = json.loads(value)
    except json.JSONDecodeError:
        assert isinstance(ast.literal_eval(value), dict)
        return "repr"
    return "json" if isinstance(decoded, dict) else "json twice"


def test_advance_changes_the_world_reproducibly():
    first, second = CallioWorld(2, 400, 300, seed=6), CallioWorld(2, 400, 300, seed=6)
    before = first.end_ms
    old_customers = list(first.tenants["anphat"].customers)
    old_staff = {s["_id"]: s["name"] for s in first.tenants["anphat"].staff}
    change = first.advance(before + 7_200_000, customers=25, calls=40, renames=2)
    second.advance(before + 7_200_000, customers=25, calls=40, renames=2)
    assert snapshot(first) == snapshot(second)
    assert first.end_ms == change.now_ms == before + 7_200_000

    tenant = first.tenants["anphat"]
    assert tenant.version == 1
    updated = {c["_id"]: c for c in tenant.customers if c.get("_id") in set(change.customers["anphat"])}
    assert len(updated) == 25 and all(before < c["updateTime"] <= change.now_ms for c in updated.values())
    assert all(
        c["updateTime"] <= before for c in old_customers if c.get("_id") in updated
    )  # not edited in place
    assert len(tenant.calls) == 340 and [c["_id"] for c in tenant.calls[-40:]] == change.calls["anphat"]
    assert all(before < c["createTime"] <= change.now_ms for c in tenant.calls[-40:])
    renamed = [s for s in tenant.staff if s["_id"] in change.staff["anphat"]]
    assert len(renamed) == 2 and all(s["name"] != old_staff[s["_id"]] for s in renamed)
    assert all(s["updateTime"] == change.now_ms for s in renamed)
    everything = [
        r["_id"] for r in tenant.customers + tenant.calls + tenant.staff + tenant.groups if "_id" in r
    ]
    assert len(set(everything)) == len(everything)

    again = first.advance()
    assert again.now_ms == change.now_ms + 3_600_000 and first.tenants["anphat"].version == 2
    with pytest.raises(ValueError, match="forward"):
        first.advance(first.end_ms)
