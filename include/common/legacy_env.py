"""Import a legacy ``.env`` into Airflow connections, variables and pools.

The services this repository replaces were configured by a ``.env`` file (``KEY=value`` or
``key: value`` lines). Teams migrate by converting that file once instead of re-typing credentials
into the UI::

    python -m include.common.legacy_env PATH/.env --output airflow_settings.local.yaml
    python -m include.common.legacy_env PATH/.env --apply

The result is an ``airflow_settings.yaml`` (see :mod:`include.common.settings`). Keys are mapped by a
registry of handlers (:func:`register`), so each pipeline declares its own keys next to its code, in a
``include/<domain>/legacy_env.py`` module that is loaded automatically. Keys no handler claims come back
as ``ignored: KEY`` notes. Settings that are no Airflow object (cron, time zone, log level) come back
as notes saying where they live now. Nothing printed or raised here ever contains a password.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from include.common import settings as airflow_settings
from include.common import settings_file

MYSQL_DEFAULT_PORT = 3306


class LegacyEnvError(ValueError):
    """A line or value that cannot be mapped; the message names the key and line, never the value."""

    def __init__(self, message: str, *, key: str | None = None, line: int | None = None):
        where = " ".join(part for part in (f"line {line}" if line else "", key or "") if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.key, self.line = key, line


@dataclass(frozen=True)
class Entry:
    """One ``KEY=value`` of the file, with its line number for error messages."""

    key: str
    value: str
    line: int

    def fail(self, message: str) -> LegacyEnvError:
        return LegacyEnvError(message, key=self.key, line=self.line)


# ------------------------------------------------------------------------------------------- parsing

_LINE = re.compile(r"^(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)\s*(?P<sep>[=:])\s?(?P<rest>.*)$")


def parse_env(text: str) -> list[Entry]:
    """Parse both syntaxes the services' loaders accepted: ``[export ]KEY=value`` and ``key: value``.

    Blank lines and ``#`` comments are skipped; values may be single- or double-quoted; an unquoted
    value ends at `` #`` (an inline comment), as in python-dotenv.
    """
    entries = []
    for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise LegacyEnvError("expected KEY=value or key: value", line=number)
        key = match["key"]
        entries.append(Entry(key, _parse_value(match["rest"], key, number), number))
    return entries


def _parse_value(rest: str, key: str, line: int) -> str:
    rest = rest.strip()
    if rest[:1] not in ("'", '"'):
        comment = re.search(r"\s#", rest)
        return (rest[: comment.start()] if comment else rest).strip()
    quote, chars, index = rest[0], [], 1
    while index < len(rest) and rest[index] != quote:
        if quote == '"' and rest[index] == "\\" and index + 1 < len(rest):
            index += 1
            chars.append({"n": "\n", "t": "\t"}.get(rest[index], rest[index]))
        else:
            chars.append(rest[index])
        index += 1
    if index >= len(rest):
        raise LegacyEnvError("the quoted value has no closing quote", key=key, line=line)
    tail = rest[index + 1 :].strip()
    if tail and not tail.startswith("#"):
        raise LegacyEnvError("unexpected text after the closing quote", key=key, line=line)
    return "".join(chars)


class LegacyEnv:
    """Parsed entries looked up case-insensitively (``url`` == ``URL``), the last one of a key winning."""

    def __init__(self, entries: Iterable[Entry], base_dir: Path | None = None):
        self.base_dir = base_dir  # where relative ``*_FILE`` paths point: the .env's directory
        self.entries: dict[str, Entry] = {}
        self.repeated: list[tuple[Entry, Entry]] = []
        for entry in entries:
            previous = self.entries.get(entry.key.upper())
            if previous is not None:
                self.repeated.append((previous, entry))
            self.entries[entry.key.upper()] = entry

    def entry(self, key: str) -> Entry | None:
        """The entry of ``key``; an empty value counts as unset."""
        entry = self.entries.get(key.upper())
        return entry if entry is not None and entry.value != "" else None

    def value(self, key: str) -> str | None:
        entry = self.entry(key)
        return entry.value if entry is not None else None

    def has_any(self, keys: Iterable[str]) -> bool:
        """Whether any of ``keys`` is set to a non-empty value."""
        return any(self.entry(key) is not None for key in keys)

    def read_file(self, entry: Entry) -> str:
        """The text of the file ``entry`` names (``*_FILE`` keys), relative to the .env's directory."""
        path = Path(entry.value).expanduser()
        if not path.is_absolute():
            path = (self.base_dir or Path.cwd()) / path
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise entry.fail(f"cannot read {path}: {exc.strerror or exc}") from None


