"""Alembic for the chatbot's PostgreSQL, from the repository, against the ``chatbot_postgres`` connection.

The original service ran ``alembic ...`` from its own directory with a URL built from ``POSTGRES_*``.
Here one command does the same for any Alembic subcommand::

    make chatbot-alembic ARGS="upgrade head"        # or: python -m include.chatbot.alembic_cli upgrade head
    make chatbot-alembic ARGS="downgrade 001"
    make chatbot-alembic ARGS="current"              # history, stamp head, revision --autogenerate -m "..."

The database is whatever ``chatbot_postgres`` is (``AIRFLOW_CONN_CHATBOT_POSTGRES`` overrides the
metadata database's connection). :func:`alembic_config` is the same configuration for code
(``alembic.command.upgrade(alembic_config(conn), "head")``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic.config import CommandLine, Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
HEAD = "head"
SCHEMA_REVISION = "001"
SEED_REVISION = "002"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for the chatbot schema; with ``connection``, migrations run on it."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.set_main_option("version_path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def main(argv: Sequence[str] | None = None) -> None:
    cli = CommandLine(prog="make chatbot-alembic ARGS=")
    options = cli.parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments: give an Alembic command, e.g. upgrade head")
    cli.run_cmd(alembic_config(), options)


if __name__ == "__main__":
    main()
