"""The client address is the gateway's to derive (finding 19.1): from the socket peer and
exactly PAYSYS_TRUSTED_PROXY_HOPS trusted proxies, never from what a client writes in
X-Forwarded-For. An attacker who rotates the header still meets the login limit, with
one gateway and with two behind HAProxy (as `PAYSYS_INSTANCES=2` runs them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from paysys_dev.fleet import Fleet
from paysys_dev.stack import wait_ready
from tests.conftest import TEST_PORTS, Stack, free_port, gateway_of, unique_email

LIMIT = 5
LONE_REDIS_DB = 7


def strict_env(stack: Stack, port: int, redis_db: int | None = None) -> dict[str, str]:
    env = dict(stack.infra.env)
    env.update(
        PAYSYS_GATEWAY_PORT=str(port),
        PAYSYS_RATE_LIMIT_LOGIN=str(LIMIT),
        PAYSYS_USERS_PORT=str(TEST_PORTS["users"]),
    )
    if redis_db is not None:
        env["REDIS_URL"] = stack.infra.redis_url.rsplit("/", 1)[0] + f"/{redis_db}"
    env.pop("PAYSYS_TRUSTED_PROXY_HOPS", None)
    return env


@pytest.fixture(scope="module")
def lone_gateway(stack: Stack) -> Iterator[str]:
    # Its clients come from 127.0.0.1, the one peer uvicorn's own header rewriting
    # believed, and the address every other test uses too: its limits live in a Redis
    # database of its own, emptied first, so no other test's logins count here.
    env = strict_env(stack, free_port(), LONE_REDIS_DB)
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    with gateway_of(stack, "lone-gateway", **env) as url:
        yield url


@pytest.fixture(scope="module")
def balanced_gateway(stack: Stack) -> Iterator[str]:
    port = free_port()
    run_dir = stack.log_dir / f"fleet-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    fleet = Fleet(
        {"gateway": strict_env(stack, port)},
        {"gateway": port},
        run_dir,
        run_dir,
        instances=2,
        spares=False,
    )
    try:
        fleet.start()
        wait_ready(fleet.ready_urls(), 60, fleet.procs)
        wait_ready({"haproxy": f"http://127.0.0.1:{port}"}, 30)
        yield f"http://127.0.0.1:{port}"
    finally:
        fleet.stop()


async def guesses_with_rotating_forwarded_for(url: str, n: int, src: str) -> list[int]:
    body = {"email": unique_email("xff"), "password": "wrong-password-guess"}
    statuses = []
    async with httpx.AsyncClient(
        base_url=url, transport=httpx.AsyncHTTPTransport(local_address=src), timeout=30
    ) as client:
        for i in range(n):
            forged = {"X-Forwarded-For": f"203.0.113.{i + 1}, 198.51.100.{i + 1}"}
            statuses.append(
                (await client.post("/users/login", json=body, headers=forged)).status_code
            )
    return statuses


@pytest.mark.parametrize("gateway", ["lone_gateway", "balanced_gateway"])
async def test_rotating_x_forwarded_for_does_not_escape_the_login_limit(
    gateway: str, request: pytest.FixtureRequest, stack: Stack
) -> None:
    url = request.getfixturevalue(gateway)
    # Behind HAProxy, a source address of its own on loopback: no other test shares it.
    src = "127.0.0.1" if gateway == "lone_gateway" else f"127.{uuid.uuid4().int % 250 + 1}.3.9"
    statuses = await guesses_with_rotating_forwarded_for(url, LIMIT + 3, src)
    assert statuses[:LIMIT] == [401] * LIMIT
    assert statuses[LIMIT:] == [429] * 3