# -------------------------------------------------------------------------------------------- result


@dataclass
class ImportResult:
    """What a ``.env`` maps to: settings items keyed by id, plus notes for the operator."""

    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    pools: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    secret_variables: set[str] = field(default_factory=set)

    def set_connection(self, conn_id: str, **fields: Any) -> dict[str, Any]:
        """Create or replace a connection item (``conn_type=..., conn_host=...``)."""
        self.connections[conn_id] = {"conn_id": conn_id, **fields}
        return self.connections[conn_id]

    def set_variable(self, name: str, value: str, *, secret: bool = False) -> None:
        """Set a variable; ``secret=True`` keeps its value out of the printed summary."""
        self.variables[name] = value
        if secret:
            self.secret_variables.add(name)

    def set_pool(self, name: str, slots: int, description: str) -> None:
        self.pools[name] = {"pool_name": name, "pool_slot": slots, "pool_description": description}

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def to_settings(self) -> dict[str, Any]:
        """The result as normalized ``airflow_settings.yaml`` content."""
        return settings_file.normalize(
            {
                "airflow": {
                    "connections": list(self.connections.values()),
                    "pools": list(self.pools.values()),
                    "variables": [
                        {"variable_name": k, "variable_value": v} for k, v in self.variables.items()
                    ],
                }
            }
        )


# ------------------------------------------------------------------------------------------ registry

Handler = Callable[[LegacyEnv, ImportResult], None]


@dataclass(frozen=True)
class Registration:
    keys: tuple[str, ...]
    handler: Handler
    order: int


_REGISTRY: dict[tuple[str, ...], Registration] = {}


def register(*keys: str, order: int = 100) -> Callable[[Handler], Handler]:
    """Claim ``keys`` for a handler, run once per import when any of them is in the file.

    Handlers run by ``order`` (then registration order): base connections (10) before the overrides
    that amend them (20), then everything else. A handler may read keys it does not claim (e.g. the
    shared ``username``), but only claimed keys count as known. Registering the same keys again
    replaces the earlier handler, so re-importing a module is harmless.
    """
    normalized = tuple(key.upper() for key in keys)

    def decorator(handler: Handler) -> Handler:
        _REGISTRY[normalized] = Registration(normalized, handler, order)
        return handler

    return decorator


def registrations() -> list[Registration]:
    """Registered handlers in the order they run, extensions of the other pipelines included."""
    load_extensions()
    return sorted(_REGISTRY.values(), key=lambda r: r.order)  # sorted() is stable: ties keep order


def load_extensions() -> None:
    """Import ``include.<domain>.legacy_env`` modules so each pipeline registers its own keys."""
    import include

    for module in pkgutil.iter_modules(include.__path__):
        name = f"include.{module.name}.legacy_env"
        if module.ispkg and module.name != "common" and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def import_env(text: str, base_dir: Path | None = None) -> ImportResult:
    """Map the text of a legacy ``.env`` to settings items and notes (touches no Airflow).

    ``base_dir`` resolves relative paths of ``*_FILE`` keys (the .env's directory, as the services did)."""
    env = LegacyEnv(parse_env(text), base_dir)
    result = ImportResult()
    for earlier, later in env.repeated:
        result.note(f"{later.key} is set on lines {earlier.line} and {later.line}: line {later.line} wins")
    known: set[str] = set()
    for registration in registrations():
        known.update(registration.keys)
        if env.has_any(registration.keys):
            registration.handler(env, result)
    for key, entry in env.entries.items():
        if key not in known:
            result.note(f"ignored: {entry.key}")
    return result


def import_file(path: str | Path) -> ImportResult:
    path = Path(path)
    return import_env(path.read_text(encoding="utf-8"), path.resolve().parent)


# ------------------------------------------------------------------------ MySQL JDBC URLs


@dataclass(frozen=True)
class MysqlServer:
    """The parts of a ``jdbc:mysql://`` URL that make an Airflow mysql connection."""

    host: str
    port: int
    database: str | None
    login: str | None
    password: str | None
    params: dict[str, str]


def split_host_port(text: str, entry: Entry) -> tuple[str, int | None]:
    """``host`` or ``host:port`` (``[v6]:port`` too); the port must be a number from 1 to 65535."""
    match = re.fullmatch(r"\[(?P<v6>[^\]]+)\](?::(?P<v6port>[^:]*))?|(?P<host>[^:]*)(?::(?P<port>.*))?", text)
    host = (match["v6"] or match["host"] or "").strip() if match else ""
    port_text = match["v6port"] if match and match["v6"] else match["port"] if match else None
    if not host:
        raise entry.fail("has no host name")
    if port_text is None:
        return host, None
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        raise entry.fail("the port must be a number from 1 to 65535")
    return host, int(port_text)


