"""Plain Starlette handlers for the money path's busiest routes.

FastAPI's per-request machinery (dependency solving, body and header parameters,
response models) cost as much as the work of a transfer route itself: wallets' transfer
went from 159 to 81 us of CPU as a plain handler, and the profile of transactions under
the transfer load put half of its route handling there. A busy route therefore reads its
own request here, checked by the same pydantic models and answered with the same
problem+json (a RequestValidationError, rendered by kit.errors as FastAPI would).

`served_by` keeps a public operation declared with FastAPI, so its OpenAPI entry (body,
headers, answers) still comes from the declaration, while requests go to the plain
handler: FastAPI's documented extension point for this is an APIRoute subclass with its
own `get_route_handler`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Annotated, Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import StringConstraints, TypeAdapter, ValidationError

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

IDEMPOTENCY_KEY = TypeAdapter(Annotated[str, StringConstraints(min_length=1, max_length=255)])


def served_by(handler: Handler) -> type[APIRoute]:
    """A route class for `add_api_route(..., route_class_override=served_by(h))`: the
    operation as declared (its schema, and its FastAPI endpoint as the reference), `h`
    serving its requests."""

    class PlainRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            return handler

    return PlainRoute


def _errors(exc: ValidationError, *where: str) -> list[Any]:
    return [{**e, "loc": (*where, *e["loc"])} for e in exc.errors()]


def _is_json(content_type: str | None) -> bool:
    # As FastAPI decides it: no Content-Type, or application/json or application/*+json.
    if not content_type:
        return True
    message = Message()
    message["content-type"] = content_type
    main, _, sub = message.get_content_type().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def body_of(request: Request, adapter: TypeAdapter[Any], errors: list[Any]) -> Any:
    """The JSON body checked by its type; what is wrong with it joins `errors` (None
    returned then)."""
    if not _is_json(request.headers.get("content-type")):
        errors.append(
            {"type": "json_type", "loc": ("body",), "msg": "The body must be JSON.", "input": None}
        )
        return None
    try:
        return adapter.validate_json(await request.body())
    except ValidationError as exc:
        errors.extend(_errors(exc, "body"))
        return None


def idempotency_key(request: Request, errors: list[Any]) -> str | None:
    """The Idempotency-Key header, 1 to 255 characters, if sent."""
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    try:
        key: str = IDEMPOTENCY_KEY.validate_python(raw)
    except ValidationError as exc:
        errors.extend(_errors(exc, "header", "Idempotency-Key"))
        return None
    return key


def refuse(errors: list[Any]) -> None:
    """Answers 422 with every error found in the request, if any."""
    if errors:
        raise RequestValidationError(errors)


async def parsed(request: Request, adapter: TypeAdapter[Any]) -> Any:
    """A body checked by its type, or 422."""
    errors: list[Any] = []
    body = await body_of(request, adapter, errors)
    refuse(errors)
    return body
