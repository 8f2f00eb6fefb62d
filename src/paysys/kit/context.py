"""Per-request context (request id, user id) carried across awaits by contextvars."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

import structlog

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)

REQUEST_ID_HEADER = "X-Request-ID"


def current_request_id() -> str | None:
    return request_id_var.get()


def bind_request(request_id: str | None, user_id: str | None = None) -> str:
    rid = request_id or str(uuid.uuid4())
    request_id_var.set(rid)
    structlog.contextvars.bind_contextvars(request_id=rid)
    if user_id:
        structlog.contextvars.bind_contextvars(user_id=user_id)
    return rid


def bind_user(user_id: str) -> None:
    structlog.contextvars.bind_contextvars(user_id=user_id)
