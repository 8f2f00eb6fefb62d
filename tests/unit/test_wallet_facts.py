"""Transactions' cache of wallet facts (owner, currency): requests that name a wallet
not known yet, at the same moment, share one read of it. The wallets service stands in
as a fake here: this is the cache's logic alone (the e2e tests use the real one)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from paysys.kit.http import ServiceResponse
from paysys.transactions.clients import Clients, OutcomeUnknown


class Wallets:
    """Answers GET /internal/wallets/{id} after a moment; counts the reads."""

    def __init__(self, status: int = 200) -> None:
        self.reads = 0
        self.status = status

    async def request(self, method: str, path: str, **_: Any) -> ServiceResponse:
        self.reads += 1
        await asyncio.sleep(0.01)
        wallet_id = path.rsplit("/", 1)[1]
        body = {"id": wallet_id, "user_id": str(uuid.uuid4()), "currency": "USD", "x": 1}
        return ServiceResponse(self.status, body if self.status == 200 else None)


def clients_of(wallets: Wallets) -> Clients:
    return Clients(wallets=wallets, payments=None, users=None, attempts=1)  # type: ignore[arg-type]


async def test_fifty_requests_naming_two_new_wallets_read_each_once() -> None:
    wallets = Wallets()
    clients = clients_of(wallets)
    a, b = uuid.uuid4(), uuid.uuid4()
    facts = await asyncio.gather(*(clients.wallet_facts(w) for w in [a, b] * 25))
    assert wallets.reads == 2
    assert {f["id"] for f in facts if f} == {str(a), str(b)}
    assert all(f == facts[i % 2] for i, f in enumerate(facts))  # one answer per wallet
    await clients.wallet_facts(a)
    assert wallets.reads == 2  # cached from then on


async def test_a_missing_wallet_is_read_once_per_moment_and_not_remembered() -> None:
    wallets = Wallets(status=404)
    clients = clients_of(wallets)
    w = uuid.uuid4()
    assert await asyncio.gather(*(clients.wallet_facts(w) for _ in range(10))) == [None] * 10
    assert wallets.reads == 1
    assert await clients.wallet_facts(w) is None
    assert wallets.reads == 2  # it may exist by now: asked again


async def test_a_failed_read_fails_its_waiters_and_the_next_request_reads_again() -> None:
    wallets = Wallets(status=503)
    clients = clients_of(wallets)
    w = uuid.uuid4()
    results = await asyncio.gather(
        *(clients.wallet_facts(w) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, OutcomeUnknown) for r in results)
    assert wallets.reads == 1
    wallets.status = 200
    assert (await clients.wallet_facts(w) or {})["id"] == str(w)


async def test_a_caller_that_goes_away_leaves_the_read_to_the_others() -> None:
    wallets = Wallets()
    clients = clients_of(wallets)
    w = uuid.uuid4()
    first = asyncio.ensure_future(clients.wallet_facts(w))
    second = asyncio.ensure_future(clients.wallet_facts(w))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second or {})["id"] == str(w)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert wallets.reads == 1
