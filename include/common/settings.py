"""Airflow connections, pools and variables from an ``airflow_settings.yaml`` (Astro CLI format).

The Astro CLI loads this file only into the local containers it starts itself. This module applies the
same file to whatever Airflow metadata database the environment points at (``airflow standalone``, the
docker-compose stack, the tests), so the embedded defaults and a team's real servers are one command
away with or without the Astro CLI::

    python -m include.common.settings apply [PATH]   # default: airflow_settings.yaml at the repo root
    python -m include.common.settings show PATH      # the file as understood, secrets masked

Applying is idempotent: items are keyed by ``conn_id`` / ``pool_name`` / ``variable_name``; an existing
item is updated in place and an identical one is left alone, so applying twice equals applying once.
Output names items and what happened to them, never a password or a secret value.

It writes through Airflow's ORM models (``airflow.models.connection.Connection``, ``Variable``, ``Pool``),
as ``airflow connections add`` does, because it administers the metadata database from a plain process;
the ``airflow.sdk`` classes are the task-side API and cannot create pools or update connections.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from include.common.settings_file import DEFAULT_PATH, Outcome, SettingsError, dump, load, masked, normalize

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


# ---------------------------------------------------------------------------------------- applying


def apply(settings: dict[str, Any], *, session: Session | None = None) -> list[Outcome]:
    """Create or update every connection, variable and pool of ``settings`` in the metadata database.

    Runs in one transaction: with ``session=None`` a session is opened and committed here (a failure
    leaves the database as it was); with a session, the caller commits. Works from a plain process
    (CLI, scripts, tests) through Airflow's ORM models, not from inside a running task.
    """
    settings = normalize(settings)
    if session is not None:
        return _apply_all(settings, session)
    from airflow.utils.session import create_session

    with create_session() as own_session:
        return _apply_all(settings, own_session)


def _apply_all(settings: dict[str, Any], session: Session) -> list[Outcome]:
    items = settings["airflow"]
    outcomes = [
        Outcome("connection", c["conn_id"], _apply_connection(c, session)) for c in items["connections"]
    ]
    outcomes += [Outcome("pool", p["pool_name"], _apply_pool(p, session)) for p in items["pools"]]
    outcomes += [
        Outcome("variable", v["variable_name"], _apply_variable(v, session)) for v in items["variables"]
    ]
    session.flush()
    return outcomes


def _desired_connection(item: dict[str, Any]):
    from airflow.models.connection import Connection, sanitize_conn_id

    conn_id = item["conn_id"]
    if sanitize_conn_id(conn_id) != conn_id:
        raise SettingsError(f"connection {conn_id!r}: Airflow allows letters, digits and #!()-.:/\\_ only")
    if item["conn_uri"]:
        return Connection(conn_id=conn_id, description=item["conn_description"], uri=item["conn_uri"])
    return Connection(
        conn_id=conn_id,
        conn_type=item["conn_type"],
        description=item["conn_description"],
        host=item["conn_host"],
        schema=item["conn_schema"],
        login=item["conn_login"],
        password=item["conn_password"],
        port=item["conn_port"],
        extra=json.dumps(item["conn_extra"], sort_keys=True) if item["conn_extra"] else None,
    )


def _connection_state(conn) -> tuple:
    return (
        conn.conn_type,
        conn.host,
        conn.schema,
        conn.login,
        conn.password or None,
        conn.port,
        conn.extra_dejson if conn.extra else {},
    )


def _apply_connection(item: dict[str, Any], session: Session) -> str:
    from airflow.models.connection import Connection
    from sqlalchemy import select

    desired = _desired_connection(item)
    existing = session.scalar(select(Connection).where(Connection.conn_id == desired.conn_id))
    if existing is None:
        session.add(desired)
        return "created"
    description_same = item["conn_description"] is None or existing.description == desired.description
    if _connection_state(existing) == _connection_state(desired) and description_same:
        return "unchanged"
    existing.conn_type = desired.conn_type
    existing.host, existing.schema, existing.login = desired.host, desired.schema, desired.login
    existing.port = desired.port
    existing.extra = desired.extra
    if item["conn_description"] is not None:
        existing.description = desired.description
    if desired.password:
        existing.password = desired.password
    else:  # the model's setter ignores empty values, so clearing a password needs the column itself
        existing._password = None
        existing.is_encrypted = False
    return "updated"


def _apply_pool(item: dict[str, Any], session: Session) -> str:
    from airflow.models.pool import Pool

    name, slots, description = item["pool_name"], item["pool_slot"], item["pool_description"]
    existing = Pool.get_pool(name, session=session)
    include_deferred = item["pool_include_deferred"]
    if include_deferred is None:  # not said: keep what the pool has (Airflow's default for a new pool)
        include_deferred = existing.include_deferred if existing is not None else False
    if (
        existing is not None
        and existing.slots == slots
        and (existing.description or "") == description
        and existing.include_deferred == include_deferred
    ):
        return "unchanged"
    Pool.create_or_update_pool(
        name,
        slots,
        description,
        include_deferred,
        team_name=existing.team_name if existing is not None else None,
        session=session,
    )
    return "created" if existing is None else "updated"


def _apply_variable(item: dict[str, Any], session: Session) -> str:
    from airflow.models.variable import Variable
    from sqlalchemy import select

    name, value = item["variable_name"], item["variable_value"]
    existing = session.scalar(select(Variable).where(Variable.key == name))
    if existing is not None and existing.val == value:
        return "unchanged"
    # Variable.set upserts (encrypting with the Fernet key); keep a description set in the UI.
    description = existing.description if existing is not None else None
    Variable.set(name, value, description=description, session=session)
    return "created" if existing is None else "updated"


# --------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m include.common.settings",
        description="Apply an airflow_settings.yaml (Astro CLI format) to the Airflow metadata database.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    apply_cmd = commands.add_parser("apply", help="create or update the file's connections, pools, variables")
    apply_cmd.add_argument("path", nargs="?", default=str(DEFAULT_PATH), help="default: %(default)s")
    show_cmd = commands.add_parser("show", help="print the file as understood, secrets masked")
    show_cmd.add_argument("path")
    return parser


def print_outcomes(outcomes: Iterable[Outcome]) -> None:
    """One line per item; the lines never carry values, so they are safe for any log."""
    for outcome in outcomes:
        print(outcome)


def safe_error(exc: Exception) -> str:
    """An error message without SQL parameters, which could hold a password in clear text."""
    orig = getattr(exc, "orig", None)  # SQLAlchemy DBAPIError: the driver's message alone
    if orig is not None:
        return f"{type(exc).__name__}: {orig}"
    if type(exc).__module__.startswith("sqlalchemy"):
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load(args.path)
        if args.command == "show":
            print(dump(masked(settings)), end="")
            return 0
        print_outcomes(apply(settings))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # reported without a traceback, which could show values
        print(f"error: {safe_error(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
