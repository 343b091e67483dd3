"""Tables of the AICO knowledge sync, all in the dialog target database (``dialog_dst`` or a profile's).

The original service read two tables it did not define; the pipeline reads them with these columns and
accepts existing tables with more (nullable, defaulted or generated):

``scenarios`` (read; one row per scenario *and* per AICO configuration of it)

=============  ===================================================================================
id             primary key; knowledge items point at the user's scenario row by this id
scenario_code  unique code; ``<code>_test`` is the convention for the test configuration of ``<code>``
scenario_name  display name
aico_host      optional: the AICO host this row's credentials belong to (added by the migration)
aico_username  AICO account that obtains the token
aico_password  its password (a secret: never logged, never in XCom)
aico_project   the AICO project's name, resolved to its ``pid``
aico_kb_name   the knowledge base's name in that project, resolved to its ``kb_id``
=============  ===================================================================================

``scenario_knowledge_items`` (read): ``id``, ``scenario_id`` (the user's scenario), ``title``,
``content``, ``updated_at``. One item becomes one AICO document.

Written by the pipeline: ``aico_sync_log`` (one row per sync attempt of a scenario: counts, content hash,
the stage reached, AICO's answers) and ``aico_documents`` (every document the pipeline created in AICO
and its state, so that the next attempt deletes exactly what an earlier one left behind).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from include.common.table_shape import check_tables
from include.common.types import BigId, LongText

log = logging.getLogger(__name__)

PIPELINE = "aico_knowledge_sync"
metadata = sa.MetaData()

scenarios = sa.Table(
    "scenarios",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("scenario_code", sa.String(64), nullable=False, unique=True),
    sa.Column("scenario_name", sa.String(255)),
    sa.Column("aico_host", sa.String(255)),
    sa.Column("aico_username", sa.String(128)),
    sa.Column("aico_password", sa.String(255)),
    sa.Column("aico_project", sa.String(128)),
    sa.Column("aico_kb_name", sa.String(128)),
    mysql_charset="utf8mb4",
)

knowledge_items = sa.Table(
    "scenario_knowledge_items",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("scenario_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("content", LongText, nullable=False),
    sa.Column("updated_at", sa.DateTime),
    mysql_charset="utf8mb4",
)

sync_log = sa.Table(
    "aico_sync_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("scenario_id", sa.BigInteger, nullable=False),
    sa.Column("config_row_id", sa.BigInteger, nullable=False),
    sa.Column("config_code", sa.String(64), nullable=False),
    sa.Column("profile", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, comment="running, success or failed"),
    sa.Column("stage", sa.String(16), nullable=False, comment="the step reached (or failed in)"),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("items", sa.Integer, nullable=False),
    sa.Column("deleted", sa.Integer, nullable=False),
    sa.Column("uploaded", sa.Integer, nullable=False),
    sa.Column("online", sa.Integer, nullable=False),
    sa.Column("answers", LongText, comment="AICO's answers, JSON, without tokens"),
    sa.Column("error", sa.String(1000)),
    sa.Column("started_at", sa.DateTime, nullable=False, comment="UTC"),
    sa.Column("finished_at", sa.DateTime, comment="UTC"),
    sa.Index("ix_aico_sync_log_scenario", "scenario_id", "config_row_id", "id"),
    mysql_charset="utf8mb4",
)

documents = sa.Table(
    "aico_documents",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("scenario_id", sa.BigInteger, nullable=False),
    sa.Column("config_row_id", sa.BigInteger, nullable=False),
    sa.Column("kb_id", sa.String(128), nullable=False),
    sa.Column("doc_id", sa.String(128), nullable=False),
    sa.Column("item_id", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, comment="uploaded, online or deleted"),
    sa.Column("sync_log_id", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False, comment="UTC"),
    sa.UniqueConstraint("kb_id", "doc_id", name="uq_aico_documents_kb_doc"),
    sa.Index("ix_aico_documents_owner", "scenario_id", "config_row_id", "state"),
    mysql_charset="utf8mb4",
)

READ_TABLES = (scenarios, knowledge_items)
WRITE_TABLES = (sync_log, documents)
ADD_AICO_HOST = "ALTER TABLE scenarios ADD COLUMN aico_host VARCHAR(255) NULL"
"""The original service's own migration, run as it was written (MariaDB, PostgreSQL and SQLite agree)."""


def migrate(engine: sa.Engine) -> list[str]:
    """Bring the target database to the pipeline's shape; safe to run any number of times.

    Missing tables are created (an empty ``scenarios`` on a new database); ``scenarios.aico_host`` is
    added when an existing table lacks it; every existing table is checked first (allowing for that
    column), so a table of the wrong shape stops the run before anything is changed. Returns what it did.
    """
    with engine.connect() as conn:
        existing = set(sa.inspect(conn).get_table_names())
    check_tables(  # a read table may have more columns than these; it only has to have these
        engine,
        PIPELINE,
        reads=[t for t in READ_TABLES if t.name in existing],
        writes=WRITE_TABLES,
        may_add={"scenarios": ["aico_host"]},
    )
    done = []
    with engine.begin() as conn:
        for table in (*READ_TABLES, *WRITE_TABLES):
            if table.name not in existing:
                table.create(conn)
                done.append(f"created {table.name}")
        if "scenarios" in existing:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("scenarios")}
            if "aico_host" not in columns:
                conn.execute(sa.text(ADD_AICO_HOST))
                done.append("added scenarios.aico_host")
    for line in done:
        log.info("%s: %s", engine.url.database, line)
    return done
