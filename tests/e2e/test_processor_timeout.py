"""A card charge whose outcome the saga cannot know is neither lost nor taken twice: it
answers 503, and recovery fences the charge with a void at the processor, which
finishes the deposit exactly once. Both paths, each deterministic: the processor
charged (slowly, after the saga gave up), so the void finds the charge and the deposit
completes; the processor was never reached, so the void wins and the deposit fails."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
import pytest
from aiohttp import web

from paysys.kit.settings import DEV_INTERNAL_TOKEN
from paysys_dev.fleet import spawn_service, stop_processes
from paysys_dev.stack import wait_ready
from tests.conftest import Stack, eventually, free_port
from tests.e2e.helpers import user_with_token
from tests.e2e.money import CARD, balance, db_fetch, wallet_for

SLOW_PG_PORT, IMPATIENT_TX_PORT = free_port(), free_port()


@pytest.fixture(scope="module")
def impatient_transactions(stack: Stack) -> Iterator[str]:
    """A slow processor (3 s per charge) and a transactions instance that gives up on
    it after 1 s, both on the suite's database."""
    env = dict(stack.infra.env)
    slow = {
        **env,
        "PAYSYS_PAYMENT_GATEWAY_PORT": str(SLOW_PG_PORT),
        "PAYSYS_PROCESSOR_LATENCY_MS": "3000",
    }
    impatient = {
        **env,
        "PAYSYS_TRANSACTIONS_PORT": str(IMPATIENT_TX_PORT),
        "PAYSYS_PAYMENT_GATEWAY_PORT": str(SLOW_PG_PORT),
        "PAYSYS_CALL_TIMEOUT_SECONDS": "1",
        "PAYSYS_STEP_ATTEMPTS": "1",
    }
    procs: dict[str, subprocess.Popen[bytes]] = {
        "payment_gateway": spawn_service("payment_gateway", slow, stack.log_dir / "slow"),
        "transactions": spawn_service("transactions", impatient, stack.log_dir / "slow"),
    }
    try:
        wait_ready(
            {
                "payment_gateway": f"http://127.0.0.1:{SLOW_PG_PORT}",
                "transactions": f"http://127.0.0.1:{IMPATIENT_TX_PORT}",
            },
            90,
            procs,
        )
        yield f"http://127.0.0.1:{IMPATIENT_TX_PORT}"
    finally:
        stop_processes(procs)


@pytest.fixture
async def cut_off_transactions(stack: Stack) -> AsyncIterator[str]:
    """A transactions instance whose processor link drops every charge on the floor (the
    connection closes before the request goes on) and passes everything else (card
    validation, voids) through to the suite's processor."""
    target = stack.url("payment_gateway")

    async def relay(request: web.Request) -> web.StreamResponse:
        if request.path == "/payments/charge":
            assert request.transport is not None
            request.transport.close()  # never reaches the processor; no answer
            raise ConnectionResetError
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                target + request.path_qs,
                data=await request.read(),
                headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            ) as upstream,
        ):
            return web.Response(
                body=await upstream.read(),
                status=upstream.status,
                content_type=upstream.content_type,
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    runner = web.AppRunner(app)
    await runner.setup()
    link = free_port()
    await web.TCPSite(runner, "127.0.0.1", link).start()
    port = free_port()
    env = {
        **stack.infra.env,
        "PAYSYS_TRANSACTIONS_PORT": str(port),
        "PAYSYS_PAYMENT_GATEWAY_PORT": str(link),
        "PAYSYS_CALL_TIMEOUT_SECONDS": "1",
        "PAYSYS_STEP_ATTEMPTS": "1",
    }
    proc = spawn_service("transactions", env, stack.log_dir / "cut-off")
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_ready, {"transactions": url}, 90, {"transactions": proc})
        yield url
    finally:
        stop_processes({"transactions": proc})
        await runner.cleanup()


async def _unknown_deposit(api: httpx.AsyncClient, base_url: str) -> tuple[str, dict, str]:  # type: ignore[type-arg]
    user, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth)
    headers = {"X-Internal-Token": DEV_INTERNAL_TOKEN, "X-User-Id": user["id"]}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as tx_api:
        resp = await tx_api.post(
            "/transactions/create",
            json={
                "type": "deposit",
                "destination_wallet_id": wallet["id"],
                "amount": "8.00",
                "card": CARD,
            },
        )
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert body["code"] == "SERVICE_UNAVAILABLE"
    return body["transaction_id"], auth, wallet["id"]


async def _settled(api: httpx.AsyncClient, auth: dict, tx_id: str) -> dict:  # type: ignore[type-arg]
    async def settled() -> dict | None:  # type: ignore[type-arg]
        tx = (await api.get(f"/transactions/{tx_id}", headers=auth)).json()
        return tx if tx["status"] in ("COMPLETED", "FAILED") else None

    return await eventually(settled, timeout=60, interval=1)  # type: ignore[no-any-return]


async def test_a_charge_made_after_the_saga_gave_up_completes_the_deposit_once(
    api: httpx.AsyncClient, stack: Stack, impatient_transactions: str
) -> None:
    tx_id, auth, wallet_id = await _unknown_deposit(api, impatient_transactions)
    tx = await _settled(api, auth, tx_id)
    payments = await db_fetch(
        stack,
        "SELECT status FROM payment_gateway.payments WHERE transaction_id = $1",
        uuid.UUID(tx_id),
    )
    # The processor charged 3 s in; recovery's void (after the lease) found the charge.
    assert [p["status"] for p in payments] == ["succeeded"]
    assert tx["status"] == "COMPLETED"
    assert await balance(api, auth, wallet_id) == "8.00"


async def test_a_charge_that_never_reached_the_processor_is_voided_and_fails(
    api: httpx.AsyncClient, stack: Stack, cut_off_transactions: str
) -> None:
    tx_id, auth, wallet_id = await _unknown_deposit(api, cut_off_transactions)
    tx = await _settled(api, auth, tx_id)  # recovered by the suite's own instance
    payments = await db_fetch(
        stack,
        "SELECT status FROM payment_gateway.payments WHERE transaction_id = $1",
        uuid.UUID(tx_id),
    )
    # The void fenced the charge: a late charge for it can never go through.
    assert [p["status"] for p in payments] == ["voided"]
    assert tx["status"] == "FAILED"
    assert await balance(api, auth, wallet_id) == "0.00"
