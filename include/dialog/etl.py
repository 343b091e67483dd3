"""The dialog ETL's work: the day's groups, one group's conversations, the unroutable rows.

These functions take SQLAlchemy engines and plain values and never touch Airflow's context, so the
DAG, the tests and the benchmark call exactly the same code. Source and target may be different
servers; the source is only ever read.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import operator
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa

from include.common.rejects import clip_detail
from include.common.sql import insert_ignore
from include.dialog.conversation import Reject, Utterance, assemble, owner_of
from include.dialog.days import day_bounds
from include.dialog.schema import people_customer_dialog as src
from include.dialog.schema import prepared_conversation_rejects, prepared_conversations

log = logging.getLogger(__name__)

#: How far before and after the day the rows of a call that crosses midnight are looked for.
CALL_GRACE = dt.timedelta(hours=6)
BATCH_SIZE = 1000
#: A batch is also flushed once its text reaches this size, so very long chats cannot grow memory.
BATCH_BYTES = 2 * 1024 * 1024
FETCH_SIZE = 5000
#: Calls fetched per query: below MySQL/MariaDB's eq_range_index_dive_limit (200), see _stream_calls.
CALL_CHUNK = 100


@dataclass
class GroupResult:
    """What one group's load did; the DAG's summary adds these up."""

    group_code: str
    conversations: int = 0
    inserted: int = 0
    skipped_existing: int = 0
    rejected: int = 0
    #: ``streaming`` or ``pushdown`` (:mod:`include.dialog.pushdown`), and why a group the run pushed
    #: down was streamed instead.
    path: str = "streaming"
    fallback: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _content_column(content: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    """Read content as raw bytes where the server may hold invalid UTF-8, so one bad row cannot
    abort the driver's decoding of the whole stream; PostgreSQL guarantees valid UTF-8 text."""
    if dialect in ("mysql", "sqlite"):
        return sa.cast(content, sa.LargeBinary).label("content")
    return content


def find_groups(engine: sa.Engine, day: dt.date) -> list[str]:
    """The distinct group_codes that have utterances on ``day`` (Shanghai), sorted."""
    start, end = day_bounds(day)
    query = (
        sa.select(src.c.group_code)
        .where(src.c.created_at >= start, src.c.created_at < end)
        .where(src.c.group_code.is_not(None), src.c.group_code != "")
        .distinct()
        .order_by(src.c.group_code)
    )
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]


def _group_calls_query(day: dt.date, group_code: str) -> sa.Select:
    """The call_ids with an utterance in ``group_code`` on ``day``, in order (index on group_code,
    created_at, call_id)."""
    start, end = day_bounds(day)
    return (
        sa.select(src.c.call_id)
        .where(src.c.group_code == group_code, src.c.created_at >= start, src.c.created_at < end)
        .where(src.c.call_id.is_not(None), src.c.call_id != "")
        .distinct()
        .order_by(src.c.call_id)
    )


def _call_rows_query(dialect: str, day: dt.date, call_ids: list[str]) -> sa.Select:
    """Every routable utterance of ``call_ids`` within the grace window around the day, in speaking
    order per call (index on call_id, created_at)."""
    start, end = day_bounds(day)
    return (
        sa.select(
            src.c.id,
            src.c.call_id,
            src.c.group_code,
            src.c.speaker,
            _content_column(src.c.content, dialect),
            src.c.seq,
            src.c.created_at,
        )
        .where(src.c.call_id.in_(call_ids))
        .where(src.c.created_at >= start - CALL_GRACE, src.c.created_at < end + CALL_GRACE)
        .where(src.c.group_code.is_not(None), src.c.group_code != "")
        .order_by(src.c.call_id, src.c.created_at, src.c.seq, src.c.id)
    )


def _stream_calls(source: sa.Engine, day: dt.date, group_code: str) -> Iterator[list[Utterance]]:
    """Yield the rows of each call the group touches on ``day``, in speaking order.

    One connection streams the group's call_ids; a second fetches their rows :data:`CALL_CHUNK`
    calls at a time. The short IN lists let MySQL/MariaDB estimate by index dives, so the rows come
    through the (call_id, created_at) index even on a table without statistics, where a join would
    scan the whole day once per group; memory stays at one chunk of calls. The rows themselves
    serve as Utterances (same names), saving a copy per row.
    """
    dialect = source.dialect.name
    with source.connect() as ids_conn, source.connect() as rows_conn:
        calls = ids_conn.execution_options(stream_results=True, yield_per=CALL_CHUNK)
        for chunk in calls.execute(_group_calls_query(day, group_code)).partitions(CALL_CHUNK):
            query = _call_rows_query(dialect, day, [row[0] for row in chunk])
            rows = rows_conn.execution_options(stream_results=True, yield_per=FETCH_SIZE).execute(query)
            for _call_id, utterances in itertools.groupby(rows, key=operator.itemgetter(1)):
                yield list(utterances)


