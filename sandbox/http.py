"""A tiny framework for the third-party API simulators: real HTTP on 127.0.0.1 (or a host of your
choice, e.g. ``0.0.0.0`` in a container), in a thread.

The pipelines' clients are tested against these servers over real sockets, never with patched
clients, so the simulators must behave like the real APIs, faults included. A simulator is a
:class:`SimulatedApi` with routes; :class:`Faults` queues the misbehaviour a test wants next
(status codes with headers, latency), and every request is recorded for assertions::

    api = SimulatedApi("callio")

    @api.route("POST", "/auth/login")
    def login(request):
        return Response.json({"token": "t"})

    with api.serve() as base_url:
        api.faults.fail_next(429, headers={"Retry-After": "1"})
        httpx.post(f"{base_url}/auth/login")   # -> 429, then 200 on the next call

A large body is served from a file (:meth:`Response.from_file`), sent with ``sendfile`` in the kernel, so a
simulator can hand out gigabytes without holding them in memory.

Apps of our own are served the same way: :func:`serve_wsgi` for a plain WSGI (Flask) app, and
:func:`serve_asgi` for an ASGI app on uvicorn, the server of ``airflow api-server`` (the plugin's tests
mount the plugin in it as Airflow does).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


class BadRequestError(Exception):
    """A request a simulated API refuses with 400; the message is the API's own wording."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    body_file: Path | None = None
    """When set, the body is this file's content (``body`` is ignored), streamed from disk."""

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    @classmethod
    def error(cls, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return cls.json({"statusCode": status, "message": message}, status, headers)

    @classmethod
    def from_file(
        cls, path: Path, content_type: str, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        """A body read from ``path`` while it is sent. The file must stay in place until the response
        starts; once it is open, removing it (on POSIX) does not cut the transfer short."""
        return cls(status, b"", {"Content-Type": content_type, **(headers or {})}, body_file=path)


Handler = Callable[[Request], Response]


class Faults:
    """Misbehaviour queued by tests: the next requests fail or slow down, in order, then all is well."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[tuple[str | None, Response]] = deque()
        self.latency_s = 0.0

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        message: str = "simulated failure",
        path: str | None = None,
    ) -> None:
        """The next ``times`` requests (to ``path`` only, when given) answer ``status``."""
        with self._lock:
            for _ in range(times):
                self._queue.append((path, Response.error(status, message, headers)))

    def take(self, path: str) -> Response | None:
        with self._lock:
            for index, (only, response) in enumerate(self._queue):
                if only is None or only == path:
                    del self._queue[index]
                    return response
        return None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
        self.latency_s = 0.0


class SimulatedApi:
    """Routes plus a server; ``<name>`` segments in a route become ``request.params``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.faults = Faults()
        self.requests: list[Request] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        regex = re.compile("^" + re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", pattern) + "$")

        def register(handler: Handler) -> Handler:
            self._routes.append((method.upper(), regex, handler))
            return handler

        return register

    def dispatch(self, request: Request) -> Response:
        self.requests.append(request)
        if self.faults.latency_s:
            time.sleep(self.faults.latency_s)
        fault = self.faults.take(request.path)
        if fault is not None:
            return fault
        allowed = False
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match:
                allowed = True
                if method == request.method:
                    request.params = match.groupdict()
                    return handler(request)
        return Response.error(405 if allowed else 404, f"no route for {request.method} {request.path}")

    @contextlib.contextmanager
    def serve(self, port: int = 0, host: str = "127.0.0.1") -> Generator[str]:
        """Serve on ``host`` (a free port by default) until the block ends; yield the base URL."""
        server = ThreadingHTTPServer((host, port), _handler_class(self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name=f"sim-{self.name}", daemon=True)
        thread.start()
        try:
            yield f"http://{host}:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def _handler_class(api: SimulatedApi) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in two writes: with Nagle's algorithm the body would wait for the
        # client's delayed ACK of the headers, some 40 ms on every small response.
        disable_nagle_algorithm = True

        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                method=self.command,
                path=url.path,
                query={k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()},
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            try:
                response = api.dispatch(request)
            except Exception as exc:  # a simulator bug must surface as a 500, like a real server's
                response = Response.error(500, f"{type(exc).__name__}: {exc}")
            with contextlib.ExitStack() as stack:
                body_file = None
                if response.body_file is not None:
                    try:
                        body_file = stack.enter_context(open(response.body_file, "rb"))
                    except OSError as exc:
                        response = Response.error(500, f"cannot read the response body: {exc.strerror}")
                try:
                    if body_file is None:
                        self._send(response, len(response.body))
                        self.wfile.write(response.body)
                    else:
                        self._send(response, os.fstat(body_file.fileno()).st_size)
                        self.connection.sendfile(body_file)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    self.close_connection = True

        def _send(self, response: Response, length: int) -> None:
            """The status line and headers, flushed: the body follows on the socket itself."""
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()

        # http.server dispatches to do_<METHOD>
        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    return _Handler


@contextlib.contextmanager
def serve_wsgi(app: Any, port: int = 0) -> Generator[str]:
    """Serve a WSGI app (a Flask app) on 127.0.0.1, a thread per request, until the block ends; yield
    its base URL. How the plugin's blueprints are reached outside the Airflow API server."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wsgi-server", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


class AsgiServer:
    """An ASGI app served by uvicorn on 127.0.0.1, in a thread of this process (see :func:`serve_asgi`).

    ``app`` may be replaced between requests. The server counts the HTTP requests it has finished
    handling, so a test can wait for the server's side of a request (a client that hung up early
    does not tell when that is) instead of sleeping.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = ""
        self._changed = threading.Condition()
        self._started = 0
        self._finished = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self._changed:
            self._started += 1
        try:
            await self.app(scope, receive, send)
        finally:
            with self._changed:
                self._finished += 1
                self._changed.notify_all()

    @property
    def finished(self) -> int:
        """HTTP requests whose handling has ended: the app returned or raised."""
        with self._changed:
            return self._finished

    def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Wait until every request the server has received has been handled to its end."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._finished == self._started, timeout_s):
                raise TimeoutError(f"{self._started - self._finished} request(s) still running")


@contextlib.contextmanager
def serve_asgi(app: Any, port: int = 0) -> Generator[AsgiServer]:
    """Serve an ASGI app with uvicorn (the server ``airflow api-server`` runs) on 127.0.0.1 until the
    block ends; yield the :class:`AsgiServer`, its ``url`` set to ``http://127.0.0.1:<port>``."""
    import socket

    import uvicorn

    served = AsgiServer(app)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(served, lifespan="off", log_level="warning", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="asgi-server", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn stopped before it served anything")
            time.sleep(0.01)
        served.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        yield served
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
