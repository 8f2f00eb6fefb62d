"""Test-only fault injection, outside the product: the test stack serves transactions
through `create_app` below (`paysys serve transactions --app
tests.support.faults:create_app`), the service built with FaultyClients and a route to
arm a fault, so that a test can force a compensation or a crash window in a real running
saga. The saga knows nothing of this."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request

from paysys.kit.auth import require_internal
from paysys.kit.text import Input
from paysys.transactions.app import create_app as create_transactions_app
from paysys.transactions.clients import Clients

log = structlog.get_logger()

# deactivate_destination: the destination wallet is deactivated just before the money
#   would reach it (a transfer's move, a deposit's credit).
# pause_mid_saga: the saga stalls for `seconds` where a crash hurts most: a transfer
#   after its money moved and before COMPLETED is recorded (an authorization after its
#   money is held and before AUTHORIZED is), a deposit after the card
#   was charged and before the wallet is credited, a capture or a void (or an expiry)
#   of an authorization after wallets did it and before its end is recorded, a refund
#   to a card after the processor refunded it and before COMPLETED is recorded (armed
#   under the deposit's transaction id: a card has no wallet).
FAULT_NAMES = ("deactivate_destination", "pause_mid_saga")


@dataclass(frozen=True)
class Fault:
    name: str
    seconds: float = 0.0


class Faults:
    """Faults armed per destination wallet, each taken once."""

    def __init__(self) -> None:
        self._by_destination: dict[uuid.UUID, Fault] = {}

    def arm(self, destination_wallet_id: uuid.UUID, fault: Fault) -> None:
        self._by_destination[destination_wallet_id] = fault

    def take(self, destination_wallet_id: uuid.UUID, name: str) -> Fault | None:
        fault = self._by_destination.get(destination_wallet_id)
        if fault is None or fault.name != name:
            return None
        del self._by_destination[destination_wallet_id]
        log.warning("test_fault_injected", fault=name, wallet_id=str(destination_wallet_id))
        return fault


@dataclass
class FaultyClients(Clients):
    faults: Faults = field(default_factory=Faults)

    async def _deactivate(self, wallet_id: uuid.UUID) -> None:
        wallet = await self.wallet(wallet_id)
        assert wallet is not None
        await self._call(
            self.wallets, "POST", f"/wallets/{wallet_id}/deactivate", user_id=wallet["user_id"]
        )

    async def transfer(self, tx: Any) -> None:
        if self.faults.take(tx.destination_wallet_id, "deactivate_destination"):
            await self._deactivate(tx.destination_wallet_id)
        await super().transfer(tx)
        if fault := self.faults.take(tx.destination_wallet_id, "pause_mid_saga"):
            await asyncio.sleep(fault.seconds)

    async def transfer_batch(self, txs: list[Any]) -> list[str | None]:
        for tx in txs:
            if self.faults.take(tx.destination_wallet_id, "deactivate_destination"):
                await self._deactivate(tx.destination_wallet_id)
        return await self._paused(txs, await super().transfer_batch(txs))

    async def hold_batch(self, txs: list[Any]) -> list[str | None]:
        return await self._paused(txs, await super().hold_batch(txs))

    async def capture(self, tx: Any) -> None:
        await super().capture(tx)
        if fault := self.faults.take(tx.destination_wallet_id, "pause_mid_saga"):
            await asyncio.sleep(fault.seconds)

    async def capture_batch(self, txs: list[Any]) -> list[str | None]:
        return await self._paused(txs, await super().capture_batch(txs))

    async def _paused(self, txs: list[Any], codes: list[str | None]) -> list[str | None]:
        """A batch's answer, after the pauses armed for its transactions' destinations."""
        for tx in txs:
            if fault := self.faults.take(tx.destination_wallet_id, "pause_mid_saga"):
                await asyncio.sleep(fault.seconds)
        return codes

    async def release(self, tx: Any) -> None:
        await super().release(tx)
        if fault := self.faults.take(tx.destination_wallet_id, "pause_mid_saga"):
            await asyncio.sleep(fault.seconds)

    async def credit(
        self, wallet_id: uuid.UUID, tx: Any, amount: str, currency: str
    ) -> dict[str, Any]:
        if self.faults.take(wallet_id, "deactivate_destination"):
            await self._deactivate(wallet_id)
        if fault := self.faults.take(wallet_id, "pause_mid_saga"):
            await asyncio.sleep(fault.seconds)
        return await super().credit(wallet_id, tx, amount, currency)

    async def refund_to_card(self, charged_tx: uuid.UUID, refund: uuid.UUID, amount: int) -> str:
        status = await super().refund_to_card(charged_tx, refund, amount)
        if fault := self.faults.take(charged_tx, "pause_mid_saga"):
            await asyncio.sleep(fault.seconds)
        return status


class FaultIn(Input):
    destination_wallet_id: uuid.UUID
    fault: Literal[FAULT_NAMES]  # type: ignore[valid-type]
    seconds: float = 0.0


router = APIRouter(
    prefix="/internal", include_in_schema=False, dependencies=[Depends(require_internal)]
)


@router.post("/faults", status_code=204)
async def arm_fault(body: FaultIn, request: Request) -> None:
    clients: FaultyClients = request.app.state.saga.clients
    clients.faults.arm(body.destination_wallet_id, Fault(body.fault, body.seconds))


def create_app() -> FastAPI:
    app = create_transactions_app(clients_class=FaultyClients)
    app.include_router(router)
    return app
