"""SIGTERM with requests in flight (issue 25.3): a process told to stop, as Kubernetes
tells a pod in a rollout, finishes what it holds before it exits. Ten transfers are in
flight through the gateway, held in transactions for a few seconds (the first after its
money moved and before COMPLETED is recorded, where a cut-short saga would be left for
recovery; the rest queued behind it for the next group commit), when the gateway or
transactions gets SIGTERM: every one answers 201 COMPLETED, then the process exits, and
recovery has nothing to do. (wallets holds nothing between calls: a stopped wallets with
no other replica refuses what comes after, which the saga answers 503 and recovery
completes; on a cluster another replica takes it, as tests/e2e/test_gateway_retries.py
and the two-instance chaos runs show.)"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import httpx
import pytest

from tests.conftest import Stack
from tests.e2e.money import arm_fault, db_fetch, funded_user, move

HELD = 4.0  # seconds the batch is held mid-saga


@pytest.mark.parametrize("service", ["gateway", "transactions"])
async def test_sigterm_lets_every_transfer_in_flight_finish(
    api: httpx.AsyncClient, stack: Stack, service: str
) -> None:
    _, auth, src = await funded_user(api, "100.00")
    _, _, dst = await funded_user(api, "0")
    await arm_fault(stack, dst["id"], "pause_mid_saga", seconds=HELD)
    sent = time.monotonic()
    keyed = [{**auth, "Idempotency-Key": str(uuid.uuid4())} for _ in range(10)]
    flying = [
        asyncio.create_task(move(api, headers, "transfer", src["id"], dst["id"], "1.00"))
        for headers in keyed
    ]
    await asyncio.sleep(1.0)  # in flight: the transactions service holds them
    proc = stack.procs[service]
    proc.send_signal(signal.SIGTERM)
    try:
        answers = await asyncio.gather(*flying)
        assert [r.status_code for r in answers] == [201] * 10, [r.text for r in answers]
        assert {r.json()["status"] for r in answers} == {"COMPLETED"}
        assert time.monotonic() - sent >= HELD  # they were held through the stop
        code = await asyncio.to_thread(proc.wait, 60)
        # uvicorn, once drained, raises the signal again, so the exit says SIGTERM
        assert code in (0, -signal.SIGTERM), f"{service} exited with {code}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stack.procs.pop(service)
        stack.start(service)
    # The runner that started each saga ended it: none was taken over by recovery
    # (a takeover moves the lease to the recovery worker's owner).
    ids = [uuid.UUID(r.json()["id"]) for r in answers]
    rows = await db_fetch(
        stack,
        "SELECT status FROM transactions.transactions WHERE id = ANY($1::uuid[])",
        ids,
    )
    assert [r["status"] for r in rows] == ["COMPLETED"] * 10
    log = (stack.log_dir / "transactions.log").read_text(errors="replace")
    assert not any(str(i) in line and "recover" in line for i in ids for line in log.splitlines())
