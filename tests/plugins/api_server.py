"""A real ``airflow api-server`` for tests that must see the plugin as Airflow serves it.

:func:`running_api_server` starts one on a free port of 127.0.0.1 with the repository's plugins
folder, under the Simple or the FAB auth manager, with users of chosen roles, and yields an
:class:`ApiServer`: its URL, a token per user, and the Airflow CLI of the same installation::

    with running_api_server(home, metadata_db, FAB_USERS, env={"TMPDIR": str(tmp)}) as server:
        server.expect(server.request("GET", "/pluginsv2/dwh-helper/dwh/events-part", user="viewer"), 200)
        server.cli(["variables", "set", "dwh_max_rows_per_insert", "10"])

Each server has an ``AIRFLOW_HOME`` of its own (``home``) holding a copy of the session's migrated
metadata database, so users, roles and the FAB tables never leak into other tests, and two servers may
run side by side. ``env`` adds to or overrides the environment of the server and its CLI (connections
as ``AIRFLOW_CONN_*``, ``TMPDIR``, Airflow settings). The server's output goes to ``home/api-server.log``,
whose tail every failed :meth:`ApiServer.expect` shows.

Start-up, measured on the 2-core development machine: a Simple server answers with its tokens after
12-20 s (depending on what else runs); a FAB server needs about 15 s more to migrate FAB's tables and
create its users, in one CLI process for all of them (each ``airflow users create`` process on its own
takes about 10 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import pytest

STARTUP_TIMEOUT_S = 90.0
CLI_TIMEOUT_S = 300.0
AUTH_MANAGERS = {
    "simple": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    "fab": "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager",
}
#: Every command of one :meth:`ApiServer.cli` call, run by Airflow's own entry point in one interpreter.
_CLI_BATCH = """
import json, sys
from airflow.__main__ import main
for argv in json.load(sys.stdin):
    sys.argv = ["airflow", *argv]
    main()
"""


@dataclass(frozen=True)
class AuthSetup:
    """An auth manager and its users, ``{name: role}``. Simple roles: viewer, user, op, admin. FAB roles:
    Public, Viewer, User, Op, Admin, or ``None`` for a user whose roles were all removed (FAB only)."""

    manager: Literal["simple", "fab"]
    users: Mapping[str, str | None]


SIMPLE_USERS = AuthSetup("simple", {"admin": "admin", "user": "user", "viewer": "viewer"})
FAB_USERS = AuthSetup(
    "fab", {"admin": "Admin", "user": "User", "viewer": "Viewer", "public": "Public", "nobody": None}
)


@dataclass
class ApiServer:
    url: str
    home: Path
    log: Path
    auth: AuthSetup
    env: dict[str, str] = field(repr=False)
    passwords: dict[str, str] = field(repr=False)
    tokens: dict[str, str] = field(default_factory=dict, repr=False)
    #: The server's main process, the leader of the process group its workers share.
    pid: int = 0

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def request(self, method: str, path: str, *, user: str | None = None, **kwargs) -> httpx.Response:
        """``method path`` on the server, with ``user``'s Bearer token when a user is named."""
        headers = kwargs.pop("headers", {})
        if user is not None:
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs)

    def expect(self, response: httpx.Response, status: int) -> httpx.Response:
        assert response.status_code == status, (
            f"{response.request.method} {response.request.url.path} answered {response.status_code}, "
            f"expected {status}: {response.text[:500]}\n--- API server log tail ---\n{self.tail()}"
        )
        return response

    def new_token(self, user: str) -> str:
        """A token for ``user`` from ``POST /auth/token``, as a script gets one."""
        response = httpx.post(
            f"{self.url}/auth/token",
            json={"username": user, "password": self.passwords[user]},
            timeout=60,
        )
        assert response.status_code == 201, f"no token for {user}: {response.text}\n{self.tail()}"
        return response.json()["access_token"]

    def cli(self, *commands: Sequence[str]) -> str:
        """Run Airflow CLI commands (each the arguments after ``airflow``) against this server's home
        and settings, in order, in one interpreter; the first failure fails the test. Returns stdout."""
        return run_cli(self.env, *commands)


def run_cli(env: Mapping[str, str], *commands: Sequence[str]) -> str:
    """See :meth:`ApiServer.cli`; the commands travel on stdin, so passwords stay out of ``ps``."""
    result = subprocess.run(
        [sys.executable, "-c", _CLI_BATCH],
        input=json.dumps([list(command) for command in commands]),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    if result.returncode != 0:
        names = ", ".join(" ".join(command[:2]) for command in commands)
        pytest.fail(f"airflow CLI ({names}) exited with {result.returncode}:\n{result.stderr[-4000:]}")
    return result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database (the backup API, not a file copy)."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


def _server_env(
    home: Path, auth: AuthSetup, passwords: dict[str, str], env: Mapping[str, str]
) -> dict[str, str]:
    settings = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGERS[auth.manager],
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # the plugin logs each caller at INFO
    }
    if auth.manager == "simple":
        passwords_file = home / "passwords.json"
        passwords_file.write_text(json.dumps(passwords))
        settings["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(
            f"{name}:{role}" for name, role in auth.users.items()
        )
        settings["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords_file)
    return {**os.environ, **settings, **env}


def _fab_users(auth: AuthSetup, passwords: dict[str, str]) -> list[list[str]]:
    """CLI commands that create the FAB tables and the users. A role-less user is created with Public
    and then loses it, as an administrator (or a role sync) takes a user's roles away."""
    commands = [["fab-db", "migrate"]]
    # ``--password=`` in one piece: a generated password may begin with "-", which argparse would
    # otherwise read as an option.
    for name, role in auth.users.items():
        commands.append(
            ["users", "create", "--username", name, "--firstname", name, "--lastname", "Tester"]
            + ["--email", f"{name}@example.com", "--role", role or "Public", f"--password={passwords[name]}"]
        )
        if role is None:
            commands.append(["users", "remove-role", "--username", name, "--role", "Public"])
    return commands


def _wait_until_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"airflow api-server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"airflow api-server not healthy after {STARTUP_TIMEOUT_S:.0f} s:\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and the workers it forked (its own process group, started here)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


@contextlib.contextmanager
def running_api_server(
    home: Path, metadata_db: Path, auth: AuthSetup, *, env: Mapping[str, str] | None = None
) -> Generator[ApiServer]:
    """Start ``airflow api-server`` in ``home`` (an empty directory) on a copy of ``metadata_db`` (a
    migrated SQLite file), with ``auth``'s users, each holding a token, and stop it on exit."""
    _copy_database(metadata_db, home / "airflow.db")
    passwords = {name: secrets.token_urlsafe(12) for name in auth.users}
    server_env = _server_env(home, auth, passwords, env or {})
    if auth.manager == "fab":
        run_cli(server_env, *_fab_users(auth, passwords))
    port = _free_port()
    server = ApiServer(
        url=f"http://127.0.0.1:{port}",
        home=home,
        log=home / "api-server.log",
        auth=auth,
        env=server_env,
        passwords=passwords,
    )
    with server.log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server.pid = process.pid
    try:
        _wait_until_healthy(process, server.url, server.log)
        server.tokens = {name: server.new_token(name) for name in auth.users}
        yield server
    finally:
        _stop(process)
