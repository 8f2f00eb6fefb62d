"""A kept-alive connection between two of our processes is closed by its client, never
by its server under a request (the CI failure of 2026-12-07: a refund answered 503, "The
transactions service is not available", with every process up).

uvicorn closed an idle connection after 5 s while the pooled aiohttp session kept it for
30 s and reused its oldest connection first: a request sent as the server's timer fired
met a closed socket (ServerDisconnectedError), and a POST without a key cannot be sent
again. The project's server (`paysys.cli.server_config`) and client (`kit.http`) are run
here with their idle limits scaled down, and requests are sent across both limits."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from paysys.cli import server_config
from paysys.kit.http import make_session
from paysys.kit.settings import KitSettings
from tests.conftest import free_port


async def _ok(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"ok": True})


async def _sweep(settings: KitSettings, around: float) -> list[tuple[float, str]]:
    """Requests each sent after an idle wait from `around` - 15 ms to `around` + 15 ms,
    1 ms apart, on the pooled connection: the errors met, with their waits."""
    port = free_port()
    app = Starlette(routes=[Route("/x", _ok, methods=["POST"])])
    config = server_config("wallets", settings, app=app, port=port)
    config.loop = "none"  # the test's own loop
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    session = make_session(idle_seconds=settings.http_client_idle_seconds)
    url, errors = f"http://127.0.0.1:{port}/x", []
    try:
        for step in range(31):
            wait = around - 0.015 + step * 0.001
            await (await session.post(url, data=b"{}")).read()
            await asyncio.sleep(wait)
            try:
                answer = await session.post(url, data=b"{}")
                assert answer.status == 200
                await answer.read()
            except aiohttp.ClientError as exc:
                errors.append((round(wait, 3), type(exc).__name__))
    finally:
        await session.close()
        server.should_exit = True
        await serving
    return errors


@pytest.mark.parametrize("edge", ["client", "server"])
async def test_a_pooled_connection_is_never_closed_under_a_request(edge: str) -> None:
    settings = KitSettings(env="test", http_idle_seconds=0.5, http_client_idle_seconds=0.25)
    around = {"client": 0.25, "server": 0.5}[edge]
    assert await _sweep(settings, around) == []


def test_settings_refuse_clients_that_keep_connections_as_long_as_servers() -> None:
    with pytest.raises(ValueError, match="PAYSYS_HTTP_CLIENT_IDLE_SECONDS"):
        KitSettings(env="test", http_idle_seconds=30, http_client_idle_seconds=30)
    defaults = KitSettings(env="test")
    assert defaults.http_client_idle_seconds < defaults.http_idle_seconds
