"""The rejects tables: every source row a pipeline could not use, with its reason, kept in the target
database beside the data, so a data engineer finds what was left out and why with one query.

Both the dialog and the product pipelines keep one; they differ only in the columns that identify a
source row. The bookkeeping columns and the rule "a row is rejected once, however often a re-run reads
it again" (the unique key over the identifying columns and the reason) are the same, and live here.
"""

from __future__ import annotations

import sqlalchemy as sa

from include.common.types import BigId

#: Characters of an error's description kept in ``detail``.
DETAIL_CHARS = 255


def rejects_table(
    name: str,
    metadata: sa.MetaData,
    *identity: sa.Column,
    unique: tuple[str, ...],
    unique_name: str,
) -> sa.Table:
    """A rejects table ``name``: an id, the ``identity`` columns of a source row, ``reason``, ``detail``,
    the run that rejected it and when. ``unique`` (identifying column names; ``reason`` is added)
    keeps a row that a re-run finds again from being stored twice: the first rejection is kept."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        *identity,
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(DETAIL_CHARS)),
        sa.Column("etl_run_id", sa.String(250), nullable=False),
        sa.Column("rejected_at", sa.DateTime, nullable=False, comment="UTC"),
        sa.UniqueConstraint(*unique, "reason", name=unique_name),
        mysql_charset="utf8mb4",
    )


def clip_detail(text: str | None) -> str | None:
    """``text`` cut to what ``detail`` holds; None for an empty description."""
    return (text or "")[:DETAIL_CHARS] or None
