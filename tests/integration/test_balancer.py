"""HAProxy as the fleet configures it (PAYSYS_INSTANCES > 1), in front of two instances
that take a request and hang up without answering: what it sends twice is only what is
safe to send twice (finding 19.11), and it says who the client was (finding 19.1)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from paysys_dev.fleet import instance_port, start_haproxy, stop_processes
from tests.conftest import free_port


@dataclass
class Instances:
    url: str
    seen: list[tuple[str, str, list[str]]] = field(default_factory=list)
    answer: bool = False  # False: hang up without a word after reading the request


async def _instance(
    instances: Instances, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, path, _ = head[0].split(" ", 2)
    forwarded = [
        h.split(":", 1)[1].strip() for h in head[1:] if h.lower().startswith("x-forwarded-for:")
    ]
    length = next(
        (int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:")), 0
    )
    if length:
        await reader.readexactly(length)
    if path == "/ready" or instances.answer:
        if path != "/ready":
            instances.seen.append((method, path, forwarded))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
    else:
        instances.seen.append((method, path, forwarded))
    writer.close()


@pytest.fixture
async def balancer(tmp_path: Path) -> AsyncIterator[Instances]:
    port = free_port()
    instances = Instances(f"http://127.0.0.1:{port}")
    servers = [
        await asyncio.start_server(
            lambda r, w: _instance(instances, r, w), "127.0.0.1", instance_port(port, i)
        )
        for i in range(2)
    ]
    proc: subprocess.Popen[bytes] = start_haproxy({"gateway": port}, 2, tmp_path, tmp_path)
    try:
        async with httpx.AsyncClient(timeout=10) as c:
            for _ in range(100):
                try:
                    await c.get(instances.url + "/ready")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        yield instances
    finally:
        stop_processes({"haproxy": proc})
        for server in servers:
            server.close()


async def attempts(instances: Instances, method: str, path: str, headers: dict[str, str]) -> int:
    instances.seen.clear()
    async with httpx.AsyncClient(timeout=30) as c:
        resp = await c.request(method, instances.url + path, headers=headers, json={})
    assert resp.status_code in (502, 503)  # HAProxy's own problem+json page
    assert resp.headers["content-type"] == "application/problem+json"
    return len([s for s in instances.seen if s[1] == path])


async def test_a_refresh_that_got_no_answer_is_not_sent_again_even_with_a_key(
    balancer: Instances,
) -> None:
    key = {"Idempotency-Key": "k-refresh-1"}
    assert await attempts(balancer, "POST", "/users/refresh", key) == 1
    assert await attempts(balancer, "POST", "/users/login", key) == 1
    assert await attempts(balancer, "POST", "/transactions/create", {}) == 1


async def test_reads_and_keyed_transaction_writes_are_retried_on_another_instance(
    balancer: Instances,
) -> None:
    assert await attempts(balancer, "GET", "/wallets", {}) == 3
    keyed = {"Idempotency-Key": "k-tx-1"}
    assert await attempts(balancer, "POST", "/transactions/create", keyed) == 3


async def test_the_balancer_replaces_the_clients_x_forwarded_for_with_its_peer(
    balancer: Instances,
) -> None:
    balancer.answer = True
    async with httpx.AsyncClient(
        timeout=10, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.77")
    ) as c:
        resp = await c.get(balancer.url + "/x", headers={"X-Forwarded-For": "203.0.113.9"})
    assert resp.status_code == 200
    assert balancer.seen == [("GET", "/x", ["127.0.0.77"])]
