"""POST /transactions/create as a use case: idempotency, validation against the
wallets, the transaction row, then the saga. Returns the transaction; the router
renders it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from datetime import timedelta
from typing import Any

import structlog

from paysys.kit.cards import keepable
from paysys.kit.context import current_request_id
from paysys.kit.errors import ValidationFailed
from paysys.kit.events import utcnow
from paysys.kit.money import MoneyError, max_minor_units, parse_amount
from paysys.transactions import repository
from paysys.transactions.clients import OutcomeUnknown
from paysys.transactions.exceptions import (
    IdempotencyKeyReused,
    OutcomePending,
    RequestInProgress,
    WalletNotFound,
)
from paysys.transactions.models import Transaction
from paysys.transactions.saga import Saga
from paysys.transactions.schemas import CreateIn, DepositIn

log = structlog.get_logger()

# A reserved key with no transaction and no answer after this long belongs to a request
# that died before creating anything: another request may take it over. Taking over is
# safe even if the first request is only slow: it can no longer link the key, so it
# creates nothing (see repository.link_key).
ABANDONED_AFTER = timedelta(seconds=60)


def request_hash(body: dict[str, Any], key: str) -> str:
    """Fingerprint of a request body, to tell a replay from a reuse of its key.

    Keyed (HMAC) and without the card number and CVC: what is stored must not let
    anyone who reads the database recover a card by guessing bodies. The card counts by
    brand, last 4 and expiry, which the transaction keeps anyway."""
    view = dict(body)
    if isinstance(view.get("card"), dict):
        view["card"] = keepable(view["card"])
    canonical = json.dumps(view, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key.encode(), canonical, hashlib.sha256).hexdigest()


class Replay(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


async def reserve(saga: Saga, user_id: uuid.UUID, key: str, digest: str) -> uuid.UUID:
    """Reserves the key for this request; returns the reservation's owner token."""
    ttl = timedelta(hours=saga.settings.idempotency_ttl_hours)
    owner = uuid.uuid4()
    for _ in range(3):
        async with saga.rt.db.uow() as session:
            if await repository.reserve_key(session, user_id, key, digest, ttl, owner):
                return owner
            existing = await repository.get_key(session, user_id, key)
            if existing is None:
                continue
            if existing.expires_at < utcnow():
                await repository.drop_key(session, user_id, key)
                continue
            if existing.response_status is not None:
                if existing.request_hash != digest:
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was used with a different request body."
                    )
                assert existing.response_body is not None
                raise Replay(existing.response_status, existing.response_body)
            abandoned = (
                existing.transaction_id is None
                and existing.owner is not None
                and existing.created_at < utcnow() - ABANDONED_AFTER
            )
            if abandoned:
                assert existing.owner is not None
                if await repository.take_over_key(
                    session, user_id, key, existing.owner, owner, digest
                ):
                    return owner
                continue
            if existing.request_hash != digest:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body."
                )
            raise RequestInProgress("A request with this Idempotency-Key is in progress.")
    raise RequestInProgress("A request with this Idempotency-Key is in progress.")


async def release_key(saga: Saga, user_id: uuid.UUID, key: str | None, owner: uuid.UUID) -> None:
    if key:
        async with saga.rt.db.uow() as session:
            await repository.release_key(session, user_id, key, owner)


async def create(
    saga: Saga, user_id: uuid.UUID, body: CreateIn, key: str | None, owner: uuid.UUID | None
) -> Transaction:
    """The transaction in its definite state (COMPLETED or FAILED). Raises AppError for
    errors that create no transaction, and OutcomePending when a service did not answer
    (the transaction then exists and the recovery worker finishes it)."""
    clients = saga.clients
    card = body.card.model_dump() if isinstance(body, DepositIn) else None
    source = None
    if isinstance(body, DepositIn):
        destination = await clients.wallet(body.destination_wallet_id)
    else:
        source, destination = await asyncio.gather(
            clients.wallet(body.source_wallet_id), clients.wallet(body.destination_wallet_id)
        )
        if source is None or source["user_id"] != str(user_id):
            raise WalletNotFound("No such source wallet.")
    if destination is None or (
        isinstance(body, DepositIn) and destination["user_id"] != str(user_id)
    ):
        raise WalletNotFound("No such destination wallet.")
    currency = (source or destination)["currency"]
    try:
        minor = parse_amount(body.amount, currency)
    except MoneyError as exc:
        raise ValidationFailed(str(exc), errors=[{"loc": ["amount"], "msg": str(exc)}]) from None
    if card is not None:
        await clients.validate_card(card)

    failure = None
    if source is not None and source["id"] == destination["id"]:
        failure = "SAME_WALLET"
    elif (body.currency and body.currency != currency) or destination["currency"] != currency:
        failure = "CURRENCY_MISMATCH"
    elif minor > max_minor_units(saga.settings.max_amount, currency):
        failure = "LIMIT_EXCEEDED"
    elif destination["status"] != "ACTIVE" or (source and source["status"] != "ACTIVE"):
        failure = "WALLET_INACTIVE"
    elif (
        body.type == "payment"
        and await clients.account_type(uuid.UUID(destination["user_id"])) != "merchant"
    ):
        failure = "NOT_A_MERCHANT"

    now = utcnow()
    tx = Transaction(
        id=uuid.uuid4(),
        type=body.type,
        amount=minor,
        currency=currency,
        initiator_user_id=user_id,
        source_wallet_id=uuid.UUID(source["id"]) if source else None,
        destination_wallet_id=uuid.UUID(destination["id"]),
        source_user_id=uuid.UUID(source["user_id"]) if source else None,
        destination_user_id=uuid.UUID(destination["user_id"]),
        description=body.description,
        correlation_id=current_request_id(),
        idempotency_key=key,
        attempts=1,
        created_at=now,
        updated_at=now,
    )
    if failure is not None:
        # Refused by validation: born FAILED, with its event, records and stored answer
        # in one commit. Nothing the recovery worker could pick up ever exists.
        tx.status, tx.phase, tx.failure_code = "FAILED", "done", failure
        tx.finished_at = now
        tx.steps = [repository.step("validate", failure)]
        async with saga.rt.db.uow() as session:
            await _insert(session, tx, user_id, key, owner)
            await saga.record_terminal(session, tx)
        saga.observe(tx)
        return tx

    # Validated: a deposit waits (PENDING) for its card charge; a transfer or payment
    # is born PROCESSING, its money about to move.
    tx.status = "PENDING" if body.type == "deposit" else "PROCESSING"
    tx.phase = "started"
    tx.steps = [repository.step("created", "ok")]
    tx.lease_until = now + saga.lease
    async with saga.rt.db.uow() as session:
        await _insert(session, tx, user_id, key, owner)
    try:
        return await saga.drive(tx.id, card, fresh=tx)
    except OutcomeUnknown as exc:
        log.warning("saga_outcome_pending", transaction_id=str(tx.id), error=str(exc))
        raise OutcomePending(
            "A service did not answer; this transaction will be completed or refunded "
            "automatically within a minute.",
            transaction_id=str(tx.id),
        ) from None


async def _insert(
    session: Any, tx: Transaction, user_id: uuid.UUID, key: str | None, owner: uuid.UUID | None
) -> None:
    session.add(tx)
    if key:
        assert owner is not None
        await session.flush()
        if not await repository.link_key(session, user_id, key, owner, tx.id):
            # The key was taken over while this request validated: the other request
            # owns it now, and this one creates nothing (the unit of work rolls back).
            raise RequestInProgress("A request with this Idempotency-Key is in progress.")
