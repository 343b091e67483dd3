"""Tables of the dialog pipeline.

``people_customer_dialog`` (source, read-only for the pipeline) holds one row per utterance of a
customer-service call:

=============  ==================================================================================
id             primary key
call_id        the call (conversation) the utterance belongs to
group_code     the service group (skill group / queue) that handled it
speaker        ``customer``, ``agent`` or ``bot``
content        the utterance text (UTF-8; Chinese in practice)
seq            position of the utterance within the call (1-based)
created_at     when it was said, **Asia/Shanghai local time**, no time zone stored
=============  ==================================================================================

``prepared_conversations`` (target) holds one row per call, see :data:`prepared_conversations`;
``prepared_conversation_rejects`` keeps every source row that could not be used, with its reason.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from include.common.rejects import rejects_table
from include.common.table_shape import check_tables
from include.common.types import BigId, LongText

source_metadata = sa.MetaData()
target_metadata = sa.MetaData()

people_customer_dialog = sa.Table(
    "people_customer_dialog",
    source_metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64)),
    sa.Column("group_code", sa.String(32)),
    sa.Column("speaker", sa.String(16)),
    sa.Column("content", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")),
    sa.Column("seq", sa.Integer),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # The indexes the pipeline's queries rely on: the day's groups, a group's calls, a call's rows.
    sa.Index("ix_pcd_created_group", "created_at", "group_code"),
    sa.Index("ix_pcd_group_created_call", "group_code", "created_at", "call_id"),
    sa.Index("ix_pcd_call_created", "call_id", "created_at"),
)

prepared_conversations = sa.Table(
    "prepared_conversations",
    target_metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("call_id", sa.String(64), nullable=False, unique=True),
    sa.Column("group_code", sa.String(32), nullable=False, comment="group of the first utterance"),
    sa.Column("dialog_date", sa.Date, nullable=False, comment="Shanghai date of the first utterance"),
    sa.Column("turn_count", sa.Integer, nullable=False),
    sa.Column("turns_json", LongText, nullable=False, comment="ordered turns as a JSON array"),
    sa.Column("dialog_text", LongText, nullable=False, comment="one '[HH:MM:SS] role: text' line a turn"),
    sa.Column("first_time", sa.DateTime, nullable=False),
    sa.Column("last_time", sa.DateTime, nullable=False),
    sa.Column("etl_run_id", sa.String(250), nullable=False),
    sa.Column("loaded_at", sa.DateTime, nullable=False, comment="UTC"),
    sa.Index("ix_pc_date_group", "dialog_date", "group_code"),
    mysql_charset="utf8mb4",
)

# A re-run finds the same bad rows again; the first rejection (and its run id) is kept.
prepared_conversation_rejects = rejects_table(
    "prepared_conversation_rejects",
    target_metadata,
    sa.Column("source_id", sa.BigInteger, nullable=False),
    sa.Column("call_id", sa.String(64)),
    sa.Column("group_code", sa.String(32)),
    sa.Column("dialog_date", sa.Date, nullable=False),
    unique=("source_id",),
    unique_name="uq_pcr_source_reason",
)


def check_source_table(engine: sa.Engine) -> None:
    """Fail (:class:`~include.common.table_shape.TableShapeError`) unless ``people_customer_dialog``
    exists with the columns the pipeline reads."""
    check_tables(engine, "dialog_etl", reads=[people_customer_dialog])


def ensure_target_tables(engine: sa.Engine) -> None:
    """Create the target tables if missing. Existing ones are never altered: they are checked first,
    and one that cannot take the pipeline's rows fails the run before anything is written."""
    check_tables(engine, "dialog_etl", writes=target_metadata.sorted_tables)
    target_metadata.create_all(engine, checkfirst=True)
