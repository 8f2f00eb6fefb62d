"""The saga that moves money: orchestration only, with its progress persisted between
steps, so that re-running it from its persisted phase is always safe, which is what
crash recovery does. Each step is an idempotent call keyed by the transaction id.

    transfer,  started -move (one wallets operation)-> COMPLETED
    payment:   (refused: FAILED, nothing moved)

    deposit:   started -charge-> charged -credit-> COMPLETED
               (declined: FAILED)  (refused: compensating -card refund-> FAILED)

A transfer or payment costs two commits here: the row (born PROCESSING, with its
Idempotency-Key) and its terminal state (with its event, MongoDB records and stored
answer), each a single statement. Transfers left by the legacy saga (which debited
and credited in two steps) go through the same move: wallets counts one as moved only
with both legs, and finishes or gives back a half-moved one.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from paysys.kit.context import bind_request
from paysys.kit.db import Database
from paysys.kit.events import utcnow
from paysys.kit.metrics import TRANSACTION_DURATION, TRANSACTION_FAILURES, TRANSACTIONS
from paysys.kit.money import format_amount
from paysys.kit.outbox import Outbox
from paysys.kit.records import Records
from paysys.transactions import repository
from paysys.transactions.clients import Clients, OutcomeUnknown, StepFailed
from paysys.transactions.models import Phase, Status, Transaction
from paysys.transactions.settings import TransactionsSettings

log = structlog.get_logger()


TERMINAL = (Status.COMPLETED, Status.FAILED, Status.VOIDED)

EVENT_OF = {
    Status.AUTHORIZED: "transaction.authorized",
    Status.COMPLETED: "transaction.completed",
    Status.FAILED: "transaction.failed",
    Status.VOIDED: "transaction.voided",
}


class CaptureRefused(Exception):
    """A capture the wallets refused (a wallet inactive): the authorization waits
    again, as it was."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Superseded(Exception):
    """Another runner moved this saga on first; this one must not act further."""


# How a transaction's answer is rendered (router.py renders HTTP answers): a create's,
# kept with its Idempotency-Key when it ends; and a bulk request's, from its items.
Answer = Callable[[Transaction], tuple[int, dict[str, Any]]]
View = Callable[[Transaction], dict[str, Any]]
BatchAnswer = Callable[[list[Transaction]], tuple[int, dict[str, Any]]]


# The Idempotency-Key of a capture or void request (user, scoped key): kept with its end.
KeyRef = tuple[uuid.UUID, str]


@dataclass(frozen=True)
class Terminal:
    """What a terminal transaction leaves behind, as raw rows: one `transaction.*`
    event, and its `transaction_logs` and `audit_log` records. (Its answer, kept with an
    Idempotency-Key, is rendered only for a key: `Saga.answer`.)"""

    events: list[tuple[Any, ...]]
    records: list[tuple[Any, ...]]


