"""Rate limits and upstream failures at the gateway, on a second gateway instance with
low limits (sharing Redis with the first: limits are shared by every instance)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import TEST_PORTS, Stack, free_port, gateway_of, unique_email

PORT = free_port()
NOBODY = free_port()  # nothing listens there: wallets is "down"


@pytest.fixture(scope="module")
def strict_gateway(stack: Stack) -> Iterator[str]:
    with gateway_of(
        stack,
        "strict",
        PAYSYS_GATEWAY_PORT=str(PORT),
        PAYSYS_RATE_LIMIT_LOGIN="5",
        PAYSYS_RATE_LIMIT_REGISTER="5",
        PAYSYS_RATE_LIMIT_USER="5",
        # one proxy in front: X-Forwarded-For's last hop is the client (when sent)
        PAYSYS_TRUSTED_PROXY_HOPS="1",
        PAYSYS_USERS_PORT=str(TEST_PORTS["users"]),
        PAYSYS_WALLETS_PORT=str(NOBODY),
    ) as url:
        yield url


def fresh_ip() -> str:
    # A loopback address no earlier run used within the window (Redis keeps windows).
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"


def client_from(url: str, ip: str) -> httpx.AsyncClient:
    # Loopback has all of 127.0.0.0/8: binding the source address is a real other client.
    return httpx.AsyncClient(
        base_url=url, transport=httpx.AsyncHTTPTransport(local_address=ip), timeout=30
    )


async def test_login_over_the_limit_from_one_ip_is_429_and_other_ips_are_unaffected(
    strict_gateway: str,
) -> None:
    body = {"email": unique_email("rl"), "password": "whatever-whatever"}
    async with (
        client_from(strict_gateway, fresh_ip()) as a,
        client_from(strict_gateway, fresh_ip()) as b,
    ):
        for _ in range(5):
            assert (await a.post("/users/login", json=body)).status_code == 401
        limited = await a.post("/users/login", json=body)
        assert limited.status_code == 429
        assert limited.headers["content-type"].startswith("application/problem+json")
        assert limited.json()["code"] == "RATE_LIMITED"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert (await b.post("/users/login", json=body)).status_code == 401


async def test_a_service_that_is_down_gives_503_service_unavailable(
    strict_gateway: str, stack: Stack
) -> None:
    async with client_from(strict_gateway, fresh_ip()) as c:
        email = unique_email("down")
        reg = await c.post(
            "/users/register", json={"email": email, "password": "long-enough-pw", "full_name": "D"}
        )
        assert reg.status_code == 201
        tokens = (
            await c.post("/users/login", json={"email": email, "password": "long-enough-pw"})
        ).json()
        resp = await c.get(
            "/wallets", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert resp.status_code == 503
        assert resp.json()["code"] == "SERVICE_UNAVAILABLE"
        assert str(NOBODY) not in resp.text


async def test_authenticated_requests_are_limited_per_user(strict_gateway: str) -> None:
    tokens = []
    async with client_from(strict_gateway, fresh_ip()) as c:
        for _ in range(2):
            email = unique_email("per-user")
            body = {"email": email, "password": "long-enough-pw", "full_name": "U"}
            assert (await c.post("/users/register", json=body)).status_code == 201
            login = await c.post(
                "/users/login", json={"email": email, "password": body["password"]}
            )
            tokens.append({"Authorization": f"Bearer {login.json()['access_token']}"})
    first, second = tokens
    # the same user from two addresses shares one budget; another user has their own
    async with (
        client_from(strict_gateway, fresh_ip()) as a,
        client_from(strict_gateway, fresh_ip()) as b,
    ):
        codes = [
            (await (a if i % 2 else b).get("/users/me", headers=first)).status_code
            for i in range(6)
        ]
        assert codes == [200] * 5 + [429]
        assert (await a.get("/users/me", headers=second)).status_code == 200


async def test_ipv6_clients_of_one_64_share_one_login_budget(strict_gateway: str) -> None:
    prefix = f"2001:db8:{random.randint(1, 0xFFFF):x}:{random.randint(1, 0xFFFF):x}"
    body = {"email": unique_email("v6"), "password": "whatever-whatever"}
    async with httpx.AsyncClient(base_url=strict_gateway, timeout=30) as c:
        codes = []
        for i in range(6):
            # a new address of the same /64 for every try, as any IPv6 host can
            xff = {"X-Forwarded-For": f"{prefix}::{i + 1:x}"}
            codes.append((await c.post("/users/login", json=body, headers=xff)).status_code)
        assert codes == [401] * 5 + [429]
        other = {"X-Forwarded-For": f"2001:db8:ffff:{random.randint(1, 0xFFFF):x}::1"}
        assert (await c.post("/users/login", json=body, headers=other)).status_code == 401


async def test_a_burst_of_200_concurrent_connections_gets_exactly_the_limit_through(
    strict_gateway: str,
) -> None:
    body = {"email": unique_email("burst"), "password": "whatever-whatever"}
    ip = fresh_ip()
    clients = [client_from(strict_gateway, ip) for _ in range(200)]
    try:
        answers = await asyncio.gather(*(c.post("/users/login", json=body) for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    codes = [a.status_code for a in answers]
    assert codes.count(401) == 5  # the limit, not one more, however they race
    assert codes.count(429) == 195


async def test_registrations_and_refreshes_over_the_per_ip_limit_are_429(
    strict_gateway: str,
) -> None:
    # Issue 20.13: the register and refresh limits, not only login's. Refresh shares
    # login's budget (one bucket for every way to a session).
    async with client_from(strict_gateway, fresh_ip()) as c:
        statuses = []
        for _ in range(7):
            body = {"email": unique_email("rl-reg"), "password": "x", "full_name": "R"}
            statuses.append((await c.post("/users/register", json=body)).status_code)
        assert statuses[:5] == [422] * 5 and statuses[5:] == [429, 429]
    async with client_from(strict_gateway, fresh_ip()) as c:
        statuses = [
            (await c.post("/users/refresh", json={"refresh_token": "nonsense"})).status_code
            for _ in range(7)
        ]
        assert statuses[:5] == [401] * 5 and statuses[5:] == [429, 429]


async def test_a_redis_that_forgot_its_scripts_still_checks_sessions_and_limits(
    stack: Stack, strict_gateway: str
) -> None:
    """Redis restarted (its scripts gone): the gateway's one-command check loads its
    script again; the session and the limit are still checked, on the same request."""
    async with client_from(strict_gateway, fresh_ip()) as c:
        email = unique_email("noscript")
        body = {"email": email, "password": "long-enough-pw", "full_name": "U"}
        assert (await c.post("/users/register", json=body)).status_code == 201
        login = await c.post("/users/login", json={"email": email, "password": body["password"]})
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        redis = aioredis.from_url(stack.infra.redis_url)
        try:
            codes = []
            for _ in range(6):
                await redis.script_flush()
                codes.append((await c.get("/users/me", headers=auth)).status_code)
            assert codes == [200] * 5 + [429]
            async with httpx.AsyncClient(base_url=stack.gateway, timeout=30) as other:
                assert (await other.post("/users/logout", headers=auth)).status_code == 204
            await redis.script_flush()
            assert (await c.get("/users/me", headers=auth)).status_code == 401
        finally:
            await redis.aclose()
