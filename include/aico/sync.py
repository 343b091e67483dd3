"""Push one scenario's knowledge items to its AICO knowledge base, repairably.

Per scenario: choose the configuration row (:mod:`include.aico.scenarios`), hash the items, and skip
when the hash equals the last successful sync's and nothing of an earlier attempt is left unpublished.
Otherwise: token -> pid -> kb_id -> delete every document the pipeline put in that knowledge base
before (``aico_documents``, whatever attempt left it) -> upload each item -> put the uploads online.

Each step is committed as it happens: the attempt's ``aico_sync_log`` row records the stage reached,
the counts and AICO's answers, and each uploaded document is in ``aico_documents`` before the next
upload starts. So an attempt that stops part-way (a failure after the delete, an upload refused, the
worker killed) leaves a log saying where, and documents the next attempt knows about: it deletes them
all and uploads afresh, so the knowledge base ends with exactly one online document per item, never a
duplicate, never one left offline. (A document AICO created whose answer never arrived is the one
thing this cannot know about.)

A dry run reads the scenario and resolves the token, pid and kb_id, but makes no write call and writes
no log: its summary says what a real run would delete and upload.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from include.aico.client import AicoClient
from include.aico.config import AicoSettings
from include.aico.scenarios import Choice, Item, ScenarioError, choose_for_scenario, read_items
from include.aico.schema import documents, knowledge_items, scenarios, sync_log
from include.common.jsonutil import content_hash, stable_json

log = logging.getLogger(__name__)

Mask = Callable[[str], None]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def items_hash(items: list[Item]) -> str:
    return content_hash([[i.id, i.title, i.content] for i in items])


@dataclass(frozen=True)
class Status:
    """What the target database says about a scenario under one configuration row."""

    code: str
    choice: Choice
    items: list[Item]
    content_hash: str
    last_success_hash: str | None
    last_status: str | None
    unfinished_docs: int
    """Documents uploaded but not (yet) online: an attempt stopped part-way."""
    online_docs: int

    @property
    def unchanged(self) -> bool:
        return (
            self.last_status == "success"
            and self.last_success_hash == self.content_hash
            and self.unfinished_docs == 0
        )

    def entry(self, profile: str, **counts: Any) -> dict[str, Any]:
        """The scenario's line of the run summary (ids and counts only, never credentials)."""
        base = {
            "profile": profile,
            "config_row": self.choice.row.scenario_code,
            "items": len(self.items),
            "uploaded": 0,
            "deleted": 0,
            "skipped": False,
            "online": self.online_docs,
        }
        return {**base, **counts}


def scenario_status(conn: sa.Connection, scenario_id: int, profile: str, aico_host: str | None) -> Status:
    code, choice = choose_for_scenario(conn, scenario_id, profile, aico_host)
    items = read_items(conn, scenario_id)
    owner = (sync_log.c.scenario_id == scenario_id) & (sync_log.c.config_row_id == choice.row.id)
    last = conn.execute(
        sa.select(sync_log.c.status).where(owner).order_by(sync_log.c.id.desc()).limit(1)
    ).first()
    last_success = conn.scalar(
        sa.select(sync_log.c.content_hash)
        .where(owner & (sync_log.c.status == "success"))
        .order_by(sync_log.c.id.desc())
        .limit(1)
    )
    counts = dict(
        conn.execute(
            sa.select(documents.c.state, sa.func.count())
            .where(documents.c.scenario_id == scenario_id, documents.c.config_row_id == choice.row.id)
            .group_by(documents.c.state)
        ).all()
    )
    return Status(
        code,
        choice,
        items,
        items_hash(items),
        last_success,
        last.status if last else None,
        counts.get("uploaded", 0),
        counts.get("online", 0),
    )


def candidate_scenarios(conn: sa.Connection) -> list[int]:
    """Scenarios with items, and those whose documents are still in AICO (their items were removed)."""
    with_items = sa.select(knowledge_items.c.scenario_id)
    with_docs = sa.select(documents.c.scenario_id).where(documents.c.state != "deleted")
    ids = {int(r[0]) for r in conn.execute(sa.union(with_items, with_docs))}
    return sorted(ids)


