"""Builds a paysys FastAPI app: problem+json errors, request ids, metrics, health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paysys.kit.auth import internal_token_ok
from paysys.kit.context import bind_request, client_ip_var
from paysys.kit.errors import NotReady, install_error_handlers, problem
from paysys.kit.http import INTERNAL_TOKEN_HEADER
from paysys.kit.metrics import metrics_response, observe_request
from paysys.kit.settings import KitSettings

log = structlog.get_logger()

Check = Callable[[], Awaitable[Any]]
MAX_BODY_BYTES = 1024 * 1024
INTERNAL_TOKEN_HEADER_B = INTERNAL_TOKEN_HEADER.lower().encode()


class RequestContextMiddleware:
    """Takes or makes the request id, binds it to every log line, echoes it back, logs
    one line per request, counts and times it (kit.metrics: one layer for both, as each
    layer wraps every message of every request), and refuses bodies over the size limit
    before reading them."""

    def __init__(
        self,
        app: ASGIApp,
        internal_token: str,
        service: str = "",
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.internal_token = internal_token
        self.service = service
        self.max_body = max_body

    async def _buffer(self, receive: Receive) -> tuple[Receive, bool]:
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body:
                return receive, True
            if not message.get("more_body", False):
                break
        return _replay(messages, receive), False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        structlog.contextvars.clear_contextvars()
        headers = dict(scope["headers"])
        rid = bind_request(headers.get(b"x-request-id", b"").decode("latin-1"))
        # The user and client address a caller reports are believed (and logged) only
        # from another paysys process (the gateway), which holds the internal credential
        # and verified them; the gateway binds its own after its checks.
        forwarded = None
        if internal_token_ok(_text(headers.get(INTERNAL_TOKEN_HEADER_B)), self.internal_token):
            forwarded = _text(headers.get(b"x-forwarded-for")).split(",")[0].strip()
            user = headers.get(b"x-user-id")
            if user:
                structlog.contextvars.bind_contextvars(user_id=user.decode("latin-1")[:64])
        client = scope.get("client")
        client_ip_var.set(forwarded or (client[0] if client else None))
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *[(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"],
                    (b"x-request-id", rid.encode("latin-1")),
                ]
            await send(message)

        length = headers.get(b"content-length")
        too_large = length is not None and length.isdigit() and int(length) > self.max_body
        if length is None and headers.get(b"transfer-encoding"):
            # A chunked body announces no size: read it here, up to the limit, and hand
            # the application a replay of what was read.
            receive, too_large = await self._buffer(receive)
        if too_large:
            response = problem(413, "PAYLOAD_TOO_LARGE", "The request body is too large.")
            await response(scope, receive, send_wrapper)
            observe_request(self.service, scope, 413, time.perf_counter() - start)
            return
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - start
            observe_request(self.service, scope, status, seconds)
            path = scope.get("path", "")
            if path not in OPERATIONS_PATHS:
                log.info(
                    "request",
                    method=scope.get("method"),
                    path=path,
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                )


OPERATIONS_PATHS = frozenset({"/metrics", "/health", "/ready"})


class OperationsPort:
    """With PAYSYS_METRICS_PORT: the operations paths answer on that port only, and
    nothing else does; either way round, 404 (problem+json), as for a path that is not
    there. The process listens on both ports (paysys.cli.serve)."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app, self.port = app, port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server") or (None, None)
            on_operations_port = server[1] == self.port
            if (scope["path"] in OPERATIONS_PATHS) != on_operations_port:
                response = problem(404, "NOT_FOUND", "Not found.")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _text(raw: bytes | None) -> str:
    return raw.decode("latin-1") if raw else ""


def _replay(messages: list[Message], then: Receive) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return await then()  # e.g. waiting for the client to disconnect

    return receive


def build_app(
    service: str,
    settings: KitSettings,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    *,
    title: str | None = None,
    openapi: bool = True,
) -> FastAPI:
    app = FastAPI(
        title=title or f"paysys {service}",
        lifespan=lifespan,
        openapi_url="/openapi.json" if openapi else None,
        docs_url="/docs" if openapi else None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry hooks, off: they look up the global providers on
        # every request (3-4 % of a service's CPU on the money path), and paysys traces
        # by X-Request-ID and measures through Prometheus (kit.metrics).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.service = service
    app.state.checks = {}
    app.state.background = {}
    install_error_handlers(app)
    if settings.metrics_port is not None:
        app.add_middleware(OperationsPort, port=settings.metrics_port)
    app.add_middleware(
        RequestContextMiddleware, internal_token=settings.internal_token, service=service
    )

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/ready", include_in_schema=False)
    async def ready(request: Request) -> Response:
        # Ready means able to serve a request: what one needs is required; what only
        # background work needs (relays to Kafka and MongoDB) is reported beside it.
        checks: dict[str, Check] = request.app.state.checks
        background: dict[str, Check] = request.app.state.background
        results = await asyncio.gather(
            *(_run_check(fn) for fn in (*checks.values(), *background.values()))
        )
        status = dict(zip(checks, results[: len(checks)], strict=True))
        reported = dict(zip(background, results[len(checks) :], strict=True))
        failing = sorted(name for name, ok in status.items() if ok != "ok")
        if failing:
            return problem(
                503,
                "NOT_READY",
                f"Dependencies not answering: {', '.join(failing)}.",
                checks=status,
                failing=failing,
                background=reported,
            )
        return JSONResponse({"status": "ready", "checks": status, "background": reported})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return metrics_response()

    return app


async def _run_check(fn: Check) -> str:
    try:
        await asyncio.wait_for(fn(), 2.0)
        return "ok"
    except NotReady as exc:
        return f"failing: {exc}"
    except Exception as exc:
        return f"failing: {type(exc).__name__}"


async def run_forever(name: str, coro_fn: Callable[[], Awaitable[None]]) -> None:
    """Runs a background loop, restarting it if it ever dies unexpectedly."""
    while True:
        try:
            await coro_fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background_task_crashed", task=name)
            await asyncio.sleep(1.0)


class TaskGroup:
    """Background tasks owned by an app's lifespan, cancelled cleanly on shutdown."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, coro_fn: Callable[[], Awaitable[None]]) -> None:
        self.tasks.append(asyncio.create_task(run_forever(name, coro_fn), name=name))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
