"""Helpers for the money-moving end-to-end tests."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from tests.conftest import Stack
from tests.e2e.helpers import user_with_token

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "cvc": "123"}


async def wallet_for(
    api: httpx.AsyncClient, auth: dict[str, str], currency: str = "USD"
) -> dict[str, Any]:
    resp = await api.post("/wallets/create", json={"currency": currency}, headers=auth)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def deposit(
    api: httpx.AsyncClient, auth: dict[str, str], wallet_id: str, amount: str, **extra: Any
) -> httpx.Response:
    body = {"type": "deposit", "destination_wallet_id": wallet_id, "amount": amount, "card": CARD}
    body.update(extra)
    return await api.post("/transactions/create", json=body, headers=auth)


async def funded_user(
    api: httpx.AsyncClient, amount: str = "100.00", account_type: str = "personal"
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    user, auth = await user_with_token(api, account_type)
    wallet = await wallet_for(api, auth)
    if amount != "0":
        resp = await deposit(api, auth, wallet["id"], amount)
        assert resp.status_code == 201, resp.text
    return user, auth, wallet


async def move(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    kind: str,
    src: str,
    dst: str,
    amount: str,
    **extra: Any,
) -> httpx.Response:
    body = {"type": kind, "source_wallet_id": src, "destination_wallet_id": dst, "amount": amount}
    body.update(extra)
    return await api.post("/transactions/create", json=body, headers=auth)


async def balance(api: httpx.AsyncClient, auth: dict[str, str], wallet_id: str) -> str:
    resp = await api.get(f"/wallets/{wallet_id}", headers=auth)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["balance"])


async def db_fetch(stack: Stack, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(stack.infra.dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def uid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


async def arm_fault(
    stack: Stack, destination_wallet_id: str, fault: str, seconds: float = 0
) -> None:
    """Test-only fault hook of the transactions service (enabled in the test env)."""
    from paysys.kit.settings import DEV_INTERNAL_TOKEN

    async with httpx.AsyncClient(
        base_url=stack.url("transactions"), headers={"X-Internal-Token": DEV_INTERNAL_TOKEN}
    ) as internal:
        resp = await internal.post(
            "/internal/faults",
            json={
                "destination_wallet_id": destination_wallet_id,
                "fault": fault,
                "seconds": seconds,
            },
        )
        assert resp.status_code == 204, resp.text