def resolve_ids(conn: sa.Connection, wanted: list[int | str]) -> list[int]:
    """Scenario ids from the ``scenario_ids`` param, which takes ids or scenario codes."""
    ids = []
    for value in wanted:
        column = scenarios.c.id if isinstance(value, int) else scenarios.c.scenario_code
        found = conn.scalar(sa.select(scenarios.c.id).where(column == value))
        if found is None:
            raise ScenarioError(f"scenario {value!r} is not in scenarios")
        ids.append(int(found))
    return list(dict.fromkeys(ids))


def plan(engine: sa.Engine, profile: str, aico_host: str | None, wanted: list[int | str]) -> dict[str, Any]:
    """The scenarios to sync (all asked for, or every changed one) and the unchanged ones' entries."""
    with engine.connect() as conn:
        if wanted:
            return {
                "to_sync": [{"scenario_id": i, "code": _code(conn, i)} for i in resolve_ids(conn, wanted)],
                "unchanged": {},
            }
        to_sync, unchanged = [], {}
        for scenario_id in candidate_scenarios(conn):
            status = scenario_status(conn, scenario_id, profile, aico_host)
            if status.unchanged:
                unchanged[status.code] = status.entry(profile, skipped=True)
            else:
                to_sync.append({"scenario_id": scenario_id, "code": status.code})
    return {"to_sync": to_sync, "unchanged": unchanged}


def _code(conn: sa.Connection, scenario_id: int) -> str:
    return conn.scalar(sa.select(scenarios.c.scenario_code).where(scenarios.c.id == scenario_id))


class _Attempt:
    """The attempt's ``aico_sync_log`` row, updated (and committed) at each stage."""

    def __init__(self, engine: sa.Engine, status: Status, scenario_id: int, profile: str, run_id: str):
        self.engine = engine
        self.counts = {"deleted": 0, "uploaded": 0, "online": 0}
        self.stage = "token"
        row = {
            "scenario_id": scenario_id,
            "config_row_id": status.choice.row.id,
            "config_code": status.choice.row.scenario_code,
            "profile": profile,
            "run_id": run_id,
            "status": "running",
            "stage": self.stage,
            "content_hash": status.content_hash,
            "items": len(status.items),
            **self.counts,
            "started_at": _now(),
        }
        with engine.begin() as conn:
            self.id = conn.execute(sync_log.insert().values(**row)).inserted_primary_key[0]

    def update(self, conn: sa.Connection | None = None, **values: Any) -> None:
        values = {"stage": self.stage, **self.counts, **values}
        stmt = sync_log.update().where(sync_log.c.id == self.id).values(**values)
        if conn is not None:
            conn.execute(stmt)
        else:
            with self.engine.begin() as own:
                own.execute(stmt)


def sync_scenario(
    engine: sa.Engine,
    settings: AicoSettings,
    scenario_id: int,
    profile: str,
    aico_host: str | None,
    run_id: str,
    *,
    dry_run: bool = False,
    mask: Mask | None = None,
) -> dict[str, Any]:
    """Sync one scenario; return its summary entry (see :meth:`Status.entry`)."""
    with engine.connect() as conn:
        status = scenario_status(conn, scenario_id, profile, aico_host)
    row = status.choice.row
    log.info(
        "scenario %s: config row %s (%s), %d items",
        status.code,
        row.scenario_code,
        status.choice.reason,
        len(status.items),
    )
    if status.unchanged:
        log.info("scenario %s: items unchanged since the last successful sync: skipped", status.code)
        return status.entry(profile, skipped=True)
    missing = [name for name in ("username", "password", "project", "kb_name") if not getattr(row, name)]
    if missing:
        raise ScenarioError(f"scenarios row {row.scenario_code} lacks aico_{', aico_'.join(missing)}")
    if mask is not None:
        mask(row.password)
    outstanding_query = sa.select(documents.c.id, documents.c.kb_id, documents.c.doc_id).where(
        documents.c.scenario_id == scenario_id,
        documents.c.config_row_id == row.id,
        documents.c.state != "deleted",
    )
    with engine.connect() as conn:
        outstanding = conn.execute(outstanding_query).all()
    with AicoClient(settings, row.username, row.password, on_secret=mask) as client:
        pid = client.project_id(row.project)
        kb_id = client.kb_id(pid, row.kb_name)
        if dry_run:
            return status.entry(
                profile, dry_run=True, would_delete=len(outstanding), would_upload=len(status.items)
            )
        attempt = _Attempt(engine, status, scenario_id, profile, run_id)
        try:
            _write(engine, client, attempt, status, scenario_id, pid, kb_id, outstanding)
        except Exception as exc:
            attempt.update(
                status="failed", error=str(exc)[:1000], answers=_answers(client), finished_at=_now()
            )
            log.error("scenario %s: stopped at %s: %s", status.code, attempt.stage, exc)
            raise
        attempt.update(status="success", answers=_answers(client), finished_at=_now())
    return status.entry(profile, **attempt.counts)


