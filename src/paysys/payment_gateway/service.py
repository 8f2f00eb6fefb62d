"""Business rules of the card processor simulator. Takes a session; never commits."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.errors import AppError, ValidationFailed
from paysys.kit.events import utcnow
from paysys.kit.money import MoneyError, format_amount, parse_amount
from paysys.kit.outbox import Outbox
from paysys.payment_gateway import cards
from paysys.payment_gateway.models import CardRefund, Payment
from paysys.payment_gateway.schemas import ChargeIn, PaymentOut


class PaymentNotFound(AppError):
    status = 404
    code = "PAYMENT_NOT_FOUND"


def to_out(p: Payment) -> PaymentOut:
    return PaymentOut(
        payment_id=p.id,
        transaction_id=p.transaction_id,
        amount=format_amount(p.amount, p.currency),
        currency=p.currency,
        card_brand=p.card_brand,
        card_last4=p.card_last4,
        status=p.status,
        failure_code=p.failure_code,
    )


async def by_transaction(session: AsyncSession, transaction_id: uuid.UUID) -> Payment | None:
    return (
        await session.execute(
            select(Payment)
            .where(Payment.transaction_id == transaction_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def _record(session: AsyncSession, outbox: Outbox, values: dict[str, object]) -> Payment:
    """Inserts the payment unless one exists for the transaction; returns the one that
    stands (the first), so a retried or raced charge is never charged twice."""
    inserted = (
        await session.execute(
            pg_insert(Payment)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["transaction_id"])
            .returning(Payment.id)
        )
    ).first()
    payment = await by_transaction(session, values["transaction_id"])  # type: ignore[arg-type]
    assert payment is not None
    if inserted is not None:
        await publish(session, outbox, payment)
    return payment


async def publish(session: AsyncSession, outbox: Outbox, p: Payment) -> None:
    await outbox.add(
        session,
        "payment.processed",
        str(p.id),
        {
            "payment_id": str(p.id),
            "transaction_id": str(p.transaction_id),
            "amount": format_amount(p.amount, p.currency),
            "currency": p.currency,
            "card_brand": p.card_brand,
            "card_last4": p.card_last4,
            "status": p.status,
        },
    )


async def charge(session: AsyncSession, outbox: Outbox, body: ChargeIn) -> Payment:
    existing = await by_transaction(session, body.transaction_id)
    if existing is not None:
        return existing
    try:
        minor = parse_amount(body.amount, body.currency)
    except MoneyError as exc:
        raise ValidationFailed(str(exc)) from None
    card = body.card
    failure = cards.outcome(card.number, card.exp_month, card.exp_year)
    status = (
        "succeeded"
        if failure is None
        else ("failed" if failure == "PAYMENT_GATEWAY_ERROR" else "declined")
    )
    return await _record(
        session,
        outbox,
        {
            "id": uuid.uuid4(),
            "transaction_id": body.transaction_id,
            "amount": minor,
            "currency": body.currency,
            "card_brand": cards.brand(card.number),
            "card_last4": card.number[-4:],
            "status": status,
            "failure_code": failure,
        },
    )


async def void(
    session: AsyncSession, outbox: Outbox, transaction_id: uuid.UUID, amount: int, currency: str
) -> Payment:
    """Fences a transaction whose charge outcome is unknown: returns the charge if it
    happened, else records a void so that a late charge for it can never go through."""
    return await _record(
        session,
        outbox,
        {
            "id": uuid.uuid4(),
            "transaction_id": transaction_id,
            "amount": amount,
            "currency": currency,
            "card_brand": None,
            "card_last4": None,
            "status": "voided",
            "failure_code": "PAYMENT_GATEWAY_ERROR",
        },
    )


async def refund(session: AsyncSession, outbox: Outbox, transaction_id: uuid.UUID) -> Payment:
    payment = await by_transaction(session, transaction_id)
    if payment is None:
        raise PaymentNotFound("No payment for this transaction.")
    if payment.status == "succeeded":
        # Conditional, and only the caller whose UPDATE changed the row publishes: of
        # two concurrent refunds, the second waits on the row lock, then finds nothing
        # left to refund.
        refunded = (
            await session.execute(
                update(Payment)
                .where(Payment.id == payment.id, Payment.status == "succeeded")
                .values(status="refunded", updated_at=utcnow())
                .returning(Payment.id)
            )
        ).first()
        payment = await by_transaction(session, transaction_id)
        assert payment is not None
        if refunded is not None:
            await publish(session, outbox, payment)
    return payment


async def refund_part(
    session: AsyncSession, transaction_id: uuid.UUID, refund_id: uuid.UUID, amount: int
) -> CardRefund:
    """Part (or all) of a charge back to its card, once per refund id: asked again, the
    first outcome. Refused (failed, PAYMENT_GATEWAY_ERROR) when the charge did not
    succeed or not that much of it is left; the charge row is locked meanwhile, so
    concurrent refunds never exceed it."""
    existing = await session.get(CardRefund, refund_id)
    if existing is not None:
        return existing
    payment = (
        await session.execute(
            select(Payment)
            .where(Payment.transaction_id == transaction_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if payment is None:
        raise PaymentNotFound("No payment for this transaction.")
    existing = await session.get(CardRefund, refund_id)  # a twin that held the lock
    if existing is not None:
        return existing
    ok = payment.status == "succeeded" and payment.refunded_amount + amount <= payment.amount
    row = CardRefund(
        refund_id=refund_id,
        payment_id=payment.id,
        amount=amount,
        status="succeeded" if ok else "failed",
        failure_code=None if ok else "PAYMENT_GATEWAY_ERROR",
    )
    session.add(row)
    if ok:
        payment.refunded_amount += amount
        payment.updated_at = utcnow()
    await session.flush()
    return row
