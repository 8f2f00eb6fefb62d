"""A card charge that times out is neither lost nor taken twice: the saga cannot tell
whether the processor charged, so it answers 503, and recovery (fencing the charge with
a void at the processor) finishes the deposit exactly once."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest

from paysys.cli import wait_ready
from paysys.fleet import spawn_service, stop_processes
from paysys.kit.settings import DEV_INTERNAL_TOKEN
from tests.conftest import Stack, eventually
from tests.e2e.helpers import user_with_token
from tests.e2e.money import CARD, balance, db_fetch, wallet_for

SLOW_PG_PORT, IMPATIENT_TX_PORT = 18096, 18097


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


async def test_timed_out_charge_is_completed_once_by_recovery(
    api: httpx.AsyncClient, stack: Stack, impatient_transactions: str
) -> None:
    user, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth)
    headers = {"X-Internal-Token": DEV_INTERNAL_TOKEN, "X-User-Id": user["id"]}
    async with httpx.AsyncClient(
        base_url=impatient_transactions, headers=headers, timeout=30
    ) as tx_api:
        resp = await tx_api.post(
            "/transactions/create",
            json={
                "type": "deposit",
                "destination_wallet_id": wallet["id"],
                "amount": "8.00",
                "card": CARD,
            },
        )
    assert resp.status_code == 503
    body = resp.json()
    assert body["code"] == "SERVICE_UNAVAILABLE"
    tx_id = body["transaction_id"]

    async def settled() -> dict | None:  # type: ignore[type-arg]
        tx = (await api.get(f"/transactions/{tx_id}", headers=auth)).json()
        return tx if tx["status"] in ("COMPLETED", "FAILED") else None

    tx = await eventually(settled, timeout=60, interval=1)
    payments = await db_fetch(
        stack,
        "SELECT status FROM payment_gateway.payments WHERE transaction_id = $1",
        uuid.UUID(tx_id),
    )
    assert len(payments) == 1  # one charge, however many attempts and runners
    if payments[0]["status"] == "succeeded":
        assert tx["status"] == "COMPLETED"
        assert await balance(api, auth, wallet["id"]) == "8.00"
    else:
        assert payments[0]["status"] == "voided"
        assert tx["status"] == "FAILED"
        assert await balance(api, auth, wallet["id"]) == "0.00"
