"""Which ``scenarios`` row's AICO credentials a scenario is synced with, and reading its items.

Knowledge items stay bound to the user's scenario (``scenario_knowledge_items.scenario_id``). The AICO
configuration (account, project, knowledge base) may come from another row: the original service kept
test credentials in a second row coded ``<scenario_code>_test`` and could bind a row to an AICO host
with ``scenarios.aico_host``. Among the scenario's rows (``<code>`` and ``<code>_test``) it picked:

1. a row whose ``aico_host`` equals ``AICO_HOST`` (when several do, the profile's preference decides);
2. otherwise ``<code>_test`` under the TEST profile, ``<code>`` under PROD;
3. otherwise (no profile, or no ``_test`` row under TEST) the scenario's own row.

:func:`select_config_row` is pure, so each case is a table-driven test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from include.aico.schema import knowledge_items, scenarios

TEST_SUFFIX = "_test"


class ScenarioError(ValueError):
    """A scenario that cannot be synced (unknown id, no usable configuration row)."""


@dataclass(frozen=True)
class ConfigRow:
    """A ``scenarios`` row as the sync uses it. ``repr`` leaves the password out."""

    id: int
    scenario_code: str
    aico_host: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    project: str | None = None
    kb_name: str | None = None


@dataclass(frozen=True)
class Choice:
    row: ConfigRow
    reason: str


def select_config_row(
    scenario_code: str, rows: Sequence[ConfigRow], profile: str, aico_host: str | None
) -> Choice:
    """The row whose AICO credentials serve ``scenario_code`` under ``profile`` and ``AICO_HOST``."""
    test_code = scenario_code + TEST_SUFFIX
    candidates = [r for r in rows if r.scenario_code in (scenario_code, test_code)]
    preferred = test_code if profile == "TEST" else scenario_code

    def by_preference(pool: list[ConfigRow]) -> ConfigRow:
        return next((r for r in pool if r.scenario_code == preferred), pool[0])

    host = (aico_host or "").strip()
    if host:
        matching = [r for r in candidates if (r.aico_host or "").strip() == host]
        if matching:
            chosen = by_preference(matching)
            return Choice(chosen, f"aico_host matches AICO_HOST ({chosen.scenario_code})")
    for row in candidates:
        if row.scenario_code == preferred:
            return Choice(row, f"{profile} profile: {preferred}")
    for row in candidates:
        if row.scenario_code == scenario_code:
            return Choice(row, f"{profile} profile, no {preferred} row: the scenario's own row")
    raise ScenarioError(f"scenario {scenario_code!r} has no configuration row")


def _config_row(row: sa.Row) -> ConfigRow:
    return ConfigRow(
        id=int(row.id),
        scenario_code=row.scenario_code,
        aico_host=row.aico_host,
        username=row.aico_username,
        password=row.aico_password,
        project=row.aico_project,
        kb_name=row.aico_kb_name,
    )


def choose_for_scenario(
    conn: sa.Connection, scenario_id: int, profile: str, aico_host: str | None
) -> tuple[str, Choice]:
    """The user's scenario code and the configuration row chosen for it."""
    code = conn.scalar(sa.select(scenarios.c.scenario_code).where(scenarios.c.id == scenario_id))
    if code is None:
        raise ScenarioError(f"scenario id {scenario_id} is not in scenarios")
    rows = conn.execute(
        sa.select(scenarios).where(scenarios.c.scenario_code.in_([code, code + TEST_SUFFIX]))
    ).all()
    return code, select_config_row(code, [_config_row(r) for r in rows], profile, aico_host)


@dataclass(frozen=True)
class Item:
    id: int
    title: str
    content: str


def read_items(conn: sa.Connection, scenario_id: int) -> list[Item]:
    """The scenario's knowledge items in id order (the order they are uploaded in)."""
    query = (
        sa.select(knowledge_items.c.id, knowledge_items.c.title, knowledge_items.c.content)
        .where(knowledge_items.c.scenario_id == scenario_id)
        .order_by(knowledge_items.c.id)
    )
    return [Item(int(r.id), r.title, r.content) for r in conn.execute(query)]
