"""The ``airflow_settings.yaml`` file format (Astro CLI): parsing and validation, merging, writing, and
masking of secrets for display. Applying a file to the metadata database is :mod:`include.common.settings`.

Kept apart from applying because the ``.env`` importer (:mod:`include.common.legacy_env`) builds and
writes these files without touching any Airflow database.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import yaml

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
#: ``pool_include_deferred`` is ours (the Astro CLI format has no such field): whether deferred tasks
#: take a slot, as ``airflow pools set ... --include-deferred`` says; absent: what the pool has.
POOL_FIELDS = ("pool_name", "pool_slot", "pool_description", "pool_include_deferred")
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
        "pool_include_deferred": _flag(item.get("pool_include_deferred"), "pool_include_deferred", where),
    }


def _flag(value: Any, field: str, where: str) -> bool | None:
    if _blank(value):
        return None
    if not isinstance(value, bool):
        raise SettingsError(f"{where}: {field} must be true or false, got {value!r}")
    return value


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
