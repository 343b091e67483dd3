"""The DWH helper as the benchmark runs it (:mod:`bench.dwh_helper`, :mod:`bench.amplitude_export`):
the plugin's plain Flask app in a spawned process of its own, one process per timed request, and
what the benchmark's parts share."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing as mp
from collections.abc import Callable, Generator
from dataclasses import dataclass
from multiprocessing.connection import Connection

import httpx
import sqlalchemy as sa

from include.common.db import sqlite_engine
from include.dwh.amplitude import AmplitudeCredentials

TOKEN = "bench-token"
AUTH_HEADERS = {"Authorization": f"Bearer {TOKEN}"}
POST_HEADERS = {**AUTH_HEADERS, "Content-Type": "application/json"}
WEEK_START, WEEK_END = dt.date(2024, 2, 5), dt.date(2024, 2, 11)  # Monday to Sunday: 168 hours

Target = tuple[str, float, float, bool]  # name, value, target, higher is better


def _status_mb(pid: int, key: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of process ``pid``, in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(f"{key}:")) / 1024


def engine_for_url(url: str) -> sa.Engine:
    """An engine as the pipelines build one: SQLite files with their pragmas (WAL), servers plainly."""
    parsed = sa.make_url(url)
    return (
        sqlite_engine(parsed.database) if parsed.get_backend_name() == "sqlite" else sa.create_engine(parsed)
    )


# --- the DWH helper's server ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSetup:
    """What a DWH helper server is given: the DWH database, the largest body it will be sent, and the
    Amplitude project's keys and export directory; the other settings are the defaults."""

    dwh_url: str | None = None
    body_bytes: int = 0
    amplitude: AmplitudeCredentials | None = None
    amplitude_workdir: str | None = None


def _serve(setup: ServerSetup, ready: Connection) -> None:
    """Serve the plugin's plain Flask app on a free port of 127.0.0.1 and send the port to ``ready``.

    Runs in a spawned process until terminated. The request-size limit is raised when ``--rows``
    makes a larger body than it accepts. Tokens are checked by :data:`TOKEN` instead of Airflow's
    auth manager, which only runs inside Airflow's API server. Flask and the plugin are imported here,
    from the plugins folder as Airflow imports them, so that no other process of the benchmark
    carries them in its RSS."""
    from werkzeug.serving import make_server

    from dwh_helper.app import create_app
    from dwh_helper.auth import InvalidTokenError, Principal, use_token_validator
    from dwh_helper.services import Services, Settings

    class BenchTokens:
        """Accepts :data:`TOKEN` alone, as a user who may read and write."""

        def authenticate(self, token: str) -> Principal:
            if token != TOKEN:
                raise InvalidTokenError("Not the benchmark's token.")
            return Principal("bench")

        def may_read(self, principal: Principal) -> bool:
            return True

        def may_write(self, principal: Principal) -> bool:
            return True

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on the terminal
    settings = Settings(
        max_request_bytes=max(Settings().max_request_bytes, setup.body_bytes),
        amplitude_workdir=setup.amplitude_workdir,
    )
    services = Services(
        settings=settings,
        dwh_engine=engine_for_url(setup.dwh_url) if setup.dwh_url else None,
        amplitude=(lambda _conn_id: setup.amplitude) if setup.amplitude else None,
    )
    app = create_app(services)
    use_token_validator(app, BenchTokens())
    server = make_server("127.0.0.1", 0, app)
    ready.send(server.server_port)
    server.serve_forever()


class DwhServer:
    """The DWH helper in a process of its own, one process per timed request.

    :meth:`ready` starts one when none is running, and runs ``warm_up`` on it (imports are done at
    start; the warm-up adds the engine, the first request and the first insert), outside the timing.
    :meth:`one_request` then measures the server's RSS around the timed request and stops it, so that
    each request's ``VmHWM`` is its own and its growth is counted from the ready state."""

    def __init__(self, setup: ServerSetup, warm_up: Callable[[str], object] | None = None) -> None:
        self.setup = setup
        self.warm_up = warm_up
        self.ready_mb: list[float] = []
        self.peak_mb: list[float] = []
        self._process: mp.process.BaseProcess | None = None
        self._base_url = ""

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` of the running server (after :meth:`ready`)."""
        return self._base_url

    @property
    def growth_mb(self) -> float:
        """The largest growth of a server's RSS during its request, from its ready state."""
        return max(peak - ready for ready, peak in zip(self.ready_mb, self.peak_mb, strict=True))

    def ready(self) -> None:
        if self._process is not None:
            return
        context = mp.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_serve, args=(self.setup, send))
        self._process.start()
        if not receive.poll(120):
            self.stop()
            raise RuntimeError("the DWH helper server did not start")
        self._base_url = f"http://127.0.0.1:{receive.recv()}"
        if self.warm_up is not None:
            self.warm_up(self._base_url)

    @contextlib.contextmanager
    def one_request(self) -> Generator[str]:
        """The base URL of the ready server, for one request; records the server's RSS before it and
        its peak once the block ends, then stops the server."""
        if self._process is None:
            raise RuntimeError("call ready() first")
        pid = self._process.pid
        self.ready_mb.append(_status_mb(pid, "VmRSS"))
        try:
            yield self._base_url
            self.peak_mb.append(_status_mb(pid, "VmHWM"))
        finally:
            self.stop()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        self._process.join(30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = None


def expect_status(response: httpx.Response, status: int) -> httpx.Response:
    """``response``, when it has ``status``; else stop: the run measured something else."""
    if response.status_code != status:
        response.read()
        raise RuntimeError(
            f"{response.request.url.path} answered {response.status_code}: {response.text[:500]}"
        )
    return response
