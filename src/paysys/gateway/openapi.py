"""One OpenAPI document for the whole public API, merged from the services' own."""

from __future__ import annotations

from typing import Any

from paysys.gateway.routes import ROUTES
from paysys.kit.runtime import Runtime


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
        for route in (r for r in ROUTES if r.service == service):
            op = part.get("paths", {}).get(route.path, {}).get(route.method.lower())
            if op is None:
                continue
            op = dict(op)
            if route.auth:
                op["security"] = [{"bearer": []}]
            doc["paths"].setdefault(route.path, {})[route.method.lower()] = op
    return doc
