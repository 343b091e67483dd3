"""The AICO knowledge-base API, simulated over real HTTP, implementing exactly
:class:`include.aico.contract.Contract` (the default one, or the overrides a test passes).

State: accounts, projects with their knowledge bases, and the documents of each knowledge base with
their online flag. Faults: tokens expire (``token_ttl_s``, or :meth:`AicoSimulator.expire_tokens`),
:attr:`AicoSimulator.faults` queues 429s and 5xx, and :meth:`AicoSimulator.break_uploads_after`
makes uploads fail (503) after a number of further successes until :meth:`heal` — with 0, a sync fails
between its delete and its first upload. :attr:`AicoSimulator.counters` counts requests per operation.

In-process::

    sim = AicoSimulator()
    sim.add_account("bot", "pw")
    pid, kb_id = sim.add_knowledge_base("crm", "kb-sales")
    with sim.serve() as base_url:
        ...

Standalone (``make aico-sandbox``; the first stdout line is ``{"base_url": ...}``; SIGTERM stops it)::

    python -m sandbox.simulators.aico --port 18768 --demo
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from include.aico.contract import Contract
from sandbox.http import Request, Response, SimulatedApi

#: Accounts and knowledge bases of the embedded defaults (airflow_settings.yaml, `make demo`).
DEMO_ACCOUNTS = {"aico-bot": "sandbox-aico-7f3a", "aico-bot-test": "sandbox-aico-test-51c2"}
DEMO_KNOWLEDGE_BASES = [
    ("customer-service", "kb-sales"),
    ("customer-service", "kb-sales-test"),
    ("customer-service", "kb-support"),
    ("customer-service", "kb-support-test"),
]


@dataclass
class Document:
    doc_id: str
    title: str
    content: str
    online: bool = False


class AicoSimulator:
    def __init__(
        self,
        contract: Contract | None = None,
        *,
        token_ttl_s: float = 1200.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.contract = c = contract or Contract()
        self.token_ttl_s = token_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.accounts: dict[str, str] = {}
        self.projects: dict[str, str] = {}  # name -> pid
        self.knowledge_bases: dict[tuple[str, str], str] = {}  # (pid, name) -> kb_id
        self.documents: dict[str, dict[str, Document]] = {}  # kb_id -> doc_id -> document
        self._tokens: dict[str, float] = {}  # token -> expiry
        self.issued_tokens: list[str] = []  # every token handed out (tests check none leaks)
        self._uploads_left: float = math.inf
        self.counters: Counter[str] = Counter()
        self.api = SimulatedApi("aico")
        self.faults = self.api.faults
        route = self.api.route
        route("POST", c.token_path)(self._token)
        route("GET", _pattern(c.project_path))(self._authed("pid", self._project))
        route("GET", _pattern(c.kb_path))(self._authed("kb_id", self._kb))
        route("POST", _pattern(c.delete_path))(self._authed("delete", self._delete))
        route("POST", _pattern(c.online_path))(self._authed("online", self._online))
        route("POST", _pattern(c.upload_path))(self._authed("upload", self._upload))

    # --- set-up and inspection --------------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self, port: int = 0, host: str = "127.0.0.1") -> Generator[str]:
        with self.api.serve(port, host) as base_url:
            yield base_url

    def add_account(self, username: str, password: str) -> None:
        self.accounts[username] = password

    def add_knowledge_base(self, project: str, name: str) -> tuple[str, str]:
        with self._lock:
            pid = self.projects.setdefault(project, f"p{next(self._ids)}")
            kb_id = self.knowledge_bases.setdefault((pid, name), f"kb{next(self._ids)}")
            self.documents.setdefault(kb_id, {})
        return pid, kb_id

    def docs(self, project: str, name: str) -> list[Document]:
        """The documents of a knowledge base, in upload order."""
        return list(self.documents[self.knowledge_bases[(self.projects[project], name)]].values())

    def writes(self) -> int:
        return sum(self.counters[op] for op in ("delete", "upload", "online"))

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens = {token: -math.inf for token in self._tokens}

    def break_uploads_after(self, successes: int) -> None:
        """Uploads answer 503 once ``successes`` more have succeeded, until :meth:`heal`."""
        self._uploads_left = successes

    def heal(self) -> None:
        self._uploads_left = math.inf
        self.faults.clear()

    # --- routes -----------------------------------------------------------------------------------

    def _ok(self, data: Any) -> Response:
        c = self.contract
        return Response.json({c.code_field: c.ok_codes[0], c.message_field: "success", c.data_field: data})

    def _fail(self, code: int, message: str, status: int = 200) -> Response:
        c = self.contract
        return Response.json({c.code_field: code, c.message_field: message, c.data_field: None}, status)

    def _token(self, request: Request) -> Response:
        self.counters["token"] += 1
        c = self.contract
        body = _body(request)
        user, password = body.get(c.username_field), body.get(c.password_field)
        if not user or not isinstance(password, str) or self.accounts.get(user) != password:
            return self._fail(40100, "invalid username or password", 401)
        token = secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = self._clock() + self.token_ttl_s
            self.issued_tokens.append(token)
        return self._ok({c.token_field: token, c.expires_field: int(self.token_ttl_s)})

    def _authed(
        self, operation: str, handler: Callable[[Request], Response]
    ) -> Callable[[Request], Response]:
        def route(request: Request) -> Response:
            self.counters[operation] += 1
            c = self.contract
            value = request.header(c.auth_header) or ""
            token = value[len(c.auth_prefix) :] if value.startswith(c.auth_prefix) else None
            with self._lock:
                expiry = self._tokens.get(token or "")
            if expiry is None:
                return self._fail(40100, "unauthorized", 401)
            if expiry <= self._clock():
                return self._fail(c.expired_codes[0], "token expired")
            return handler(request)

        return route

    def _project(self, request: Request) -> Response:
        pid = self.projects.get(request.query.get(self.contract.project_name_param, ""))
        return self._ok({self.contract.pid_field: pid}) if pid else self._fail(40400, "project not found")

    def _kb(self, request: Request) -> Response:
        pid = request.params["pid"]
        kb_id = self.knowledge_bases.get((pid, request.query.get(self.contract.kb_name_param, "")))
        return (
            self._ok({self.contract.kb_id_field: kb_id})
            if kb_id
            else self._fail(40400, "knowledge base not found")
        )

    def _kb_docs(self, request: Request) -> dict[str, Document] | Response:
        pid, kb_id = request.params.get("pid"), request.params["kb_id"]
        if not any(k == kb_id and pid in (None, p) for (p, _), k in self.knowledge_bases.items()):
            return self._fail(40400, "knowledge base not found")
        return self.documents[kb_id]

    def _doc_ids(self, request: Request) -> list[str] | None:
        ids = _body(request).get(self.contract.doc_ids_field)
        return ids if isinstance(ids, list) and all(isinstance(i, str) for i in ids) else None

    def _delete(self, request: Request) -> Response:
        docs, ids = self._kb_docs(request), self._doc_ids(request)
        if isinstance(docs, Response):
            return docs
        if ids is None:
            return self._fail(40000, f"{self.contract.doc_ids_field} must be a list of ids")
        with self._lock:
            for doc_id in ids:  # unknown ids: already gone, which is what the caller wants
                docs.pop(doc_id, None)
        return self._ok({self.contract.deleted_field: len(ids)})

    def _upload(self, request: Request) -> Response:
        c = self.contract
        docs = self._kb_docs(request)
        if isinstance(docs, Response):
            return docs
        body = _body(request)
        title, content = body.get(c.title_field), body.get(c.content_field)
        if not isinstance(title, str) or not title or not isinstance(content, str):
            return self._fail(40000, f"{c.title_field} and {c.content_field} are required")
        with self._lock:
            if self._uploads_left <= 0:
                return Response.error(503, "upload service unavailable (simulated)")
            self._uploads_left -= 1
            doc_id = f"d{next(self._ids)}"
            docs[doc_id] = Document(doc_id, title, content)
        return self._ok({c.doc_id_field: doc_id})

    def _online(self, request: Request) -> Response:
        docs, ids = self._kb_docs(request), self._doc_ids(request)
        if isinstance(docs, Response):
            return docs
        if ids is None:
            return self._fail(40000, f"{self.contract.doc_ids_field} must be a list of ids")
        missing = [i for i in ids if i not in docs]
        if missing:
            return self._fail(40400, f"unknown documents: {', '.join(missing[:5])}")
        with self._lock:
            for doc_id in ids:
                docs[doc_id].online = True
        return self._ok({self.contract.online_field: len(ids)})


def _pattern(path: str) -> str:
    return path.replace("{pid}", "<pid>").replace("{kb_id}", "<kb_id>")


def _body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def demo_simulator(**kwargs: Any) -> AicoSimulator:
    """The accounts and knowledge bases the embedded defaults' scenario rows name."""
    sim = AicoSimulator(**kwargs)
    for user, password in DEMO_ACCOUNTS.items():
        sim.add_account(user, password)
    for project, name in DEMO_KNOWLEDGE_BASES:
        sim.add_knowledge_base(project, name)
    return sim


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a simulated AICO knowledge-base API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-ttl-s", type=float, default=1200.0)
    args = parser.parse_args(argv)
    sim = demo_simulator(token_ttl_s=args.token_ttl_s)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with sim.serve(args.port, args.host) as base_url:
        print(json.dumps({"base_url": base_url, "accounts": sorted(sim.accounts)}), flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
