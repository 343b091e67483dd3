"""Turning a call's utterances into one conversation row. Pure functions, no database.

Rules (documented in the DAG's docs too):

* **Ownership.** A call belongs to the Shanghai day and the group_code of its *first* utterance
  (ordered by ``created_at, seq, id``). A call that moves between groups is loaded once, by its first
  group, with every utterance from every group; one that runs past midnight is loaded by the day it
  started on, with the utterances after midnight included.
* **Bad utterances** (empty content, bytes that are not UTF-8, text carrying U+FFFD from an earlier
  broken decode) are left out of the turns and reported as rejects; the rest of the call is kept. A
  call with no usable utterance at all yields no conversation.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

SPEAKER_LABELS = {"customer": "客户", "agent": "坐席", "bot": "机器人"}


class Utterance(NamedTuple):
    """One source row, content still raw (``str`` or ``bytes`` as the driver delivered it).

    Database rows with these column names work wherever an Utterance is expected."""

    id: int
    call_id: str
    group_code: str
    speaker: str | None
    content: str | bytes | None
    seq: int | None
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Reject:
    source_id: int
    call_id: str | None
    group_code: str | None
    reason: str
    detail: str


def decode_content(raw: str | bytes | None) -> tuple[str | None, str | None]:
    """Return ``(text, None)`` for usable content or ``(None, reason)`` for a rejected one."""
    if raw is None:
        return None, "empty_content"
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"undecodable_text:{exc.reason} at byte {exc.start}"
    if "\ufffd" in raw:
        return None, "undecodable_text:contains U+FFFD replacement characters"
    text = raw.strip()
    if not text:
        return None, "empty_content"
    return text, None


def speaking_order(utterances: Iterable[Utterance]) -> list[Utterance]:
    """Sort a call's utterances by (created_at, seq, id): the order the functions below expect and
    the order the pipeline's query already delivers."""
    return sorted(utterances, key=lambda u: (u.created_at, u.seq if u.seq is not None else 0, u.id))


def owner_of(ordered: Sequence[Utterance]) -> tuple[dt.date, str]:
    """The (Shanghai day, group_code) that owns a call: those of its first utterance."""
    return ordered[0].created_at.date(), ordered[0].group_code


def assemble(ordered: Sequence[Utterance]) -> tuple[dict[str, Any] | None, list[Reject]]:
    """Build the conversation of one call from its utterances in speaking order; return it (or None)
    and the utterances rejected. Runs once per source row, so it stays a plain loop."""
    turns: list[dict[str, Any]] = []
    lines: list[str] = []
    rejects: list[Reject] = []
    labels = SPEAKER_LABELS
    # Unpacking once per row is several times cheaper than attribute access on database rows.
    for source_id, call_id, group_code, speaker, content, seq, created_at in ordered:
        text, reason = decode_content(content)
        if text is None:
            code, _, detail = reason.partition(":")
            rejects.append(Reject(source_id, call_id, group_code, code, detail))
            continue
        speaker = (speaker or "unknown").strip().lower()
        stamp = created_at.isoformat(" ", "seconds")
        turns.append(
            {"seq": seq, "time": stamp, "speaker": speaker, "group_code": group_code, "content": text}
        )
        lines.append(f"[{stamp[11:]}] {labels.get(speaker, speaker)}: {text}")
    if not turns:
        return None, rejects
    first, last = ordered[0], ordered[-1]
    conversation = {
        "call_id": first.call_id,
        "group_code": first.group_code,
        "dialog_date": first.created_at.date(),
        "turn_count": len(turns),
        "turns_json": json.dumps(turns, ensure_ascii=False, separators=(",", ":")),
        "dialog_text": "\n".join(lines),
        "first_time": first.created_at,
        "last_time": last.created_at,
    }
    return conversation, rejects
