"""A user's own system for the webhook tests: an HTTP receiver that records every POST
(the `receiver` fixture, tests/e2e/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.conftest import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """A user's own system: records every POST; /fail-N answers 500 to its first N."""

    base: str
    got: list[Received] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.got if r.path == path]


@asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    rec = Receiver(f"http://127.0.0.1:{port}")

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        rec.got.append(Received(path, dict(request.headers), await request.read()))
        if path.startswith("/slow") or (path.startswith("/hang-once") and len(rec.at(path)) == 1):
            await asyncio.sleep(60)  # never answers within the 10 s
        if path.startswith("/huge"):
            resp = web.StreamResponse(status=200)
            await resp.prepare(request)
            chunk = b"x" * 65536
            for _ in range(16384):  # 1 GiB, unless the sender hangs up first
                await resp.write(chunk)
            return resp
        if path.startswith("/fail-"):
            left = rec.failures.setdefault(path, int(path.split("-")[1].split("/")[0]))
            if left > 0:
                rec.failures[path] = left - 1
                return web.Response(status=500)
        return web.Response(status=200, text="ok")

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)  # a hanging handler is cut
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield rec
    finally:
        await runner.cleanup()
