"""Every AICO endpoint path and field name, in one place.

AICO has no public API documentation. What the original service relied on is a sequence of calls:
obtain a token, resolve the project (``pid``) and the knowledge base (``kb_id``), delete documents,
upload documents, put them online. The names below are the pipeline's reading of that contract; an
installation whose AICO spells them differently overrides any of them in the ``aico_api`` connection's
extra, under ``contract`` (e.g. ``{"contract": {"doc_id_field": "documentId"}}``), without a code
change. The sandbox simulator implements exactly this contract, so a change here is a change there.

Shape of every answer: a JSON envelope ``{code_field: 0, message_field: "...", data_field: {...}}``;
a code outside ``ok_codes`` is an error even with HTTP 200, and a code in ``expired_codes`` (or HTTP
401) means the token expired. Paths may contain ``{pid}`` and ``{kb_id}``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class ContractError(ValueError):
    """An override in the connection's extra that does not fit the contract."""


@dataclass(frozen=True)
class Contract:
    # authentication: POST {username_field, password_field} -> data[token_field], data[expires_field]
    token_path: str = "/openapi/v1/auth/token"
    username_field: str = "username"
    password_field: str = "password"
    token_field: str = "access_token"
    expires_field: str = "expires_in"
    """Seconds the token lives; absent: ``token_ttl_s`` of the connection (default 20 minutes)."""
    auth_header: str = "Authorization"
    auth_prefix: str = "Bearer "

    # envelope
    code_field: str = "code"
    message_field: str = "msg"
    data_field: str = "data"
    ok_codes: tuple[int, ...] = (0,)
    expired_codes: tuple[int, ...] = (40101,)

    # project: GET ?{project_name_param}=<name> -> data[pid_field]
    project_path: str = "/openapi/v1/projects/lookup"
    project_name_param: str = "name"
    pid_field: str = "pid"

    # knowledge base: GET ?{kb_name_param}=<name> -> data[kb_id_field]
    kb_path: str = "/openapi/v1/projects/{pid}/knowledge-bases/lookup"
    kb_name_param: str = "name"
    kb_id_field: str = "kb_id"

    # documents
    delete_path: str = "/openapi/v1/projects/{pid}/knowledge-bases/{kb_id}/documents/delete"
    """POST {doc_ids_field: [...]} -> data[deleted_field]; ids AICO does not know count as deleted."""
    upload_path: str = "/openapi/v1/projects/{pid}/knowledge-bases/{kb_id}/documents"
    """POST {title_field, content_field} -> data[doc_id_field]; the document starts offline."""
    online_path: str = "/openapi/v1/projects/{pid}/knowledge-bases/{kb_id}/documents/online"
    """POST {doc_ids_field: [...]} -> data[online_field]."""
    doc_ids_field: str = "doc_ids"
    doc_id_field: str = "doc_id"
    title_field: str = "title"
    content_field: str = "content"
    deleted_field: str = "deleted"
    online_field: str = "online"

    def path(self, name: str, **ids: str) -> str:
        """The path of endpoint ``name`` (``upload``, ``kb``, ...) with ``{pid}`` / ``{kb_id}`` filled."""
        template: str = getattr(self, f"{name}_path")
        return template.format(**ids)

    @classmethod
    def from_extra(cls, overrides: Any, source: str = "aico_api extra contract") -> Contract:
        """The default contract with the overrides of a connection extra (a JSON object)."""
        if overrides is None:
            return cls()
        if not isinstance(overrides, dict):
            raise ContractError(f"{source} must be an object of field names to values")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ContractError(f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
        values: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in ("ok_codes", "expired_codes"):
                items = value if isinstance(value, list) else [value]
                if not items or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
                    raise ContractError(f"{source}: {key} must be a list of integers")
                values[key] = tuple(items)
            elif not isinstance(value, str) or (not value.strip() and key != "auth_prefix"):
                raise ContractError(f"{source}: {key} must be a non-empty string")
            elif key.endswith("_path") and not value.startswith("/"):
                raise ContractError(f"{source}: {key} must start with /")
            else:
                values[key] = value
        contract = cls(**values)
        for name in ("token", "project", "kb", "delete", "upload", "online"):
            try:
                contract.path(name, pid="p", kb_id="k")
            except (KeyError, IndexError, ValueError):
                raise ContractError(f"{source}: {name}_path may only use {{pid}} and {{kb_id}}") from None
        return contract
