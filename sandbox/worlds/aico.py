"""Scenarios and knowledge items for the AICO sync: a test and a prod configuration row per scenario.

The accounts and knowledge bases the rows name are those of
:func:`sandbox.simulators.aico.demo_simulator`.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from include.aico.schema import knowledge_items, migrate, scenarios
from sandbox.simulators.aico import DEMO_ACCOUNTS

PROJECT = "customer-service"
ITEMS = {
    "sales": [
        ("发货时间", "付款后 48 小时内发货，节假日顺延。"),
        ("退换货", "签收后七天内可无理由退换，鞋子需保持吊牌完好。"),
        ("会员积分", "每消费 1 元积 1 分，100 分可抵扣 1 元。"),
    ],
    "support": [
        ("物流查询", "在订单详情页点击“查看物流”即可查询。"),
        ("发票", "电子发票在确认收货后 24 小时内发送到邮箱。"),
    ],
}


def scenario_rows(codes: list[str], *, aico_hosts: dict[str, str] | None = None) -> list[dict]:
    """Rows ``<code>`` (prod account) and ``<code>_test`` (test account) for each code."""
    (prod_user, prod_pw), (test_user, test_pw) = DEMO_ACCOUNTS.items()
    rows = []
    for code in codes:
        for suffix, user, password in (("", prod_user, prod_pw), ("_test", test_user, test_pw)):
            rows.append(
                {
                    "scenario_code": code + suffix,
                    "scenario_name": f"{code}{suffix}",
                    "aico_host": (aico_hosts or {}).get(code + suffix),
                    "aico_username": user,
                    "aico_password": password,
                    "aico_project": PROJECT,
                    "aico_kb_name": f"kb-{code}{suffix.replace('_', '-')}",
                }
            )
    return rows


def build_scenarios(
    engine: sa.Engine, items: dict[str, list[tuple[str, str]]] | None = None, **kwargs
) -> dict[str, int]:
    """Create the tables and fill them; return each user scenario's id by code."""
    items = ITEMS if items is None else items
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(scenarios.insert(), scenario_rows(list(items), **kwargs))
        ids = {
            r.scenario_code: int(r.id)
            for r in conn.execute(sa.select(scenarios.c.id, scenarios.c.scenario_code))
        }
        now = dt.datetime(2024, 6, 1, 12)
        rows = [
            {"scenario_id": ids[code], "title": title, "content": content, "updated_at": now}
            for code, pairs in items.items()
            for title, content in pairs
        ]
        if rows:
            conn.execute(knowledge_items.insert(), rows)
    return {code: ids[code] for code in items}


def edit_item(engine: sa.Engine, scenario_id: int, title: str, content: str) -> None:
    """Change the content of one item (the sync must notice it)."""
    with engine.begin() as conn:
        conn.execute(
            knowledge_items.update()
            .where(knowledge_items.c.scenario_id == scenario_id, knowledge_items.c.title == title)
            .values(content=content, updated_at=dt.datetime(2024, 6, 2, 12))
        )
