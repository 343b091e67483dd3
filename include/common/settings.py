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
import copy
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import yaml

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = REPO_ROOT / "airflow_settings.yaml"
MASK = "***"

# section -> the field that identifies an item of it
SECTIONS = {"connections": "conn_id", "pools": "pool_name", "variables": "variable_name"}
CONNECTION_FIELDS = (
    "conn_id",
    "conn_type",
    "conn_host",
    "conn_schema",
    "conn_login",
    "conn_password",
    "conn_port",
    "conn_extra",
    "conn_uri",
    "conn_description",
)
POOL_FIELDS = ("pool_name", "pool_slot", "pool_description")
VARIABLE_FIELDS = ("variable_name", "variable_value")

# Same idea as Airflow's secrets masker: a name containing one of these holds a secret.
SENSITIVE_NAME_PARTS = frozenset(
    {
        "access_key",
        "access_token",
        "api_key",
        "apikey",
        "authorization",
        "bearer",
        "connection_string",
        "credential",
        "dsn",
        "passphrase",
        "passwd",
        "password",
        "private_key",
        "secret",
        "service_account",
        "token",
        "keyfile_dict",
        "webhook_url",
    }
)


class SettingsError(ValueError):
    """An ``airflow_settings.yaml`` that cannot be applied; the message names the item and field."""


class Outcome(NamedTuple):
    """What :func:`apply` did to one item: ``created``, ``updated`` or ``unchanged``."""

    kind: str
    item_id: str
    status: str

    def __str__(self) -> str:
        return f"{self.kind} {self.item_id}: {self.status}"


# --------------------------------------------------------------------------------------------- reading


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a settings file; a missing or invalid file raises with the path in the message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse(text, source=str(path))


def parse(text: str, *, source: str = "<settings>") -> dict[str, Any]:
    """Parse YAML text into the normalized settings shape (see :func:`normalize`)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError(f"{source}: not valid YAML: {exc}") from exc
    return normalize(data, source=source)


def empty() -> dict[str, Any]:
    """Settings with no items, the neutral element of :func:`merge`."""
    return {"airflow": {section: [] for section in SECTIONS}}


def normalize(data: Any, *, source: str = "<settings>") -> dict[str, Any]:
    """Validate and canonicalize settings so comparing, merging and applying need no more checks.

    Every item gets all of its section's fields (``None`` when unset), ports and slots become ints,
    ``conn_extra`` becomes a dict, variable values become strings. Blank template entries (the Astro
    CLI scaffolds ``- conn_id:`` with every field empty) are dropped. Normalizing twice is harmless.
    """
    if data is None:
        return empty()
    if not isinstance(data, dict):
        raise SettingsError(f"{source}: expected a mapping with an 'airflow' key")
    unknown = set(data) - {"airflow"}
    if unknown:
        raise SettingsError(f"{source}: unknown top-level keys {sorted(unknown)}; expected 'airflow'")
    airflow = data.get("airflow") or {}
    if not isinstance(airflow, dict):
        raise SettingsError(f"{source}: 'airflow' must be a mapping")
    unknown = set(airflow) - set(SECTIONS)
    if unknown:
        raise SettingsError(f"{source}: unknown sections {sorted(unknown)}; expected {sorted(SECTIONS)}")
    return {"airflow": {section: _normalize_section(airflow, section, source) for section in SECTIONS}}


def _normalize_section(airflow: dict[str, Any], section: str, source: str) -> list[dict[str, Any]]:
    items = airflow.get(section) or []
    if not isinstance(items, list):
        raise SettingsError(f"{source}: airflow.{section} must be a list")
    normalizer = {"connections": _connection, "pools": _pool, "variables": _variable}[section]
    id_key = SECTIONS[section]
    result: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(items, start=1):
        if item is None or (isinstance(item, dict) and all(_blank(v) for v in item.values())):
            continue
        if not isinstance(item, dict):
            raise SettingsError(f"{source}: airflow.{section} item {index} must be a mapping")
        if _blank(item.get(id_key)):
            raise SettingsError(f"{source}: airflow.{section} item {index} has no {id_key}")
        where = f"{source}: {section[:-1]} {item[id_key]}"
        normalized = normalizer(item, where)
        result[normalized[id_key]] = normalized  # a repeated id: the later entry wins, as in merge()
    return list(result.values())


def _blank(value: Any) -> bool:
    return value is None or value == ""


def _text(value: Any) -> str | None:
    return None if _blank(value) else str(value)


def _check_fields(item: dict[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = set(item) - set(allowed)
    if unknown:
        raise SettingsError(f"{where}: unknown fields {sorted(unknown)}")


def _int(value: Any, field: str, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SettingsError(f"{where}: {field} must be an integer")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise SettingsError(f"{where}: {field} must be an integer") from None
    if number < minimum:
        raise SettingsError(f"{where}: {field} must be at least {minimum}")
    return number


def _extra(value: Any, where: str) -> dict[str, Any] | None:
    """``conn_extra`` as a dict: the Astro CLI accepts a YAML mapping or a JSON string."""
    if _blank(value):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SettingsError(f"{where}: conn_extra must be a mapping or a JSON object") from None
    if not isinstance(value, dict):
        raise SettingsError(f"{where}: conn_extra must be a mapping or a JSON object")
    return value or None


def _connection(item: dict[str, Any], where: str) -> dict[str, Any]:
    _check_fields(item, CONNECTION_FIELDS, where)
    conn = {field: _text(item.get(field)) for field in CONNECTION_FIELDS}
    conn["conn_port"] = (
        None if _blank(item.get("conn_port")) else _int(item["conn_port"], "conn_port", where, minimum=1)
    )
    conn["conn_extra"] = _extra(item.get("conn_extra"), where)
    if conn["conn_uri"]:
        mixed = [
            f for f in CONNECTION_FIELDS if f not in ("conn_id", "conn_uri", "conn_description") and conn[f]
        ]
        if mixed:
            raise SettingsError(f"{where}: give conn_uri or individual fields, not both ({', '.join(mixed)})")
    elif not conn["conn_type"]:
        raise SettingsError(f"{where}: conn_type is required")
    return conn


def _pool(item: dict[str, Any], where: str) -> dict[str, Any]:
    _check_fields(item, POOL_FIELDS, where)
    if _blank(item.get("pool_slot")):
        raise SettingsError(f"{where}: pool_slot is required")
    return {
        "pool_name": str(item["pool_name"]),
        "pool_slot": _int(item["pool_slot"], "pool_slot", where, minimum=-1),  # -1: unlimited
        "pool_description": _text(item.get("pool_description")) or "",
    }


def _variable(item: dict[str, Any], where: str) -> dict[str, Any]:
    _check_fields(item, VARIABLE_FIELDS, where)
    value = item.get("variable_value")
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    return {
        "variable_name": str(item["variable_name"]),
        "variable_value": "" if value is None else str(value),
    }


# ---------------------------------------------------------------------------------- merging, writing


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay``'s items: an item with the same id is replaced in place, others are kept."""
    base, overlay = normalize(base), normalize(overlay)
    merged: dict[str, Any] = {}
    for section, id_key in SECTIONS.items():
        items = {item[id_key]: item for item in base["airflow"][section]}
        items.update({item[id_key]: item for item in overlay["airflow"][section]})
        merged[section] = list(items.values())
    return {"airflow": merged}


