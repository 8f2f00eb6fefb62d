"""POST /transactions/create as a use case: idempotency, validation against the
wallets, the PENDING record, then the saga."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import timedelta
from typing import Any

import structlog

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
from paysys.transactions.saga import Saga, final_response
from paysys.transactions.schemas import CreateIn, DepositIn

log = structlog.get_logger()

# A reserved key with no transaction and no answer after this long belongs to a request
# that died before creating anything: it may be reused.
ABANDONED_AFTER = timedelta(seconds=60)


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class Replay(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


async def reserve(saga: Saga, user_id: uuid.UUID, key: str, digest: str) -> None:
    ttl = timedelta(hours=saga.settings.idempotency_ttl_hours)
    for _ in range(2):
        async with saga.rt.db.uow() as session:
            if await repository.reserve_key(session, user_id, key, digest, ttl):
                return
            existing = await repository.get_key(session, user_id, key)
            if existing is None:
                continue
            abandoned = (
                existing.transaction_id is None
                and existing.response_status is None
                and existing.created_at < utcnow() - ABANDONED_AFTER
            )
            if existing.expires_at < utcnow() or abandoned:
                await repository.drop_key(session, user_id, key)
                continue
            if existing.request_hash != digest:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body."
                )
            if existing.response_status is None:
                raise RequestInProgress("A request with this Idempotency-Key is in progress.")
            assert existing.response_body is not None
            raise Replay(existing.response_status, existing.response_body)
    raise RequestInProgress("A request with this Idempotency-Key is in progress.")


async def release_key(saga: Saga, user_id: uuid.UUID, key: str | None) -> None:
    if key:
        async with saga.rt.db.uow() as session:
            existing = await repository.get_key(session, user_id, key)
            if existing is not None and existing.transaction_id is None:
                await repository.drop_key(session, user_id, key)


async def create(
    saga: Saga, user_id: uuid.UUID, body: CreateIn, key: str | None
) -> tuple[int, dict[str, Any]]:
    """Returns (HTTP status, body) of the definite outcome; raises AppError for errors
    that create no transaction, and OutcomePending when a service did not answer."""
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

    tx = Transaction(
        id=uuid.uuid4(),
        type=body.type,
        status="PENDING",
        phase="started",
        amount=minor,
        currency=currency,
        initiator_user_id=user_id,
        source_wallet_id=uuid.UUID(source["id"]) if source else None,
        destination_wallet_id=uuid.UUID(destination["id"]),
        source_user_id=uuid.UUID(source["user_id"]) if source else None,
        destination_user_id=uuid.UUID(destination["user_id"]),
        description=body.description,
        steps=[repository.step("created", "ok")],
        correlation_id=current_request_id(),
        idempotency_key=key,
        lease_until=utcnow() + saga.lease,
        attempts=1,
    )
    async with saga.rt.db.uow() as session:
        session.add(tx)
        if key:
            await repository.link_key(session, user_id, key, tx.id)
    if failure is not None:
        done = await saga.fail_early(tx.id, failure)
        return final_response(done)
    try:
        done = await saga.drive(tx.id, card, fresh=tx)
    except OutcomeUnknown as exc:
        log.warning("saga_outcome_pending", transaction_id=str(tx.id), error=str(exc))
        raise OutcomePending(
            "A service did not answer; this transaction will be completed or refunded "
            "automatically within a minute.",
            transaction_id=str(tx.id),
        ) from None
    return final_response(done)
