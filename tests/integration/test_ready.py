"""/ready checks what a request of the process needs, and only that: its database (at the
schema this code needs) and Redis where used. MongoDB and Kafka, which only the outbox
relays use (events and records wait in PostgreSQL), are reported, not required: a
broker restart or a MongoDB failover must not empty every Service (issue 25.2)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from tests.conftest import Stack, eventually, stack_cmd


async def _status(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with httpx.AsyncClient(timeout=5) as client:
        resp = await client.get(url + "/ready")
        return resp.status_code, resp.json()


@pytest.mark.disruptive
@pytest.mark.parametrize("component", ["postgres", "redis"])
async def test_ready_names_a_stopped_dependency_and_recovers(stack: Stack, component: str) -> None:
    url = stack.url("users")  # users depends on PostgreSQL, Redis, MongoDB and Kafka

    async def ready() -> bool:
        return (await _status(url))[0] == 200

    # an earlier disruptive test may have just restarted something: start from ready
    await eventually(ready, timeout=60)
    stack_cmd("down", component)
    try:

        async def not_ready() -> dict | None:  # type: ignore[type-arg]
            status, body = await _status(url)
            return body if status == 503 else None

        body = await eventually(not_ready, timeout=30)
        assert body["code"] == "NOT_READY"
        assert component in body["failing"]
        assert component in body["detail"]
        assert body["checks"][component].startswith("failing")
        assert await _health_ok(url)
    finally:
        stack_cmd("up", component, "mongodb")

    await eventually(ready, timeout=60)


async def _health_ok(url: str) -> bool:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(url + "/health")).status_code == 200


@pytest.mark.disruptive
@pytest.mark.parametrize("component", ["mongodb", "kafka"])
async def test_an_asynchronous_dependency_down_is_reported_not_unready(
    stack: Stack, component: str
) -> None:
    # The services whose relays use it (payment-gateway keeps no MongoDB records).
    users = ("users", "wallets", "transactions") + (
        ("payment_gateway",) if component == "kafka" else ()
    )
    urls = [stack.url(s) for s in users]

    async def all_ready() -> bool:
        return all([(await _status(u))[0] == 200 for u in urls])

    await eventually(all_ready, timeout=60)
    stack_cmd("down", component)
    try:
        for url in urls:

            async def reported(url: str = url) -> dict | None:  # type: ignore[type-arg]
                status, body = await _status(url)
                assert status == 200, body  # still serving
                return body if body["background"][component] != "ok" else None

            body = await eventually(reported, timeout=30)
            assert body["status"] == "ready"
            assert component not in body["checks"]
    finally:
        stack_cmd("up", component)
    await eventually(all_ready, timeout=60)


async def test_a_schema_behind_the_code_is_not_ready(stack: Stack) -> None:
    url = stack.url("payment_gateway")
    conn = await asyncpg.connect(stack.infra.dsn)
    try:
        at = await conn.fetchval("SELECT version_num FROM payment_gateway.alembic_version")
        assert (await _status(url))[0] == 200
        await conn.execute("UPDATE payment_gateway.alembic_version SET version_num = '0001'")
        try:
            status, body = await _status(url)
            assert status == 503
            assert body["failing"] == ["postgres"]
            assert f"needs {at}" in body["checks"]["postgres"]
        finally:
            await conn.execute("UPDATE payment_gateway.alembic_version SET version_num = $1", at)
        assert (await _status(url))[0] == 200
    finally:
        await conn.close()
