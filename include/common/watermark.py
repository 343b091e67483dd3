"""Durable keyset watermarks: ``(last_processed_at, last_processed_id)`` per source table.

The committed watermark lives in ``etl_watermark`` and is written with :func:`save_watermark` inside
the same transaction as the data it covers, so a crash can never leave the watermark ahead of (or
behind) the rows already loaded. The pair is a keyset cursor: the next batch starts strictly after
``(at, id)``, which never loses rows that share one timestamp across a batch boundary.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import sqlalchemy as sa

from include.common.sql import upsert
from include.common.types import BigId

metadata = sa.MetaData()

etl_watermark = sa.Table(
    "etl_watermark",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("table_name", sa.String(128), nullable=False, unique=True),
    sa.Column("last_processed_at", sa.DateTime(), nullable=True),
    sa.Column("last_processed_id", sa.BigInteger(), nullable=True),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)


class Watermark(NamedTuple):
    """A position in a source ordered by ``(at, id)``; ``(None, None)`` means "from the start"."""

    at: dt.datetime | None
    id: int | None

    def to_xcom(self) -> dict[str, str | int | None]:
        return {"at": self.at.isoformat(sep=" ") if self.at else None, "id": self.id}

    @classmethod
    def from_xcom(cls, value: dict[str, str | int | None]) -> Watermark:
        at = value.get("at")
        return cls(dt.datetime.fromisoformat(at) if at else None, value.get("id"))


START = Watermark(None, None)


def ensure_watermark_table(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=[etl_watermark], checkfirst=True)


def load_watermark(conn: sa.Connection, table_name: str) -> Watermark:
    row = conn.execute(
        sa.select(etl_watermark.c.last_processed_at, etl_watermark.c.last_processed_id).where(
            etl_watermark.c.table_name == table_name
        )
    ).first()
    return Watermark(row[0], row[1]) if row else START


def save_watermark(conn: sa.Connection, table_name: str, mark: Watermark) -> None:
    """Record ``mark`` for ``table_name``; call it inside the transaction that wrote the batch."""
    upsert(
        conn,
        etl_watermark,
        [
            {
                "table_name": table_name,
                "last_processed_at": mark.at,
                "last_processed_id": mark.id,
                "updated_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
            }
        ],
        key=["table_name"],
    )
