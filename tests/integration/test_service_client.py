"""The client every service uses for another (kit.http.ServiceClient) against real
servers on loopback: a redirect is answered as it is, never followed, so the internal
credential never reaches the place it points to (issue 20.13)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from paysys.kit.http import INTERNAL_TOKEN_HEADER, ServiceClient, make_session
from tests.conftest import free_port


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def elsewhere() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"stolen": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner, url = await serve(app)
    try:
        yield url, seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_never_followed_with_the_internal_credential(
    elsewhere: tuple[str, list[dict[str, str]]], status: int
) -> None:
    target, seen = elsewhere

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": target + "/collect"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner, url = await serve(app)
    session = make_session()
    try:
        client = ServiceClient(session, url, "the-internal-credential-" + "x" * 16, 5)
        for method in ("GET", "POST"):
            answer = await client.request(method, "/internal/anything", json={"a": 1})
            assert answer.status == status
    finally:
        await session.close()
        await runner.cleanup()
    assert seen == []
    assert all(INTERNAL_TOKEN_HEADER not in h for h in seen)
