"""The saga that moves money. Each step is an idempotent call keyed by the transaction
id, and the saga's progress is persisted between steps (one unit of work per step: a
saga spans several services, so it cannot be one database transaction). Re-running a
saga from its persisted phase is always safe, which is what crash recovery does.

    deposit:   started -charge-> charged -credit-> COMPLETED
               (declined: FAILED)  (refused: compensating -card refund-> FAILED)
    transfer,  started -debit-> debited -credit-> COMPLETED
    payment:   (refused: FAILED)   (refused: compensating -refund-> FAILED)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.context import bind_request
from paysys.kit.errors import problem_body
from paysys.kit.metrics import TRANSACTION_DURATION, TRANSACTION_FAILURES, TRANSACTIONS
from paysys.kit.money import format_amount
from paysys.kit.runtime import Runtime
from paysys.transactions import repository
from paysys.transactions.clients import Clients, OutcomeUnknown, StepFailed
from paysys.transactions.faults import Faults
from paysys.transactions.models import Transaction
from paysys.transactions.schemas import TransactionOut, dump
from paysys.transactions.settings import TransactionsSettings

log = structlog.get_logger()


class Superseded(Exception):
    """Another runner moved this saga on first; this one must not act further."""


def to_out(tx: Transaction) -> TransactionOut:
    return TransactionOut(
        id=tx.id,
        type=tx.type,
        status=tx.status,
        amount=format_amount(tx.amount, tx.currency),
        currency=tx.currency,
        source_wallet_id=tx.source_wallet_id,
        destination_wallet_id=tx.destination_wallet_id,
        description=tx.description,
        failure_code=tx.failure_code,
        created_at=tx.created_at,
        updated_at=tx.updated_at,
    )


def failure_body(tx: Transaction) -> dict[str, Any]:
    code = tx.failure_code or "PAYMENT_GATEWAY_ERROR"
    return problem_body(
        400,
        code,
        f"The {tx.type} did not go through: {code}.",
        transaction_id=str(tx.id),
        transaction=dump(to_out(tx)),
    )


def final_response(tx: Transaction) -> tuple[int, dict[str, Any]]:
    if tx.status == "COMPLETED":
        return 201, dump(to_out(tx))
    return 400, failure_body(tx)


@dataclass
class Saga:
    rt: Runtime
    settings: TransactionsSettings
    clients: Clients
    faults: Faults

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    async def _advance(
        self, tx_id: uuid.UUID, name: str, outcome: str, from_phase: str, **values: Any
    ) -> None:
        """Moves the saga on from `from_phase`; if another runner moved it first, this
        runner stops (Superseded) rather than act on a state that is no longer true."""
        async with self.rt.db.uow() as session:
            moved = await repository.advance(
                session, tx_id, self.lease, repository.step(name, outcome), from_phase, **values
            )
        if not moved:
            raise Superseded(str(tx_id))

    async def finish(
        self, tx_id: uuid.UUID, status: str, failure_code: str | None, name: str, outcome: str
    ) -> Transaction:
        """Terminal state, its event, its MongoDB records and the idempotent response
        commit together."""
        async with self.rt.db.uow() as session:
            tx = await repository.finish(
                session, tx_id, status, failure_code, repository.step(name, outcome)
            )
            if tx is None:  # another runner finished it first
                done = await repository.get(session, tx_id)
                assert done is not None
                return done
            await self.record_terminal(session, tx)
        self.observe(tx)
        return tx

    async def record_terminal(self, session: AsyncSession, tx: Transaction) -> None:
        """What a terminal transaction leaves behind, in the caller's unit of work: one
        `transaction.*` event, its `transaction_logs` and `audit_log` records (relayed to
        MongoDB, never written on the request path), and the stored idempotent answer."""
        completed = tx.status == "COMPLETED"
        action = "transaction.completed" if completed else "transaction.failed"
        amount = format_amount(tx.amount, tx.currency)
        await self.rt.outbox_or_fail.add(
            session,
            action,
            str(tx.id),
            {
                "transaction_id": str(tx.id),
                "type": tx.type,
                "amount": amount,
                "currency": tx.currency,
                "source_wallet_id": _str(tx.source_wallet_id),
                "destination_wallet_id": str(tx.destination_wallet_id),
                "source_user_id": _str(tx.source_user_id),
                "destination_user_id": str(tx.destination_user_id),
                "failure_code": tx.failure_code,
            },
        )
        records = self.rt.records_or_fail
        await records.add(
            session,
            "transaction_logs",
            {
                "transaction_id": str(tx.id),
                "type": tx.type,
                "status": tx.status,
                "amount": amount,
                "currency": tx.currency,
                "source_wallet_id": _str(tx.source_wallet_id),
                "destination_wallet_id": str(tx.destination_wallet_id),
                "failure_code": tx.failure_code,
                "correlation_id": tx.correlation_id,
                "steps": tx.steps,
                "created_at": tx.created_at,
                "finished_at": tx.finished_at,
            },
        )
        await records.audit(
            session,
            action,
            str(tx.initiator_user_id),
            {
                "transaction_id": str(tx.id),
                "type": tx.type,
                "amount": amount,
                "currency": tx.currency,
                "failure_code": tx.failure_code,
            },
            ip=None,
            audit_id=f"{action}:{tx.id}",
            at=tx.finished_at,
            correlation_id=tx.correlation_id,
        )
        if tx.idempotency_key:
            code, body = final_response(tx)
            await repository.store_response(
                session, tx.initiator_user_id, tx.idempotency_key, code, body
            )

    def observe(self, tx: Transaction) -> None:
        TRANSACTIONS.labels(tx.type, tx.status).inc()
        if tx.finished_at is not None:
            TRANSACTION_DURATION.labels(tx.type).observe(
                (tx.finished_at - tx.created_at).total_seconds()
            )
        if tx.failure_code:
            TRANSACTION_FAILURES.labels(tx.type, tx.failure_code).inc()

    async def drive(
        self, tx_id: uuid.UUID, card: dict[str, Any] | None = None, fresh: Transaction | None = None
    ) -> Transaction:
        """Runs (or resumes) the saga to a terminal state. Raises OutcomeUnknown when a
        service gives no definite answer, or when another runner took the saga over;
        the transaction then stays in flight and the recovery worker (or that other
        runner) finishes it. `fresh`: the row as just committed by the caller, which
        saves reading it back."""
        tx = fresh
        if tx is None:
            async with self.rt.db.uow() as session:
                tx = await repository.get(session, tx_id)
        assert tx is not None
        if tx.status in ("COMPLETED", "FAILED"):
            return tx
        try:
            if tx.type == "deposit":
                return await self._deposit(tx, card)
            return await self._move(tx)
        except Superseded:
            async with self.rt.db.uow() as session:
                now = await repository.get(session, tx_id)
            if now is not None and now.status in ("COMPLETED", "FAILED"):
                return now
            raise OutcomeUnknown("another runner is finishing this transaction") from None

    async def _move(self, tx: Transaction) -> Transaction:
        amount = format_amount(tx.amount, tx.currency)
        assert tx.source_wallet_id is not None
        phase = tx.phase
        if phase == "started":
            try:
                await self.clients.debit(tx.source_wallet_id, tx.id, amount, tx.currency)
            except StepFailed as exc:
                return await self.finish(tx.id, "FAILED", exc.code, "debit", exc.code)
            await self._advance(tx.id, "debit", "ok", "started", phase="debited")
            phase = "debited"
        if phase == "debited":
            await self._faults_after_debit(tx)
            if (done := await self._credit_or_compensate(tx, amount, "debited")) is not None:
                return done
            phase = "compensating"
        if phase == "compensating":
            source = tx.source_wallet_id
            return await self._compensate(
                tx, "refund", lambda: self.clients.refund(source, tx.id, amount, tx.currency)
            )
        raise AssertionError(f"unknown phase {phase}")

    async def _deposit(self, tx: Transaction, card: dict[str, Any] | None) -> Transaction:
        amount = format_amount(tx.amount, tx.currency)
        phase = tx.phase
        if phase == "started":
            if card is not None:
                payment = await self.clients.charge(tx.id, amount, tx.currency, card)
            else:
                # Resumed without the card (never stored): fence the charge instead.
                payment = await self.clients.void(tx.id, amount, tx.currency)
            if payment["status"] != "succeeded":
                code = payment.get("failure_code") or "PAYMENT_GATEWAY_ERROR"
                return await self.finish(tx.id, "FAILED", code, "charge", payment["status"])
            # PENDING until the card is charged; PROCESSING while the money moves on.
            await self._advance(
                tx.id,
                "charge",
                "ok",
                "started",
                phase="charged",
                status="PROCESSING",
                card_brand=payment.get("card_brand"),
                card_last4=payment.get("card_last4"),
            )
            phase = "charged"
        if phase == "charged":
            await self._faults_after_debit(tx)
            if (done := await self._credit_or_compensate(tx, amount, "charged")) is not None:
                return done
            phase = "compensating"
        if phase == "compensating":
            return await self._compensate(
                tx, "card_refund", lambda: self.clients.refund_card(tx.id)
            )
        raise AssertionError(f"unknown phase {phase}")

    async def _credit_or_compensate(
        self, tx: Transaction, amount: str, phase: str
    ) -> Transaction | None:
        """Credits the destination: the finished transaction, or None when the credit was
        refused after the money left and the saga now has to give it back."""
        try:
            await self.clients.credit(tx.destination_wallet_id, tx.id, amount, tx.currency)
        except StepFailed as exc:
            # A definite refusal: recorded before any refund, so that from here the saga
            # only ever goes back, whoever resumes it.
            # CREDIT_FENCED: another runner of this saga is already refunding; its
            # failure code stands.
            code = {} if exc.code == "CREDIT_FENCED" else {"failure_code": exc.code}
            await self._advance(tx.id, "credit", exc.code, phase, phase="compensating", **code)
            return None
        return await self.finish(tx.id, "COMPLETED", None, "credit", "ok")

    async def _compensate(
        self, tx: Transaction, step: str, give_back: Callable[[], Awaitable[Any]]
    ) -> Transaction:
        """Fences the credit, then gives the money back. If the credit did happen (a
        second runner got there first), the transaction completed instead."""
        if await self.clients.fence_credit(tx.id):
            return await self.finish(tx.id, "COMPLETED", None, "credit_fence", "credited")
        await give_back()
        async with self.rt.db.uow() as session:
            fresh = await repository.get(session, tx.id)
        code = (fresh.failure_code if fresh else None) or "WALLET_INACTIVE"
        return await self.finish(tx.id, "FAILED", code, step, "ok")

    async def _faults_after_debit(self, tx: Transaction) -> None:
        fault = self.faults.take(tx.destination_wallet_id)
        if fault is None:
            return
        log.warning("test_fault_injected", fault=fault.name, transaction_id=str(tx.id))
        if fault.name == "deactivate_destination_after_debit":
            await self.clients.deactivate_wallet(tx.destination_wallet_id, tx.destination_user_id)
        elif fault.name == "pause_after_debit":
            await asyncio.sleep(fault.seconds)

    async def recover(self, tx_id: uuid.UUID) -> None:
        async with self.rt.db.uow() as session:
            claimed = await repository.claim(session, tx_id, self.lease)
        if not claimed:
            return
        async with self.rt.db.uow() as session:
            tx = await repository.get(session, tx_id)
        bind_request(tx.correlation_id if tx else None)  # the original request's id
        log.info("saga_recovering", transaction_id=str(tx_id))
        try:
            await self.drive(tx_id)
        except OutcomeUnknown as exc:
            log.warning("saga_recovery_pending", transaction_id=str(tx_id), error=str(exc))


def _str(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None
