"""HTTP routes of the payment-gateway service (internal: called by transactions)."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter, Depends
from pydantic import Field

from paysys.kit.auth import require_internal
from paysys.kit.deps import RuntimeDep
from paysys.kit.errors import ValidationFailed
from paysys.kit.money import CurrencyCode, MoneyError, parse_amount
from paysys.kit.text import Input
from paysys.payment_gateway import service
from paysys.payment_gateway.cards import brand
from paysys.payment_gateway.schemas import CardIn, ChargeIn, PaymentOut
from paysys.payment_gateway.settings import PaymentGatewaySettings

router = APIRouter(prefix="/payments", dependencies=[Depends(require_internal)])


class VoidIn(Input):
    transaction_id: uuid.UUID
    amount: str
    currency: CurrencyCode


async def _latency(rt: RuntimeDep) -> None:
    settings = rt.settings
    if isinstance(settings, PaymentGatewaySettings) and settings.processor_latency_ms > 0:
        await asyncio.sleep(settings.processor_latency_ms / 1000)


@router.post("/charge", response_model=PaymentOut)
async def charge(body: ChargeIn, rt: RuntimeDep) -> PaymentOut:
    await _latency(rt)
    async with rt.db.uow() as session:
        payment = await service.charge(session, rt.outbox_or_fail, body)
    return service.to_out(payment)


@router.post("/void", response_model=PaymentOut)
async def void(body: VoidIn, rt: RuntimeDep) -> PaymentOut:
    try:
        minor = parse_amount(body.amount, body.currency)
    except MoneyError as exc:
        raise ValidationFailed(str(exc)) from None
    async with rt.db.uow() as session:
        payment = await service.void(
            session, rt.outbox_or_fail, body.transaction_id, minor, body.currency
        )
    return service.to_out(payment)


@router.post("/{transaction_id}/refund", response_model=PaymentOut)
async def refund(transaction_id: uuid.UUID, rt: RuntimeDep) -> PaymentOut:
    async with rt.db.uow() as session:
        payment = await service.refund(session, rt.outbox_or_fail, transaction_id)
    return service.to_out(payment)


class RefundPartIn(Input):
    refund_id: uuid.UUID
    amount_minor: int = Field(gt=0, le=10**15)


@router.post("/{transaction_id}/refunds")
async def refund_part(
    transaction_id: uuid.UUID, body: RefundPartIn, rt: RuntimeDep
) -> dict[str, object]:
    """Part of a charge back to its card (a deposit's refund), once per refund id."""
    await _latency(rt)
    async with rt.db.uow() as session:
        row = await service.refund_part(session, transaction_id, body.refund_id, body.amount_minor)
    return {"refund_id": str(row.refund_id), "status": row.status, "failure_code": row.failure_code}


@router.get("/by-transaction/{transaction_id}", response_model=PaymentOut)
async def get_by_transaction(transaction_id: uuid.UUID, rt: RuntimeDep) -> PaymentOut:
    async with rt.db.uow() as session:
        payment = await service.by_transaction(session, transaction_id)
    if payment is None:
        raise service.PaymentNotFound("No payment for this transaction.")
    return service.to_out(payment)


@router.post("/validate-card")
async def validate_card(card: CardIn) -> dict[str, str]:
    """Checks a card's shape (Luhn, expiry month/year range, CVC) before any money moves;
    an invalid card is a 422 and no transaction is created for it."""
    return {"card_brand": brand(card.number), "card_last4": card.number[-4:]}
