"""The card processor simulator under concurrency: a charge is refunded once, with one
event, however many refunds race."""

from __future__ import annotations

import asyncio
import uuid

from tests.conftest import Stack
from tests.e2e.helpers import internal_client, kafka_events
from tests.e2e.money import CARD, db_fetch


async def test_concurrent_refunds_of_one_charge_refund_it_once_with_one_event(
    stack: Stack,
) -> None:
    tx = str(uuid.uuid4())
    async with internal_client(stack, "payment_gateway") as pg:
        charge = await pg.post(
            "/payments/charge",
            json={"transaction_id": tx, "amount": "9.99", "currency": "USD", "card": CARD},
        )
        assert charge.status_code == 200, charge.text
        assert charge.json()["status"] == "succeeded"
        payment_id = charge.json()["payment_id"]
    # Many connections at once, so that refunds really overlap inside the service.
    clients = [internal_client(stack, "payment_gateway") for _ in range(30)]
    try:
        answers = await asyncio.gather(*(c.post(f"/payments/{tx}/refund") for c in clients))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["status"] for a in answers} == {"refunded"}
    events = await kafka_events(
        stack,
        "payment.processed",
        payment_id,
        2,
        timeout=30,
        linger=3,
    )
    statuses = sorted(e["data"]["status"] for e in events)
    assert statuses == ["refunded", "succeeded"]


async def test_a_charge_is_made_once_per_transaction_id_however_often_asked(
    stack: Stack,
) -> None:
    # Issue 20.13: a retried charge (the saga's retry after a lost answer) is the same
    # charge, even asked concurrently and even with another card.
    tx = str(uuid.uuid4())
    body = {"transaction_id": tx, "amount": "4.20", "currency": "USD", "card": CARD}
    clients = [internal_client(stack, "payment_gateway") for _ in range(10)]
    try:
        answers = await asyncio.gather(*(c.post("/payments/charge", json=body) for c in clients))
        other_card = {**body, "card": {**CARD, "number": "4000000000000002"}}
        again = await clients[0].post("/payments/charge", json=other_card)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["payment_id"] for a in answers}) == 1
    assert again.json()["payment_id"] == answers[0].json()["payment_id"]
    assert again.json()["status"] == "succeeded"
    [count] = await db_fetch(
        stack,
        "SELECT count(*) FROM payment_gateway.payments WHERE transaction_id = $1",
        uuid.UUID(tx),
    )
    assert count[0] == 1
