"""/ready really checks each dependency."""

from __future__ import annotations

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