def _reject_rows(rejects: list[Reject], day: dt.date, run_id: str, now: dt.datetime) -> list[dict]:
    return [
        {
            "source_id": r.source_id,
            "call_id": r.call_id,
            "group_code": r.group_code,
            "dialog_date": day,
            "reason": r.reason,
            "detail": clip_detail(r.detail),
            "etl_run_id": run_id,
            "rejected_at": now,
        }
        for r in rejects
    ]


@dataclass
class _Batch:
    """Conversations and rejects waiting to be written, bounded by count and by text size so that
    very long chats cannot grow memory."""

    max_rows: int
    max_bytes: int
    conversations: list[dict] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    chars: int = 0

    def add(self, conversation: dict | None, rejects: list[Reject]) -> None:
        self.rejects.extend(rejects)
        if conversation is not None:
            self.conversations.append(conversation)
            self.chars += len(conversation["turns_json"]) + len(conversation["dialog_text"])

    def full(self) -> bool:
        # Characters, not bytes: cheap to count, and at most 4 bytes each in UTF-8.
        rows = max(len(self.conversations), len(self.rejects))
        return rows >= self.max_rows or self.chars * 4 >= self.max_bytes

    def write(self, target: sa.Engine, day: dt.date, run_id: str, result: GroupResult) -> None:
        """One transaction: the conversations (insert-ignore on call_id) and the rejects."""
        if not (self.conversations or self.rejects):
            return
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        for row in self.conversations:
            row["etl_run_id"], row["loaded_at"] = run_id, now
        with target.begin() as conn:
            inserted = insert_ignore(conn, prepared_conversations, self.conversations)
            insert_ignore(conn, prepared_conversation_rejects, _reject_rows(self.rejects, day, run_id, now))
        result.inserted += inserted
        result.skipped_existing += len(self.conversations) - inserted
        result.rejected += len(self.rejects)
        self.conversations, self.rejects, self.chars = [], [], 0


def load_group(
    source: sa.Engine,
    target: sa.Engine,
    day: dt.date,
    group_code: str,
    run_id: str,
    batch_size: int = BATCH_SIZE,
    batch_bytes: int = BATCH_BYTES,
) -> GroupResult:
    """Assemble and insert the conversations that ``group_code`` owns on ``day``.

    Each batch is inserted with insert-ignore on the unique ``call_id`` in its own transaction, so a
    re-run (or a second run racing this one) inserts nothing twice and a failure loses at most the
    batch in flight; the counts come from what the database actually inserted.
    """
    result = GroupResult(group_code)
    batch = _Batch(batch_size, batch_bytes)
    for utterances in _stream_calls(source, day, group_code):
        if owner_of(utterances) != (day, group_code):
            continue  # another day's or another group's task loads this call
        conversation, rejects = assemble(utterances)
        if conversation is not None:
            result.conversations += 1
        batch.add(conversation, rejects)
        if batch.full():
            batch.write(target, day, run_id, result)
    batch.write(target, day, run_id, result)
    log.info("group %s on %s: %s", group_code, day, result)
    return result


def reject_unroutable(source: sa.Engine, target: sa.Engine, day: dt.date, run_id: str) -> int:
    """Record the day's utterances that no group task can load (no call_id or no group_code)."""
    start, end = day_bounds(day)
    missing_call = sa.or_(src.c.call_id.is_(None), src.c.call_id == "")
    missing_group = sa.or_(src.c.group_code.is_(None), src.c.group_code == "")
    query = (
        sa.select(src.c.id, src.c.call_id, src.c.group_code, missing_call.label("no_call"))
        .where(src.c.created_at >= start, src.c.created_at < end)
        .where(sa.or_(missing_call, missing_group))
    )
    total = 0
    with source.connect() as sconn:
        result = sconn.execution_options(stream_results=True, yield_per=FETCH_SIZE).execute(query)
        for chunk in result.partitions(BATCH_SIZE):
            rejects = [
                Reject(
                    r.id,
                    r.call_id or None,
                    r.group_code or None,
                    "missing_call_id" if r.no_call else "missing_group_code",
                    "",
                )
                for r in chunk
            ]
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            with target.begin() as tconn:
                insert_ignore(tconn, prepared_conversation_rejects, _reject_rows(rejects, day, run_id, now))
            total += len(rejects)
    log.info("unroutable rows on %s: %d", day, total)
    return total


def summarize(day: dt.date, results: list[dict], path: str) -> dict:
    """The seed service's response shape, plus the load path the run chose and the groups that fell
    back from pushdown to streaming (``streaming_fallbacks``, group_code -> reason) if any."""
    summary = {
        "target_date": day.isoformat(),
        "groups_processed": len(results),
        "conversations_total": sum(r["conversations"] for r in results),
        "inserted": sum(r["inserted"] for r in results),
        "skipped_existing": sum(r["skipped_existing"] for r in results),
        "path": path,
    }
    fallbacks = {r["group_code"]: r["fallback"] for r in results if r.get("fallback")}
    if fallbacks:
        summary["streaming_fallbacks"] = fallbacks
    return summary