def _write(engine, client, attempt, status, scenario_id, pid, kb_id, outstanding) -> None:
    row = status.choice.row
    attempt.stage = "delete"
    attempt.update()
    elsewhere = [d for d in outstanding if d.kb_id != kb_id]
    if elsewhere:  # the row now names another knowledge base: those documents cannot be reached here
        log.warning(
            "scenario %s: %d documents stay in knowledge base(s) %s",
            status.code,
            len(elsewhere),
            sorted({d.kb_id for d in elsewhere}),
        )
    here = [d for d in outstanding if d.kb_id == kb_id]
    if here:
        client.delete(pid, kb_id, [d.doc_id for d in here])
        attempt.counts["deleted"] = len(here)
        with engine.begin() as conn:
            conn.execute(
                documents.update()
                .where(documents.c.id.in_([d.id for d in here]))
                .values(state="deleted", updated_at=_now())
            )
            attempt.update(conn)
    attempt.stage = "upload"
    attempt.update()
    uploaded: list[str] = []
    for item in status.items:
        doc_id = client.upload(pid, kb_id, item.title, item.content)
        uploaded.append(doc_id)
        attempt.counts["uploaded"] += 1
        with engine.begin() as conn:  # known before the next upload: a failure later cannot orphan it
            conn.execute(
                documents.insert().values(
                    scenario_id=scenario_id,
                    config_row_id=row.id,
                    kb_id=kb_id,
                    doc_id=doc_id,
                    item_id=item.id,
                    state="uploaded",
                    sync_log_id=attempt.id,
                    updated_at=_now(),
                )
            )
            attempt.update(conn)
    attempt.stage = "online"
    attempt.update()
    if uploaded:
        client.online(pid, kb_id, uploaded)
    attempt.counts["online"] = len(uploaded)
    attempt.stage = "done"
    with engine.begin() as conn:
        if uploaded:
            conn.execute(
                documents.update()
                .where(documents.c.kb_id == kb_id, documents.c.doc_id.in_(uploaded))
                .values(state="online", updated_at=_now())
            )
        attempt.update(conn)


def _answers(client: AicoClient) -> str:
    """AICO's answers for the log: each operation's last answer and how many it gave (no token)."""
    summary: dict[str, Any] = {}
    for answer in client.answers:
        op = summary.setdefault(answer["op"], {"count": 0})
        op["count"] += 1
        op["last"] = {k: answer[k] for k in ("status", "code", "msg", "data")}
    return stable_json(summary)


def summarize(
    profile: dict[str, Any],
    entries: list[dict[str, Any]],
    unchanged: dict[str, Any],
    codes: list[str],
    dry_run: bool,
) -> dict[str, Any]:
    per_scenario = dict(unchanged)
    per_scenario.update(zip(codes, entries, strict=True))
    return {
        "profile": profile["profile"],
        "source_conn_id": profile["source_conn_id"],
        "target_conn_id": profile["target_conn_id"],
        "dry_run": dry_run,
        "scenarios": dict(sorted(per_scenario.items())),
    }
