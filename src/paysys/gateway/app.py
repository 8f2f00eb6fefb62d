"""Builds the API gateway app: the only public entry point."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import Route as StarletteRoute

from paysys.gateway.openapi import merged_openapi
from paysys.gateway.proxy import Proxy
from paysys.gateway.routes import ROUTES, Route
from paysys.gateway.settings import GatewaySettings
from paysys.gateway.web import mount_web
from paysys.kit.app import build_app
from paysys.kit.errors import ServiceUnavailable
from paysys.kit.http import ServiceUnreachable
from paysys.kit.metrics import RATE_LIMITED, prime
from paysys.kit.runtime import Runtime


def _endpoint(route: Route) -> Any:
    async def endpoint(request: Request) -> Response:
        proxy: Proxy = request.app.state.proxy
        return await proxy.forward(route, request)

    endpoint.__name__ = f"{route.method.lower()}_{route.path.strip('/').replace('/', '_')}"
    return endpoint


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    rt = Runtime("gateway", settings, redis=True, http=True)

    async def on_start(app: FastAPI) -> None:
        app.state.proxy = Proxy(rt, settings)
        prime(RATE_LIMITED, ("register",), ("login",), ("user",))
        app.state.openapi_doc = None

    app = build_app("gateway", settings, rt.lifespan(on_start), openapi=False)
    for route in ROUTES:
        # Plain Starlette routes: the proxy reads the request itself, so FastAPI's
        # dependency and body machinery would only cost time on every request.
        proxied = StarletteRoute(route.path, _endpoint(route), methods=[route.method])
        proxied.methods = {route.method}  # exactly the method (no implicit HEAD)
        app.router.routes.append(proxied)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        if request.app.state.openapi_doc is None:
            try:
                request.app.state.openapi_doc = await merged_openapi(rt)
            except ServiceUnreachable:
                raise ServiceUnavailable("A service is not available; retry later.") from None
        return JSONResponse(request.app.state.openapi_doc)

    mount_web(app, settings.web_dir)
    return app
