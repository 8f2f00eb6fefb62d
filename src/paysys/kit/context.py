"""Per-request context (request id, user id) carried across awaits by contextvars."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

import structlog

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)

REQUEST_ID_HEADER = "X-Request-ID"
# What a request id may be (the contract's alphabet). Anything else from outside is
# replaced: the id travels into log lines, Kafka headers, email headers and MongoDB,
# and a byte that one of them refuses must not be able to stop the others.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def safe_request_id(raw: str | None) -> str | None:
    """The id if it is of the safe alphabet and length, else None."""
    return raw if raw is not None and _REQUEST_ID.fullmatch(raw) else None


def current_request_id() -> str | None:
    return request_id_var.get()


def bind_request(request_id: str | None, user_id: str | None = None) -> str:
    rid = safe_request_id(request_id) or str(uuid.uuid4())
    request_id_var.set(rid)
    structlog.contextvars.bind_contextvars(request_id=rid)
    if user_id:
        structlog.contextvars.bind_contextvars(user_id=user_id)
    return rid


def bind_user(user_id: str) -> None:
    structlog.contextvars.bind_contextvars(user_id=user_id)
