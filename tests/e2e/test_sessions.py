"""Sessions under failure: an absolute lifetime, a refresh that survives a database
outage, and a login that gives nothing away while sessions cannot be created."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import Stack, eventually, stack_cmd
from tests.e2e.helpers import PASSWORD, assert_problem, bearer, login, register


async def test_a_session_ends_at_its_absolute_lifetime_however_often_refreshed(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user = await register(api)
    tokens = await login(api, user["email"])
    sid = tokens["refresh_token"].split(".")[0]
    r = aioredis.from_url(stack.infra.redis_url, decode_responses=True)
    try:
        ttl = await r.ttl(f"session:{sid}")
        assert 0 < ttl <= 30 * 24 * 3600  # born with its expiry, in the same step
        fresh = await api.post("/users/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert fresh.status_code == 200
        # Ninety-one days after its login, refreshed every day in between:
        await r.hset(f"session:{sid}", "created", int(time.time()) - 91 * 24 * 3600)
        old = fresh.json()
        resp = await api.post("/users/refresh", json={"refresh_token": old["refresh_token"]})
        assert_problem(resp, 401, "UNAUTHORIZED")
        assert not await r.exists(f"session:{sid}")
        assert (await api.get("/users/me", headers=bearer(old["access_token"]))).status_code == 401
    finally:
        await r.aclose()


@pytest.mark.disruptive
async def test_a_refresh_refused_during_a_database_outage_works_when_retried(
    api: httpx.AsyncClient,
) -> None:
    user = await register(api)
    tokens = await login(api, user["email"])
    stack_cmd("down", "postgres")
    try:
        resp = await api.post("/users/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert_problem(resp, 503, "SERVICE_UNAVAILABLE")
    finally:
        stack_cmd("up", "postgres", "mongodb")

    async def refreshed() -> httpx.Response | None:
        resp = await api.post("/users/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert resp.status_code in (200, 503), resp.text  # never 401: the token is unspent
        return resp if resp.status_code == 200 else None

    resp = await eventually(refreshed, timeout=60, interval=1)
    assert (
        await api.get("/users/me", headers=bearer(resp.json()["access_token"]))
    ).status_code == 200


@pytest.mark.disruptive
async def test_login_without_a_session_store_answers_the_same_for_right_and_wrong_passwords(
    api: httpx.AsyncClient,
) -> None:
    user = await register(api)
    stack_cmd("down", "redis")
    try:
        right = await api.post("/users/login", json={"email": user["email"], "password": PASSWORD})
        wrong = await api.post(
            "/users/login", json={"email": user["email"], "password": "not-the-password"}
        )
        assert right.status_code == wrong.status_code == 503
        assert right.json()["code"] == wrong.json()["code"] == "SERVICE_UNAVAILABLE"
        assert right.json()["detail"] == wrong.json()["detail"]
    finally:
        stack_cmd("up", "redis")

    async def logged_in() -> bool:
        resp = await api.post("/users/login", json={"email": user["email"], "password": PASSWORD})
        return resp.status_code == 200

    await eventually(logged_in, timeout=60, interval=1)


@pytest.mark.disruptive
async def test_the_first_requests_after_a_redis_restart_are_answered(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    """Redis restarted (and loaded) between two requests: the gateway's and the users
    service's pooled connections are dead, which must cost a reconnect, not a 503."""
    user = await register(api)
    tokens = await login(api, user["email"])
    headers = bearer(tokens["access_token"])
    # Several requests at once, so that several pooled connections are in use.
    for _ in range(3):
        assert {r.status_code for r in await _me_many(api, headers)} == {200}
    stack_cmd("down", "redis")
    stack_cmd("up", "redis")
    r = aioredis.from_url(stack.infra.redis_url, decode_responses=True)
    try:

        async def loaded() -> bool:
            try:
                return bool(await r.ping())
            except aioredis.RedisError:  # LOADING while it reads its append-only file
                return False

        await eventually(loaded, timeout=30)
    finally:
        await r.aclose()
    answers = await _me_many(api, headers)
    assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers]
    again = await api.post("/users/login", json={"email": user["email"], "password": PASSWORD})
    assert again.status_code == 200, again.text


@pytest.mark.disruptive
async def test_the_first_requests_after_a_postgresql_restart_are_answered(
    api: httpx.AsyncClient,
) -> None:
    """PostgreSQL restarted between two requests: every service's pooled connections
    are dead, which must cost a reconnect, not a 503 for each dead connection in turn
    (before: each one failed one request, found dead only when used)."""
    user = await register(api)
    headers = bearer((await login(api, user["email"]))["access_token"])
    wallet = (await api.post("/wallets/create", json={"currency": "USD"}, headers=headers)).json()

    def reads() -> list[Any]:
        return [
            *(api.get("/users/me", headers=headers) for _ in range(4)),
            *(api.get(f"/wallets/{wallet['id']}", headers=headers) for _ in range(4)),
            *(api.get("/transactions", headers=headers) for _ in range(4)),
        ]

    for _ in range(3):  # several pooled connections in use in each service
        assert {r.status_code for r in await asyncio.gather(*reads())} == {200}
    stack_cmd("down", "postgres")
    stack_cmd("up", "postgres", "mongodb")
    await asyncio.sleep(1)  # the processes' event loops see their sockets closed
    for _ in range(3):
        answers = await asyncio.gather(*reads())
        assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers]


async def _me_many(api: httpx.AsyncClient, headers: dict[str, str]) -> list[httpx.Response]:
    return list(await asyncio.gather(*(api.get("/users/me", headers=headers) for _ in range(8))))


@pytest.mark.disruptive
async def test_with_redis_down_every_route_fails_closed(api: httpx.AsyncClient) -> None:
    # Issue 20.13: not only login. Without Redis the gateway can check neither a
    # session nor a limit: every route answers 503, none lets a request through.
    user = await register(api)
    tokens = await login(api, user["email"])
    auth = bearer(tokens["access_token"])
    wallet = (await api.post("/wallets/create", json={"currency": "USD"}, headers=auth)).json()
    calls = [
        (
            "POST",
            "/users/register",
            {"email": "x@example.com", "password": PASSWORD, "full_name": "X"},
            {},
        ),
        ("POST", "/users/login", {"email": user["email"], "password": PASSWORD}, {}),
        ("POST", "/users/refresh", {"refresh_token": tokens["refresh_token"]}, {}),
        ("POST", "/users/logout", None, auth),
        ("GET", "/users/me", None, auth),
        ("GET", "/wallets", None, auth),
        ("GET", f"/wallets/{wallet['id']}", None, auth),
        ("POST", "/wallets/create", {"currency": "EUR"}, auth),
        ("GET", "/transactions", None, auth),
        (
            "POST",
            "/transactions/create",
            {
                "type": "transfer",
                "source_wallet_id": wallet["id"],
                "destination_wallet_id": wallet["id"],
                "amount": "1.00",
            },
            auth,
        ),
    ]
    stack_cmd("down", "redis")
    try:
        for method, path, body, headers in calls:
            resp = await api.request(method, path, json=body, headers=headers)
            assert resp.status_code == 503, (method, path, resp.text)
            assert resp.json()["code"] == "SERVICE_UNAVAILABLE"
    finally:
        stack_cmd("up", "redis")

    async def back() -> bool:
        return (await api.get("/users/me", headers=auth)).status_code == 200

    await eventually(back, timeout=60, interval=1)