@dataclass
class Saga:
    db: Database
    outbox: Outbox
    records: Records
    settings: TransactionsSettings
    clients: Clients
    answer: Answer
    answer_batch: BatchAnswer
    view: View  # a transaction as the API shows it

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    # -- persisted progress

    async def _advance(
        self, tx: Transaction, name: str, outcome: str, from_phase: Phase, **values: Any
    ) -> None:
        """Moves the saga on from `from_phase`; if another runner moved it first, this
        runner stops (Superseded) rather than act on a state that is no longer true."""
        entry = repository.step(name, outcome)
        async with self.db.uow() as session:
            moved = await repository.advance(
                session, tx.id, self.lease, entry, from_phase, **values
            )
        if not moved:
            raise Superseded(str(tx.id))
        for key, value in values.items():
            setattr(tx, key, value)
        tx.steps = [*tx.steps, entry]

    def terminal(self, tx: Transaction) -> Terminal:
        """What a transaction's new state leaves behind: its event; and, when it ended
        (not AUTHORIZED: it waits), its records."""
        action = EVENT_OF[Status(tx.status)]
        amount = format_amount(tx.amount, tx.currency)
        captured = tx.captured_amount
        if tx.status == Status.AUTHORIZED:
            return Terminal([self._event(tx, action, amount, None)], [])
        event = self._event(tx, action, amount, captured)
        log_doc = self.records.row(
            "transaction_logs",
            {
                "transaction_id": str(tx.id),
                "type": tx.type,
                "status": tx.status,
                "amount": amount,
                "currency": tx.currency,
                "source_wallet_id": _str(tx.source_wallet_id),
                "destination_wallet_id": _str(tx.destination_wallet_id),
                "failure_code": tx.failure_code,
                "correlation_id": tx.correlation_id,
                "steps": tx.steps,
                "created_at": tx.created_at,
                "finished_at": tx.finished_at,
            },
        )
        audit = self.records.audit_row(
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
        return Terminal([event], [log_doc, audit])

    def _event(
        self, tx: Transaction, action: str, amount: str, captured: int | None
    ) -> tuple[Any, ...]:
        return self.outbox.row(
            action,
            str(tx.id),
            {
                "transaction_id": str(tx.id),
                "type": tx.type,
                "amount": amount,
                "currency": tx.currency,
                "source_wallet_id": _str(tx.source_wallet_id),
                "destination_wallet_id": _str(tx.destination_wallet_id),
                "source_user_id": _str(tx.source_user_id),
                "destination_user_id": str(tx.destination_user_id),
                "failure_code": tx.failure_code,
                "captured_amount": None
                if captured is None
                else format_amount(captured, tx.currency),
                "refunded_transaction_id": _str(tx.refunded_transaction_id),
            },
            # its request's, whoever ends it (a group commit's task, the recovery worker)
            correlation_id=tx.correlation_id,
        )

    def end(
        self,
        tx: Transaction,
        status: Status,
        failure_code: str | None,
        name: str,
        outcome: str,
        now: datetime,
    ) -> None:
        """Sets the new state on `tx` (to be committed by `commit_ends`): terminal, or
        AUTHORIZED (it then waits for its capture or void)."""
        waits = status == Status.AUTHORIZED
        tx.status, tx.failure_code = status, failure_code
        tx.phase = Phase.HELD if waits else Phase.DONE
        tx.updated_at = now
        tx.finished_at = None if waits else now
        tx.steps = [*tx.steps, repository.step(name, outcome)]

    async def commit_ends(
        self, txs: list[Transaction], now: datetime, answers: Sequence[repository.Answer]
    ) -> dict[uuid.UUID, Transaction]:
        """Terminal states (set by `end`) and all they leave behind, for any number of
        transactions: one statement, one commit. A keyed create's stored answer goes
        with its transaction; `answers` adds others (a bulk request's). Returns each
        transaction as it stands: the object passed in when this call ended it, one
        read anew when another runner ended it first (its outcome stands)."""
        events: list[tuple[Any, ...]] = []
        records: list[tuple[Any, ...]] = []
        answers = list(answers)
        for tx in txs:
            done = self.terminal(tx)
            events += [(*row, tx.id) for row in done.events]
            records += [(*row, tx.id) for row in done.records]
            # (kept only while the key has no answer: a capture's end leaves the
            # create's answer, AUTHORIZED, as it was)
            if tx.idempotency_key is not None and tx.batch_id is None:
                answers.append(
                    repository.Answer(
                        tx.initiator_user_id, tx.idempotency_key, *self.answer(tx), tx.id
                    )
                )
        ends = [(tx.id, tx.status, tx.failure_code, tx.steps[-1]) for tx in txs]
        async with self.db.raw() as conn:
            ended = await repository.finish_many(conn, ends, now, events, records, answers)
        if ended:
            self.db.written(self.outbox.table.name, self.records.table.name)
        result = {}
        for tx in txs:
            if tx.id in ended:
                self.observe(tx)
                result[tx.id] = tx
            else:  # another runner ended it first: its outcome stands
                result[tx.id] = await self.read(tx.id)
        return result

    async def finish(
        self,
        tx: Transaction,
        status: Status,
        failure_code: str | None,
        name: str,
        outcome: str,
        keep: KeyRef | None = None,
    ) -> Transaction:
        """The new state of one transaction and all it leaves behind; `keep`: the key
        of the request this ends (a capture's, a void's), which keeps the answer."""
        now = utcnow()
        self.end(tx, status, failure_code, name, outcome, now)
        answers = [repository.Answer(*keep, *self.step_answer(tx), tx.id)] if keep else []
        return (await self.commit_ends([tx], now, answers))[tx.id]

    def step_answer(self, tx: Transaction) -> tuple[int, dict[str, Any]]:
        """The answer of a capture or a void: 200 with the transaction."""
        return 200, self.view(tx)

    async def read(self, tx_id: uuid.UUID) -> Transaction:
        async with self.db.uow() as session:
            found = await repository.get(session, tx_id)
        assert found is not None
        return found

    def observe(self, tx: Transaction) -> None:
        TRANSACTIONS.labels(tx.type, tx.status).inc()
        if tx.finished_at is not None:
            TRANSACTION_DURATION.labels(tx.type).observe(
                (tx.finished_at - tx.created_at).total_seconds()
            )
        if tx.failure_code:
            TRANSACTION_FAILURES.labels(tx.type, tx.failure_code).inc()

    # -- running

    async def drive(
        self,
        tx_id: uuid.UUID,
        card: dict[str, Any] | None = None,
        fresh: Transaction | None = None,
        keep: KeyRef | None = None,
    ) -> Transaction:
        """Runs (or resumes) the saga to a terminal state. Raises OutcomeUnknown when a
        service gives no definite answer, or when another runner took the saga over;
        the transaction then stays in flight and the recovery worker (or that other
        runner) finishes it. `fresh`: the row as just committed by the caller, which
        saves reading it back."""
        tx = fresh or await self.read(tx_id)
        if tx.status in TERMINAL or (tx.status, tx.phase) == (Status.AUTHORIZED, Phase.HELD):
            return tx
        try:
            if tx.authorization_expires_at is not None:
                return await self._authorization(tx, keep)
            if tx.type == "deposit":
                return await self._deposit(tx, card)
            if tx.type == "refund" and tx.destination_wallet_id is None:
                return await self._to_card(tx)
            return await self._move(tx)
        except Superseded:
            now = await self.read(tx_id)
            if now.status in TERMINAL:
                return now
            raise OutcomeUnknown("another runner is finishing this transaction") from None

    async def _move(self, tx: Transaction) -> Transaction:
        if tx.phase == Phase.STARTED and tx.failure_code is not None:
            # An item of a bulk request refused by validation, stored with its failure
            # code and not ended (a crash came first): it never moves.
            code = tx.failure_code
            return await self.finish(tx, Status.FAILED, code, "validate", code)
        if tx.phase == Phase.STARTED:
            try:
                await self.clients.transfer(tx)
            except StepFailed as exc:
                return await self.finish(tx, Status.FAILED, exc.code, "move", exc.code)
            return await self.finish(tx, Status.COMPLETED, None, "move", "ok")
        # Transfers from the legacy saga (debited, compensating) were put back to
        # `started` by migration 0004; wallets finishes or gives back a half-moved one.
        raise AssertionError(f"unknown phase {tx.phase} of a {tx.type}")

    async def _authorization(self, tx: Transaction, keep: KeyRef | None) -> Transaction:
        """A manual-capture payment:

            started -hold-> AUTHORIZED (held) -capturing: capture-> COMPLETED
            (refused: FAILED)                 -voiding: release-> VOIDED
                                  (capture refused: back to held, AUTHORIZED)

        A capture or a void is claimed first (repository.claim_held: one of those
        racing wins), then done at wallets, idempotent on the transaction id."""
        if tx.phase == Phase.STARTED:
            try:
                await self.clients.hold(tx)
            except StepFailed as exc:
                return await self.finish(tx, Status.FAILED, exc.code, "hold", exc.code)
            return await self.finish(tx, Status.AUTHORIZED, None, "hold", "ok")
        if tx.phase == Phase.CAPTURING:
            try:
                await self.clients.capture(tx)
            except StepFailed as exc:
                await self.reopen(tx, exc.code, keep)
                raise CaptureRefused(exc.code) from None
            return await self.finish(tx, Status.COMPLETED, None, "capture", "ok", keep)
        if tx.phase == Phase.VOIDING:
            await self.clients.release(tx)
            return await self.finish(tx, Status.VOIDED, tx.failure_code, "release", "ok", keep)
        raise AssertionError(f"unknown phase {tx.phase} of an authorization")

    async def reopen(self, tx: Transaction, code: str, keep: KeyRef | None) -> None:
        """A capture wallets refused (`code`: a wallet inactive): the authorization waits
        again, as it was, and the capture's key is let go."""
        async with self.db.raw_transaction() as held:
            await repository.reopen(held.conn, tx.id, repository.step("capture", code), keep)

    async def _deposit(self, tx: Transaction, card: dict[str, Any] | None) -> Transaction:
        amount = format_amount(tx.amount, tx.currency)
        if tx.phase == Phase.STARTED:
            if card is not None:
                payment = await self.clients.charge(tx.id, amount, tx.currency, card)
            else:
                # Resumed without the card (never stored): fence the charge instead.
                payment = await self.clients.void(tx.id, amount, tx.currency)
            if payment["status"] != "succeeded":
                code = payment.get("failure_code") or "PAYMENT_GATEWAY_ERROR"
                return await self.finish(tx, Status.FAILED, code, "charge", payment["status"])
            # PENDING until the card is charged; PROCESSING while the money moves on.
            await self._advance(
                tx,
                "charge",
                "ok",
                Phase.STARTED,
                phase=Phase.CHARGED,
                status=Status.PROCESSING,
                card_brand=payment.get("card_brand"),
                card_last4=payment.get("card_last4"),
            )
        if tx.phase == Phase.CHARGED and (done := await self._credit_or_compensate(tx, amount)):
            return done
        if tx.phase == Phase.COMPENSATING:
            return await self._compensate(
                tx, "card_refund", lambda: self.clients.refund_card(tx.id)
            )
        raise AssertionError(f"unknown phase {tx.phase}")

    async def _to_card(self, tx: Transaction) -> Transaction:
        """A deposit's refund back to its card:

            started -debit the wallet-> debited -card refund-> COMPLETED
            (refused: FAILED)           (card refund failed: compensating -give back-> FAILED)

        Each step is idempotent on the refund's id, so recovery re-runs it safely."""
        amount = format_amount(tx.amount, tx.currency)
        assert tx.source_wallet_id is not None and tx.refunded_transaction_id is not None
        if tx.phase == Phase.STARTED:
            try:
                await self.clients.debit(tx.source_wallet_id, tx, amount, tx.currency)
            except StepFailed as exc:
                return await self.finish(tx, Status.FAILED, exc.code, "debit", exc.code)
            await self._advance(tx, "debit", "ok", Phase.STARTED, phase=Phase.DEBITED)
        if tx.phase == Phase.DEBITED:
            status = await self.clients.refund_to_card(tx.refunded_transaction_id, tx.id, tx.amount)
            if status == "succeeded":
                return await self.finish(tx, Status.COMPLETED, None, "card_refund", "ok")
            await self._advance(
                tx,
                "card_refund",
                status,
                Phase.DEBITED,
                phase=Phase.COMPENSATING,
                failure_code="PAYMENT_GATEWAY_ERROR",
            )
        if tx.phase == Phase.COMPENSATING:
            await self.clients.give_back(tx.source_wallet_id, tx, amount, tx.currency)
            return await self.finish(tx, Status.FAILED, "PAYMENT_GATEWAY_ERROR", "give_back", "ok")
        raise AssertionError(f"unknown phase {tx.phase} of a card refund")

    async def _credit_or_compensate(self, tx: Transaction, amount: str) -> Transaction | None:
        """Credits the destination: the finished transaction, or None when the credit was
        refused after the money left and the saga now has to give it back."""
        assert tx.destination_wallet_id is not None  # a deposit always has its wallet
        try:
            await self.clients.credit(tx.destination_wallet_id, tx, amount, tx.currency)
        except StepFailed as exc:
            # A definite refusal: recorded before any refund, so that from here the saga
            # only ever goes back, whoever resumes it.
            # CREDIT_FENCED: another runner of this saga is already refunding; its
            # failure code stands.
            code = {} if exc.code == "CREDIT_FENCED" else {"failure_code": exc.code}
            await self._advance(
                tx, "credit", exc.code, Phase(tx.phase), phase=Phase.COMPENSATING, **code
            )
            return None
        return await self.finish(tx, Status.COMPLETED, None, "credit", "ok")

    async def _compensate(
        self, tx: Transaction, step: str, give_back: Callable[[], Awaitable[Any]]
    ) -> Transaction:
        """Fences the credit, then gives the money back. If the credit did happen (a
        second runner got there first), the transaction completed instead."""
        if await self.clients.fence_credit(tx.id):
            return await self.finish(tx, Status.COMPLETED, None, "credit_fence", "credited")
        await give_back()
        fresh = await self.read(tx.id)
        code = fresh.failure_code or "WALLET_INACTIVE"
        return await self.finish(tx, Status.FAILED, code, step, "ok")

    async def recover(self, tx_id: uuid.UUID) -> None:
        async with self.db.uow() as session:
            claimed = await repository.claim(session, tx_id, self.lease)
        if claimed:
            await self.recover_claimed(tx_id)

    async def recover_claimed(self, tx_id: uuid.UUID) -> None:
        tx = await self.read(tx_id)
        bind_request(tx.correlation_id)  # the original request's id
        log.info("saga_recovering", transaction_id=str(tx_id))
        try:
            await self.drive(tx_id, fresh=tx)
        except OutcomeUnknown as exc:
            log.warning("saga_recovery_pending", transaction_id=str(tx_id), error=str(exc))
        except CaptureRefused as exc:
            log.info("capture_refused", transaction_id=str(tx_id), code=exc.code)

    async def expire(self, tx_id: uuid.UUID) -> None:
        """Voids an authorization nobody captured before it expired (unless a capture
        or a void takes it first)."""
        async with self.db.raw() as conn:
            claimed = await repository.claim_held(
                conn,
                tx_id,
                Phase.VOIDING,
                lease=self.lease,
                entry=repository.step("expire", "ok"),
                failure_code="AUTHORIZATION_EXPIRED",
                when="expired",
            )
        if not isinstance(claimed, str):
            await self.recover_claimed(tx_id)


def _str(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None
