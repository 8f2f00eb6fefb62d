"""One OpenAPI document for the whole public API, merged from the services' own."""

from __future__ import annotations

import re
from typing import Any

from paysys.gateway.routes import ROUTES
from paysys.kit.runtime import Runtime


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


async def merged_openapi(rt: Runtime) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "paysys public API", "version": "1.0.0"},
        "paths": {},
        "components": {
            "schemas": {},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    for service in sorted({r.service for r in ROUTES}):
        part = (await rt.client(service).request("GET", "/openapi.json")).body or {}
        doc["components"]["schemas"].update(part.get("components", {}).get("schemas", {}))
        paths = {_shape(p): p for p in part.get("paths", {})}
        for route in (r for r in ROUTES if r.service == service):
            # The service's own template (its parameter names) is the one its operation
            # describes: /wallets/{wallet_id} there is /wallets/{id} in the routing table.
            path = paths.get(_shape(route.path))
            op = part["paths"].get(path, {}).get(route.method.lower()) if path else None
            if op is None:
                continue
            op = dict(op)
            if route.auth:
                op["security"] = [{"bearer": []}]
            doc["paths"].setdefault(path, {})[route.method.lower()] = op
    return doc