def dump(settings: dict[str, Any], *, header: str | None = None) -> str:
    """YAML text in the Astro CLI layout, unset fields left out."""
    settings = normalize(settings)
    compact = {
        section: [{k: v for k, v in item.items() if v is not None} for item in items]
        for section, items in settings["airflow"].items()
        if items
    }
    body = yaml.safe_dump({"airflow": compact}, sort_keys=False, allow_unicode=True, default_flow_style=False)
    if header:
        body = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + body
    return body


def has_secrets(settings: dict[str, Any]) -> bool:
    """True when writing ``settings`` to disk would put a secret in the file."""
    return normalize(settings) != masked(settings)


def write(path: str | os.PathLike[str], settings: dict[str, Any], *, header: str | None = None) -> Path:
    """Write settings as YAML; a file holding secrets is made readable by its owner only."""
    path = Path(path)
    path.write_text(dump(settings, header=header), encoding="utf-8")
    if has_secrets(settings):
        path.chmod(0o600)
    return path


def is_sensitive(name: str) -> bool:
    """Whether a field or variable name says its value is a secret."""
    lowered = name.lower()
    return any(part in lowered for part in SENSITIVE_NAME_PARTS)


def masked(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy safe to print: passwords, secret extras, URI passwords and secret variables become ``***``."""
    settings = copy.deepcopy(normalize(settings))
    for conn in settings["airflow"]["connections"]:
        if conn["conn_password"]:
            conn["conn_password"] = MASK
        if conn["conn_extra"]:
            conn["conn_extra"] = _mask_mapping(conn["conn_extra"])
        if conn["conn_uri"]:
            conn["conn_uri"] = _mask_uri(conn["conn_uri"])
    for var in settings["airflow"]["variables"]:
        if is_sensitive(var["variable_name"]) and var["variable_value"]:
            var["variable_value"] = MASK
    return settings


def _mask_mapping(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (MASK if is_sensitive(str(k)) and not _blank(v) else _mask_mapping(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_mapping(v) for v in value]
    return value


def _mask_uri(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    userinfo, _, hostport = parts.netloc.rpartition("@")
    login = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{login}:{MASK}@{hostport}"))


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
    if existing is not None and existing.slots == slots and (existing.description or "") == description:
        return "unchanged"
    Pool.create_or_update_pool(
        name,
        slots,
        description,
        # not part of the file format: keep what the pool has (Airflow's default for a new pool)
        existing.include_deferred if existing is not None else False,
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
