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

# Every operation takes a caller's request id; the gateway keeps a safe one and replaces
# anything else, and answers with the id it used.
REQUEST_ID_PARAMETER: dict[str, Any] = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "Your id for this request: up to 128 of A-Z a-z 0-9 . _ : -, kept in "
    "logs, events and records. Anything else is replaced by a new id.",
    "schema": {"type": "string"},
}
REQUEST_ID_HEADER = {
    "description": "The request's id: yours if it was safe, else a new one.",
    "schema": {"type": "string"},
}

# OpenAPI links: what one answer lets a client do next. They document the API's flow and
# drive the stateful fuzzing (create, then read).
_ID = "$response.body#/id"
_FIRST_ID = "$response.body#/items/0/id"
LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("login", "200"): {
        "RefreshTokens": {
            "operationId": "refreshTokens",
            "requestBody": {"refresh_token": "$response.body#/refresh_token"},
        },
    },
    ("createWallet", "201"): {
        "GetWallet": {"operationId": "getWallet", "parameters": {"wallet_id": _ID}},
        "ItsLimits": {"operationId": "getWalletLimits", "parameters": {"wallet_id": _ID}},
        "DeactivateWallet": {"operationId": "deactivateWallet", "parameters": {"wallet_id": _ID}},
        "ActivateWallet": {"operationId": "activateWallet", "parameters": {"wallet_id": _ID}},
        "DepositInto": {
            "operationId": "createTransaction",
            "requestBody": {"type": "deposit", "destination_wallet_id": _ID},
        },
        "ListItsTransactions": {
            "operationId": "listTransactions",
            "parameters": {"query.wallet_id": _ID},
        },
    },
    ("getWallet", "200"): {
        "DepositInto": {
            "operationId": "createTransaction",
            "requestBody": {"type": "deposit", "destination_wallet_id": _ID},
        },
    },
    ("activateWallet", "200"): {
        "DepositInto": {
            "operationId": "createTransaction",
            "requestBody": {"type": "deposit", "destination_wallet_id": _ID},
        },
    },
    ("listWallets", "200"): {
        "GetWallet": {"operationId": "getWallet", "parameters": {"wallet_id": _FIRST_ID}},
        "DepositInto": {
            "operationId": "createTransaction",
            "requestBody": {"type": "deposit", "destination_wallet_id": _FIRST_ID},
        },
        "TransferFrom": {
            "operationId": "createTransaction",
            "requestBody": {"type": "transfer", "source_wallet_id": _FIRST_ID},
        },
    },
    ("getWalletLimits", "200"): {
        "DepositInto": {
            "operationId": "createTransaction",
            "requestBody": {
                "type": "deposit",
                "destination_wallet_id": "$response.body#/wallet_id",
            },
        },
        "ItsStatement": {
            "operationId": "getWalletStatement",
            "parameters": {"wallet_id": "$response.body#/wallet_id"},
        },
    },
    ("getWalletBalanceAt", "200"): {
        "DepositInto": {
            "operationId": "createTransaction",
            "requestBody": {
                "type": "deposit",
                "destination_wallet_id": "$response.body#/wallet_id",
            },
        },
    },
    ("createWebhook", "201"): {
        "GetWebhook": {"operationId": "getWebhook", "parameters": {"webhook_id": _ID}},
        "ItsDeliveries": {"operationId": "listDeliveries", "parameters": {"webhook_id": _ID}},
    },
    ("createTransaction", "201"): {
        "GetTransaction": {"operationId": "getTransaction", "parameters": {"transaction_id": _ID}},
    },
    ("createTransaction", "400"): {
        "GetFailedTransaction": {
            "operationId": "getTransaction",
            "parameters": {"transaction_id": "$response.body#/transaction_id"},
        },
    },
    ("listTransactions", "200"): {
        "GetTransaction": {
            "operationId": "getTransaction",
            "parameters": {"transaction_id": _FIRST_ID},
        },
        "NextPage": {
            "operationId": "listTransactions",
            "parameters": {"query.cursor": "$response.body#/next_cursor"},
        },
    },
}


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def _with_errors(op: dict[str, Any], auth: bool, operation_id: str) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, response in op.get("responses", {}).items():
        if str(status).startswith(("4", "5")):
            responses[str(status)] = _problem(response.get("description") or "Error")
        else:
            responses[str(status)] = dict(response)
    for status, description in GATEWAY_STATUSES.items():
        responses.setdefault(status, _problem(description))
    if auth:
        responses.setdefault(AUTH_STATUS[0], _problem(AUTH_STATUS[1]))
    for status, response in responses.items():
        response["headers"] = {"X-Request-ID": REQUEST_ID_HEADER}
        if (operation_id, status) in LINKS:
            response["links"] = LINKS[(operation_id, status)]
    responses["429"]["headers"]["Retry-After"] = {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer"},
    }
    parameters = [*op.get("parameters", []), REQUEST_ID_PARAMETER]
    return {**op, "parameters": parameters, "responses": dict(sorted(responses.items()))}


async def merged_openapi(rt: Runtime) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "paysys public API",
            "version": "1.0.0",
            # No open-source licence has been chosen for paysys yet (the packages say
            # UNLICENSED): the document says so rather than invent one.
            "license": {
                "name": "UNLICENSED (all rights reserved)",
                "identifier": "LicenseRef-paysys",
            },
        },
        # Relative: the gateway that served this document, wherever it is reached.
        "servers": [{"url": "/", "description": "This gateway"}],
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
            op = _with_errors(dict(op), route.auth, route.operation_id)
            op["operationId"] = route.operation_id
            # Every operation says how it is authenticated: a public one with [].
            op["security"] = [{"bearer": []}] if route.auth else []
            doc["paths"].setdefault(path, {})[route.method.lower()] = op
    return doc
