"""One OpenAPI document for the whole public API, merged from the services' own, with
what the gateway adds: operation ids, security, and every error status it can answer,
each described by one `Problem` schema so that a generated client can read its code."""

from __future__ import annotations

import re
from typing import Any

from paysys.gateway.routes import ROUTES
from paysys.kit.errors import PROBLEM_JSON
from paysys.kit.runtime import Runtime

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem; `code` says what went wrong, for machines.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "UPPER_SNAKE, e.g. INSUFFICIENT_FUNDS"},
        "errors": {
            "type": "array",
            "description": "For VALIDATION_ERROR: where and what.",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
            },
        },
        "transaction_id": {
            "type": "string",
            "description": "For a 400 of POST /transactions/create: the FAILED transaction.",
        },
    },
    "additionalProperties": True,
}

# What the gateway itself may answer on any operation, whatever the service says.
GATEWAY_STATUSES: dict[str, str] = {
    "413": "The request body is larger than 1 MiB.",
    "422": "The request is not valid (VALIDATION_ERROR, with `errors`).",
    "429": "Rate limited (RATE_LIMITED); retry after `Retry-After` seconds.",
    "503": "A service or dependency is not available (SERVICE_UNAVAILABLE); retry later.",
}
FASTAPI_422_SCHEMAS = ("HTTPValidationError", "ValidationError")  # replaced by Problem
AUTH_STATUS = ("401", "The access token is missing, malformed, expired or revoked.")


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def _with_errors(op: dict[str, Any], auth: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, response in op.get("responses", {}).items():
        if str(status).startswith(("4", "5")):
            responses[str(status)] = _problem(response.get("description") or "Error")
        else:
            responses[str(status)] = response
    for status, description in GATEWAY_STATUSES.items():
        responses.setdefault(status, _problem(description))
    if auth:
        responses.setdefault(AUTH_STATUS[0], _problem(AUTH_STATUS[1]))
    responses["429"]["headers"] = {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer"},
        }
    }
    return {**op, "responses": dict(sorted(responses.items()))}


async def merged_openapi(rt: Runtime) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "paysys public API", "version": "1.0.0"},
        "paths": {},
        "components": {
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    for service in sorted({r.service for r in ROUTES}):
        part = (await rt.client(service).request("GET", "/openapi.json")).body or {}
        schemas = part.get("components", {}).get("schemas", {})
        doc["components"]["schemas"].update(
            {
                k: v
                for k, v in schemas.items()
                if k not in ("HTTPValidationError", "ValidationError")
            }
        )
        paths = {_shape(p): p for p in part.get("paths", {})}
        for route in (r for r in ROUTES if r.service == service):
            # The service's own template (its parameter names) is the one its operation
            # describes: /wallets/{wallet_id} there is /wallets/{id} in the routing table.
            path = paths.get(_shape(route.path))
            op = part["paths"].get(path, {}).get(route.method.lower()) if path else None
            if op is None:
                continue
            op = _with_errors(dict(op), route.auth)
            op["operationId"] = route.operation_id
            if route.auth:
                op["security"] = [{"bearer": []}]
            doc["paths"].setdefault(path, {})[route.method.lower()] = op
    return doc
