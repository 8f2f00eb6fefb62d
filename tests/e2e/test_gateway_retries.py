"""The gateway tries again what is safe to try again (issue 25.3), so that a pod going
away costs no request: a connection never made, whatever the request; one that broke
after the request went out, only for a read or a keyed write to transactions. Against a
gateway of its own whose upstreams are a test server that hangs up on the first request
of each path, and a port where nothing listens."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from paysys_dev.fleet import spawn_service, stop_processes
from paysys_dev.stack import wait_ready
from tests.conftest import Stack, free_port
from tests.e2e.helpers import bearer, login, register


@dataclass
class Flaky:
    port: int
    seen: Counter[str] = field(default_factory=Counter)


async def _upstream(
    flaky: Flaky, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            length = next(
                (
                    int(h.split(":", 1)[1])
                    for h in head[1:]
                    if h.lower().startswith("content-length:")
                ),
                0,
            )
            if length:
                await reader.readexactly(length)
            if path == "/ready":
                body = b'{"status": "ready"}'
            else:
                flaky.seen[f"{method} {path}"] += 1
                if flaky.seen[f"{method} {path}"] == 1:
                    break  # hang up: the request went out, no answer came back
                body = json.dumps({"id": "x", "answered": True}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[tuple[str, Flaky, Stack]]:
    flaky = Flaky(free_port())
    server = await asyncio.start_server(
        lambda r, w: _upstream(flaky, r, w), "127.0.0.1", flaky.port
    )
    port = free_port()
    env = {
        **stack.infra.env,
        "PAYSYS_GATEWAY_PORT": str(port),
        "PAYSYS_USERS_PORT": str(flaky.port),
        "PAYSYS_TRANSACTIONS_PORT": str(flaky.port),
        "PAYSYS_WALLETS_PORT": str(free_port()),  # nothing listens: never connected
    }
    proc: subprocess.Popen[bytes] = spawn_service("gateway", env, stack.log_dir / "retrying")
    url = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(wait_ready, {"gateway": url}, 60, {"gateway": proc})
        yield url, flaky, stack
    finally:
        stop_processes({"gateway": proc})
        server.close()


async def test_reads_and_keyed_transaction_writes_survive_a_lost_connection(
    gateway: tuple[str, Flaky, Stack], api: httpx.AsyncClient
) -> None:
    url, flaky, _ = gateway
    user = await register(api)  # on the suite's own stack: a real session in Redis
    auth = bearer((await login(api, user["email"]))["access_token"])
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        me = await c.get("/users/me", headers=auth)
        assert me.status_code == 200 and me.json()["answered"]
        keyed = await c.post(
            "/transactions/create",
            json={"type": "transfer"},
            headers={**auth, "Idempotency-Key": "retry-me"},
        )
        assert keyed.status_code == 200 and keyed.json()["answered"]
    assert flaky.seen["GET /users/me"] == 2
    assert flaky.seen["POST /transactions/create"] == 2


async def test_a_write_that_went_out_is_not_sent_twice(
    gateway: tuple[str, Flaky, Stack],
) -> None:
    url, flaky, _ = gateway
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        resp = await c.post("/users/login", json={"email": "a@example.com", "password": "x" * 12})
    assert resp.status_code == 503 and resp.json()["code"] == "SERVICE_UNAVAILABLE"
    assert flaky.seen["POST /users/login"] == 1


async def test_a_connection_never_made_is_tried_again_whatever_the_request(
    gateway: tuple[str, Flaky, Stack], api: httpx.AsyncClient
) -> None:
    url, _, stack = gateway
    user = await register(api)
    auth = bearer((await login(api, user["email"]))["access_token"])
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        resp = await c.post(
            "/wallets/create",
            json={"currency": "USD"},
            headers={**auth, "X-Request-ID": "never-made"},
        )
    assert resp.status_code == 503
    log = (stack.log_dir / "retrying" / "gateway.log").read_text(errors="replace")
    attempts = [
        json.loads(line)["attempt"]
        for line in log.splitlines()
        if "never-made" in line and "upstream_unavailable" in line
    ]
    assert attempts == [1, 2, 3]