def parse_jdbc_mysql(entry: Entry) -> MysqlServer:
    """Parse ``jdbc:mysql://[user[:password]@]host[:port][/database][?params]`` (or ``jdbc:mariadb:``)."""
    match = re.fullmatch(
        r"jdbc:(?:mysql|mariadb)://(?P<netloc>[^/?#]*)(?:/(?P<db>[^?#]*))?(?:\?(?P<q>[^#]*))?",
        entry.value.strip(),
        flags=re.IGNORECASE,
    )
    if match is None:
        raise entry.fail("expected jdbc:mysql://host[:port]/database[?serverTimezone=...]")
    userinfo, _, hostport = match["netloc"].rpartition("@")
    if "," in hostport:
        raise entry.fail("a list of hosts is not supported: give one host[:port]")
    host, port = split_host_port(hostport, entry)
    login, _, password = userinfo.partition(":")
    return MysqlServer(
        host=host,
        port=port or MYSQL_DEFAULT_PORT,
        database=unquote(match["db"] or "") or None,
        login=unquote(login) or None,
        password=unquote(password) or None,
        params=dict(parse_qsl(match["q"] or "", keep_blank_values=True)),
    )


def set_mysql_connection(
    result: ImportResult, conn_id: str, server: MysqlServer, login: str | None, password: str | None
) -> None:
    """A mysql connection for ``server``, with the login that applies to this connection."""
    result.set_connection(
        conn_id,
        conn_type="mysql",
        conn_host=server.host,
        conn_port=server.port,
        conn_schema=server.database,
        conn_login=login,
        conn_password=password,
    )


def describe(result: ImportResult) -> list[str]:
    """Human summary of what was mapped: ids, hosts, schemas and logins; passwords as ``***``."""
    lines = []
    for conn in result.connections.values():
        where = conn.get("conn_host") or ""
        if conn.get("conn_port"):
            where += f":{conn['conn_port']}"
        if conn.get("conn_schema"):
            where += f"/{conn['conn_schema']}"
        login = conn.get("conn_login") or "-"
        password = settings_file.MASK if conn.get("conn_password") else "-"
        lines.append(
            f"connection {conn['conn_id']}: {conn.get('conn_type')} {where} login={login} password={password}"
        )
    for pool in result.pools.values():
        lines.append(f"pool {pool['pool_name']}: {pool['pool_slot']} slots")
    for name, value in result.variables.items():
        secret = name in result.secret_variables or settings_file.is_sensitive(name)
        lines.append(f"variable {name} = {settings_file.MASK if secret else value}")
    lines += [f"note: {note}" for note in result.notes]
    return lines


def write_output(path: Path, result: ImportResult, source: Path) -> Path:
    """Merge into ``path`` when it exists: same ids replaced, everything else kept."""
    current = settings_file.load(path) if path.exists() else settings_file.empty()
    merged = settings_file.merge(current, result.to_settings())
    header = (
        f"Airflow connections, pools and variables (imported from {source.name} by include.common.legacy_env).\n"
        "It may hold passwords: keep it out of version control. Apply it with\n"
        f"  python -m include.common.settings apply {path}"
    )
    return settings_file.write(path, merged, header=header)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m include.common.legacy_env",
        description="Turn a legacy .env into Airflow connections, variables and pools.",
    )
    parser.add_argument("env_file", type=Path, help="the legacy .env (KEY=value or key: value lines)")
    parser.add_argument("--output", type=Path, help="write (merge into) this airflow_settings YAML file")
    parser.add_argument("--apply", action="store_true", help="apply the result to the Airflow metadata DB")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result = import_file(args.env_file)
    except OSError as exc:
        print(f"error: {args.env_file}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except LegacyEnvError as exc:
        print(f"error: {args.env_file}: {exc}", file=sys.stderr)
        return 1
    for line in describe(result):
        print(line)
    try:
        if args.output:
            print(f"wrote {write_output(args.output, result, args.env_file)}")
        if args.apply:
            airflow_settings.print_outcomes(airflow_settings.apply(result.to_settings()))
    except Exception as exc:  # reported without a traceback, which could show values
        print(f"error: {airflow_settings.safe_error(exc)}", file=sys.stderr)
        return 1
    if not args.output and not args.apply:
        print("nothing written: pass --output PATH and/or --apply")
    return 0


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy: the pipelines' key handlers register
    # themselves with `include.common.legacy_env`.
    from include.common.legacy_env import main as module_main

    sys.exit(module_main())
