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


def plan_target(target: str, seed: bool, current: str | None) -> str:
    """Where ``chatbot_db_init`` migrates to. The guide's chain puts the seed data in revision 002, so
    without ``seed`` a database below 002 stops at the schema (001) instead of receiving test rows;
    with ``seed`` the target is at least 002. Any other explicit revision is taken as given."""
    if target in (HEAD, SEED_REVISION) and not seed and current in (None, SCHEMA_REVISION):
        return SCHEMA_REVISION
    if seed and target in (SCHEMA_REVISION,):
        return SEED_REVISION
    return target


def migrate_postgres(engine: sa.Engine, target: str = HEAD, seed: bool = False) -> dict:
    """Upgrade (or downgrade, for a revision below the current one) to the planned target."""
    from alembic import command
    from alembic.script import ScriptDirectory

    with engine.begin() as conn:
        before = current_revision(conn)
        goal = plan_target(target, seed, before)
        cfg = alembic_config(conn)
        script = ScriptDirectory.from_config(cfg)
        goal_rev = script.get_revision(goal).revision if goal != HEAD else script.get_current_head()
        below = before is not None and goal_rev != before and goal_rev in _ancestors(script, before)
        (command.downgrade if below else command.upgrade)(cfg, goal)
        after = current_revision(conn)
    return {
        "revision_before": before,
        "revision_after": after,
        "target": goal,
        "seeded": after == SEED_REVISION,
    }


def _ancestors(script, revision: str) -> set[str]:
    return {rev.revision for rev in script.iterate_revisions(revision, "base")} - {revision}
