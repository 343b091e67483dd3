"""The AICO client: token, project, knowledge base, delete, upload, online, as :mod:`contract` names them.

Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff,
honouring ``Retry-After``; an expired token (HTTP 401 or an envelope code in ``expired_codes``) gets one
new token and one retry. A write that failed for good raises :class:`AicoApiError` naming the operation,
the HTTP status and AICO's code and message, never the token or the password.

Every answer is kept in :attr:`AicoClient.answers` (operation, status, code, message, data; the token
answer without its token), which the sync log stores; :attr:`AicoClient.calls` counts requests per
operation, so a dry run can prove it wrote nothing.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from include.aico.config import AicoSettings
from include.common.httputil import describe_transport_error, retry_after_seconds

log = logging.getLogger(__name__)

WRITE_OPERATIONS = ("delete", "upload", "online")


class AicoError(Exception):
    """Anything AICO made impossible. Messages hold no credentials."""


class AicoApiError(AicoError):
    def __init__(self, message: str, *, operation: str, status: int | None = None, code: Any = None):
        super().__init__(message)
        self.operation, self.status, self.code = operation, status, code


class _TokenExpiredError(Exception):
    pass


class AicoClient:
    """One AICO account. Use as a context manager; ``sleep`` and ``clock`` are injectable for tests."""

    def __init__(
        self,
        settings: AicoSettings,
        username: str,
        password: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_secret: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.contract = settings.contract
        self._username, self._password = username, password
        self._sleep, self._clock = sleep, clock
        self._on_secret = on_secret
        self._token: str | None = None
        self._token_expires = 0.0
        self._http = httpx.Client(base_url=settings.base_url, timeout=settings.timeout_s)
        self._rng = random.Random()
        self.answers: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()

    def __enter__(self) -> AicoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"AicoClient({self.settings.base_url!r}, user={self._username!r})"

    # --- operations ------------------------------------------------------------------------------

    def project_id(self, project: str) -> str:
        c = self.contract
        data = self._call("pid", "GET", c.path("project"), params={c.project_name_param: project})
        return self._field(data, c.pid_field, "pid")

    def kb_id(self, pid: str, kb_name: str) -> str:
        c = self.contract
        data = self._call("kb_id", "GET", c.path("kb", pid=pid), params={c.kb_name_param: kb_name})
        return self._field(data, c.kb_id_field, "kb_id")

    def delete(self, pid: str, kb_id: str, doc_ids: list[str]) -> int:
        c = self.contract
        data = self._call(
            "delete", "POST", c.path("delete", pid=pid, kb_id=kb_id), json={c.doc_ids_field: doc_ids}
        )
        return int(data.get(c.deleted_field, len(doc_ids))) if isinstance(data, dict) else len(doc_ids)

    def upload(self, pid: str, kb_id: str, title: str, content: str) -> str:
        c = self.contract
        body = {c.title_field: title, c.content_field: content}
        data = self._call("upload", "POST", c.path("upload", pid=pid, kb_id=kb_id), json=body)
        return self._field(data, c.doc_id_field, "upload")

    def online(self, pid: str, kb_id: str, doc_ids: list[str]) -> int:
        c = self.contract
        data = self._call(
            "online", "POST", c.path("online", pid=pid, kb_id=kb_id), json={c.doc_ids_field: doc_ids}
        )
        return int(data.get(c.online_field, len(doc_ids))) if isinstance(data, dict) else len(doc_ids)

    # --- plumbing --------------------------------------------------------------------------------

    def _field(self, data: Any, name: str, operation: str) -> str:
        if not isinstance(data, dict) or data.get(name) in (None, ""):
            raise AicoApiError(f"AICO {operation}: the answer has no {name!r} field", operation=operation)
        return str(data[name])

    def _ensure_token(self) -> str:
        if self._token is not None and self._clock() < self._token_expires:
            return self._token
        c = self.contract
        body = {c.username_field: self._username, c.password_field: self._password}
        data = self._send("token", "POST", c.path("token"), json=body, auth=False)
        token = self._field(data, c.token_field, "token")
        if self._on_secret is not None:
            self._on_secret(token)
        ttl = data.get(c.expires_field) if isinstance(data, dict) else None
        ttl = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else self.settings.token_ttl_s
        self._token, self._token_expires = token, self._clock() + ttl * 0.9
        return token

    def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._send(operation, method, path, **kwargs)
        except _TokenExpiredError:
            self._token = None  # one new token, one retry
            try:
                return self._send(operation, method, path, **kwargs)
            except _TokenExpiredError:
                raise AicoApiError(
                    f"AICO {operation}: the token was refused right after it was issued", operation=operation
                ) from None

    def _send(self, operation: str, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> Any:
        c, s = self.contract, self.settings
        for attempt in range(1, s.attempts + 1):
            headers = {c.auth_header: c.auth_prefix + self._ensure_token()} if auth else {}
            self.calls[operation] += 1
            retry_after = None
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                problem = describe_transport_error(exc)
            else:
                status = response.status_code
                if status == 401 and auth:
                    raise _TokenExpiredError
                if status == 429 or status >= 500:
                    problem = f"HTTP {status}"
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                else:
                    return self._unwrap(operation, response, auth)
            if attempt == s.attempts:
                raise AicoApiError(
                    f"AICO {operation} failed after {attempt} tries: {problem}", operation=operation
                )
            wait = (
                retry_after
                if retry_after is not None
                else self._rng.uniform(0, s.backoff_s * 2 ** (attempt - 1))
            )
            wait = min(s.max_wait_s, max(0.05, wait))
            log.warning("AICO %s: %s; retry %d in %.1f s", operation, problem, attempt, wait)
            self._sleep(wait)
        raise AssertionError("unreachable")

    def _unwrap(self, operation: str, response: httpx.Response, auth: bool) -> Any:
        c = self.contract
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise AicoApiError(
                f"AICO {operation}: HTTP {response.status_code} without a JSON envelope",
                operation=operation,
                status=response.status_code,
            )
        code, message = payload.get(c.code_field), str(payload.get(c.message_field) or "")[:200]
        if auth and code in c.expired_codes:
            raise _TokenExpiredError
        data = payload.get(c.data_field)
        shown = {k: v for k, v in data.items() if k != c.token_field} if isinstance(data, dict) else None
        self.answers.append(
            {"op": operation, "status": response.status_code, "code": code, "msg": message, "data": shown}
        )
        if response.status_code >= 400 or code not in c.ok_codes:
            raise AicoApiError(
                f"AICO {operation}: HTTP {response.status_code}, code {code!r}: {message or 'no message'}",
                operation=operation,
                status=response.status_code,
                code=code,
            )
        return data
