"""POST /transactions/create as a use case: idempotency, validation against the
wallets, the transaction row, then the saga. Returns the transaction; the router
renders it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from paysys.kit.cards import keepable
from paysys.kit.context import current_request_id
from paysys.kit.db import Database
from paysys.kit.errors import ValidationFailed
from paysys.kit.events import utcnow
from paysys.kit.money import MoneyError, format_amount, max_minor_units, parse_amount
from paysys.kit.outbox import insert_rows
from paysys.transactions import repository
from paysys.transactions.clients import OutcomeUnknown
from paysys.transactions.exceptions import (
    AmountExceedsAuthorized,
    CaptureRefusedError,
    Forbidden,
    IdempotencyKeyReused,
    InvalidTransactionState,
    OutcomePending,
    RefundExceedsAmount,
    Replay,
    RequestInProgress,
    TransactionNotFound,
    WalletNotFound,
)
from paysys.transactions.group import Ended, GroupCommit, KeyTaken
from paysys.transactions.models import Phase, Status, Transaction
from paysys.transactions.saga import CaptureRefused, Saga
from paysys.transactions.schemas import (
    BatchItemIn,
    CaptureIn,
    CreateIn,
    DepositIn,
    PaymentIn,
    RefundIn,
)

log = structlog.get_logger()

IN_PROGRESS = "A request with this Idempotency-Key is in progress."
T = TypeVar("T")


def request_hash(body: dict[str, Any], key: str) -> str:
    """Fingerprint of a request body, to tell a replay from a reuse of its key.

    Keyed (HMAC) and without the card number and CVC: what is stored must not let
    anyone who reads the database recover a card by guessing bodies. The card counts by
    brand, last 4 and expiry, which the transaction keeps anyway."""
    view = dict(body)
    # A payment's defaults leave its fingerprint as it was before they existed.
    if view.get("capture") == "automatic":
        del view["capture"]
    if "authorization_ttl_seconds" in view and view["authorization_ttl_seconds"] is None:
        del view["authorization_ttl_seconds"]
    if isinstance(view.get("card"), dict):
        view["card"] = keepable(view["card"])
    canonical = json.dumps(view, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key.encode(), canonical, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Keyed:
    """The request's Idempotency-Key and the fingerprint of its body."""

    key: str
    digest: str

    @staticmethod
    def expiry(saga: Saga, tx: Transaction) -> datetime:
        """When a key taken with `tx` may be used again."""
        return tx.created_at + timedelta(hours=saga.settings.idempotency_ttl_hours)


def new_key(
    saga: Saga, user_id: uuid.UUID, keyed: Keyed | None, tx: Transaction
) -> repository.NewKey | None:
    """The request's key, to be taken with (or for) one transaction."""
    if keyed is None:
        return None
    return repository.NewKey(
        user_id, keyed.key, keyed.digest, Keyed.expiry(saga, tx), transaction_id=tx.id
    )


async def check_key(saga: Saga, user_id: uuid.UUID, keyed: Keyed) -> None:
    """Returns when the key is free. Otherwise: Replay (the stored answer of the first
    request), IdempotencyKeyReused (another body) or RequestInProgress. A read, no
    commit: the key is taken only with the transaction itself (`create`)."""
    for _ in range(3):
        async with saga.db.raw() as conn:
            row = await conn.fetchrow(repository.KEY_STATE, user_id, keyed.key)
            if row is None:
                return
            if row["expires_at"] < utcnow():
                await conn.execute(repository.DROP_KEY, user_id, keyed.key, row["created_at"])
                continue
        if row["request_hash"] != keyed.digest:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was used with a different request body."
            )
        if (replay := Replay.of(row)) is not None:
            raise replay
        if row["batch_id"] is not None:
            await _answer_ended_batch(saga, user_id, keyed.key, row["batch_id"])
        if row["transaction_id"] is not None:
            await _answer_ended_step(saga, user_id, keyed.key, row["transaction_id"])
        raise RequestInProgress(IN_PROGRESS)
    raise RequestInProgress(IN_PROGRESS)


async def _answer_ended_batch(
    saga: Saga, user_id: uuid.UUID, key: str, batch_id: uuid.UUID
) -> None:
    """A bulk request whose answer was never stored (it died, or wallets did not answer
    it): once the recovery worker has ended all its transactions, the answer is made
    from them, stored (unless another replay stored it first: that one), and replayed
    (raises Replay); until then, nothing."""
    async with saga.db.raw() as conn:
        txs = await repository.batch_items(conn, batch_id)
        if not txs or any(tx.status not in (Status.COMPLETED, Status.FAILED) for tx in txs):
            return
        status, body = saga.answer_batch(txs)
        row = await repository.settle_answer(conn, user_id, key, status, body)
    raise Replay.of(row) or Replay(status, body)


# What a capture's or a void's end leaves, by the prefix of its key.
_STEP_ENDS = {"capture": Status.COMPLETED, "void": Status.VOIDED}


async def _answer_ended_step(saga: Saga, user_id: uuid.UUID, key: str, tx_id: uuid.UUID) -> None:
    """A capture or void that the recovery worker ended (its request died first): its
    answer is made from the transaction, stored, and replayed (raises Replay)."""
    ends = _STEP_ENDS.get(key.partition(":")[0])
    if ends is None:
        return
    tx = await saga.read(tx_id)
    if tx.status != ends:
        return
    status, body = saga.step_answer(tx)
    async with saga.db.raw() as conn:
        row = await repository.settle_answer(conn, user_id, key, status, body)
    raise Replay.of(row) or Replay(status, body)


async def create(
    saga: Saga, group: GroupCommit, user_id: uuid.UUID, body: CreateIn, keyed: Keyed | None
) -> Transaction:
    """The transaction in its definite state (COMPLETED or FAILED). Raises AppError for
    errors that create no transaction, Replay for a key already answered, and
    OutcomePending when a service did not answer (the transaction then exists and the
    recovery worker finishes it).

    With an Idempotency-Key, the key is inserted in the same statement as the
    transaction (born FAILED by validation, or PROCESSING/PENDING): two commits on the
    happy path, key or not, and no read before. Of requests racing with one key, one
    inserts; the others, and later replays, then answer from the key (409 while it
    runs, its answer once stored, 422 for another body). A request that fails before
    its insert answers from the key too, when the key has an answer: a replay is
    answered even while wallets is down."""
    tx, card, failure = await _key_first(
        saga, user_id, keyed, _validate(saga, user_id, body, keyed)
    )
    for _ in range(2):
        try:
            if failure is not None:
                return await _born_failed(saga, tx, failure, user_id, keyed)
            return await _start(saga, group, tx, card, user_id, keyed)
        except KeyTaken:
            assert keyed is not None
            await check_key(saga, user_id, keyed)  # returns only if the key ran out
    raise RequestInProgress(IN_PROGRESS)


async def _validate(
    saga: Saga, user_id: uuid.UUID, body: CreateIn, keyed: Keyed | None, in_batch: bool = False
) -> tuple[Transaction, dict[str, Any] | None, str | None]:
    """The transaction the request asks for, not yet stored; its card; and why it is
    refused (None: it may go ahead). Raises AppError for requests that create none."""
    clients = saga.clients
    ttl = _authorization_ttl(saga, body, in_batch)
    card = body.card.model_dump() if isinstance(body, DepositIn) else None
    source = None
    if isinstance(body, DepositIn):
        # Fresh, with its status: a card is not charged for an inactive wallet.
        destination = await clients.wallet(body.destination_wallet_id)
    else:
        # Owner and currency only (they never change; cached): the status is checked
        # by wallets, under its locks, inside the move itself.
        source, destination = clients.known_facts(
            body.source_wallet_id, body.destination_wallet_id
        ) or await asyncio.gather(
            clients.wallet_facts(body.source_wallet_id),
            clients.wallet_facts(body.destination_wallet_id),
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
    elif card is not None and destination["status"] != "ACTIVE":
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
        idempotency_key=keyed.key if keyed else None,
        attempts=1,
        created_at=now,
        updated_at=now,
        authorization_expires_at=now + timedelta(seconds=ttl) if ttl else None,
    )
    return tx, card, failure


def _authorization_ttl(saga: Saga, body: CreateIn, in_batch: bool) -> int | None:
    """How long a manual-capture payment's authorization lives; None for any other
    transaction. A lifetime without a manual capture, one beyond the maximum, or a
    manual capture in a batch: 422."""
    if not isinstance(body, PaymentIn):
        return None
    longest = saga.settings.authorization_ttl_seconds
    ttl = body.authorization_ttl_seconds
    if body.capture != "manual":
        if ttl is not None:
            raise ValidationFailed(
                "authorization_ttl_seconds goes only with a manual capture.",
                errors=[{"loc": ["authorization_ttl_seconds"], "msg": "needs capture manual"}],
            )
        return None
    if in_batch:
        raise ValidationFailed(
            "A batch moves money at once: no manual capture.",
            errors=[{"loc": ["capture"], "msg": "must be automatic in a batch"}],
        )
    if ttl is not None and ttl > longest:
        raise ValidationFailed(
            f"An authorization lives at most {longest} seconds.",
            errors=[{"loc": ["authorization_ttl_seconds"], "msg": f"at most {longest}"}],
        )
    return ttl or longest


async def _start(
    saga: Saga,
    group: GroupCommit,
    tx: Transaction,
    card: dict[str, Any] | None,
    user_id: uuid.UUID,
    keyed: Keyed | None,
) -> Transaction:
    """Stores a validated transaction (with its key) and drives it to its end (for an
    authorization: AUTHORIZED, its money held): a transfer, payment or authorization
    through the group commit, a deposit through its saga."""
    now = tx.created_at
    # Validated: a deposit waits (PENDING) for its card charge; a transfer or payment
    # is born PROCESSING, its money about to move.
    tx.status = Status.PENDING if tx.type == "deposit" else Status.PROCESSING
    tx.phase = Phase.STARTED
    tx.steps = [repository.step("created", "ok")]
    tx.lease_until = now + saga.lease
    key = new_key(saga, user_id, keyed, tx)
    if tx.type != "deposit":  # transfers, payments, authorizations: in groups
        (done,) = (await group.submit([tx], [None], key)).txs
        return done
    async with saga.db.raw() as conn:
        created = await repository.insert_many(conn, [tx], [key is not None], [key] if key else [])
    if not created:
        raise KeyTaken  # the key came first: this request created nothing
    try:
        return await saga.drive(tx.id, card, fresh=tx)
    except OutcomeUnknown as exc:
        log.warning("saga_outcome_pending", transaction_id=str(tx.id), error=str(exc))
        raise OutcomePending.of_transaction(tx.id) from None


async def create_batch(
    saga: Saga,
    group: GroupCommit,
    user_id: uuid.UUID,
    items: list[BatchItemIn],
    keyed: Keyed | None,
) -> Ended:
    """POST /transactions/batch: checked as a whole first (an item create would answer
    422 makes the batch 422, naming the item; a source not the caller's or a missing
    destination, 404), nothing stored before; then every item is a transaction of its
    own, applied in order in one unit of the group commit: each ends COMPLETED or
    FAILED with its code (as create's 400s), seeing the balances the items before it
    left. Raises Replay for a key already answered, OutcomePending when wallets did not
    answer (the recovery worker ends them; a replay of the key then answers)."""
    checked = await _key_first(saga, user_id, keyed, _validate_items(saga, user_id, items))
    batch_id = uuid.uuid4()
    txs, failures = [], []
    for index, (tx, _, failure) in enumerate(checked):
        tx.status, tx.phase = Status.PROCESSING, Phase.STARTED
        tx.steps = [repository.step("created", "ok")]
        tx.lease_until = tx.created_at + saga.lease
        tx.batch_id, tx.batch_index = batch_id, index
        # Stored with it: the recovery worker ends such an item FAILED, never moves it.
        tx.failure_code = failure
        txs.append(tx)
        failures.append(failure)
    key = (
        repository.NewKey(
            user_id, keyed.key, keyed.digest, Keyed.expiry(saga, txs[0]), batch_id=batch_id
        )
        if keyed
        else None
    )
    for _ in range(2):
        try:
            return await group.submit(txs, failures, key, saga.answer_batch)
        except KeyTaken:
            assert keyed is not None
            await check_key(saga, user_id, keyed)  # returns only if the key ran out
    raise RequestInProgress(IN_PROGRESS)


async def _born_failed(
    saga: Saga, tx: Transaction, failure: str, user_id: uuid.UUID, keyed: Keyed | None
) -> Transaction:
    """Refused by validation: born FAILED, with its key and stored answer, event and
    records, in one commit. Nothing the recovery worker could pick up ever exists."""
    tx.status, tx.phase, tx.failure_code = Status.FAILED, Phase.DONE, failure
    tx.finished_at = tx.created_at
    tx.steps = [repository.step("validate", failure)]
    done = saga.terminal(tx)
    async with saga.db.uow() as session:
        if keyed is not None:
            taken = await repository.take_key(
                session,
                user_id,
                keyed.key,
                keyed.digest,
                Keyed.expiry(saga, tx),
                tx.id,
                *saga.answer(tx),
            )
            if not taken:
                raise KeyTaken  # the unit of work rolls back: nothing of this request
        session.add(tx)
        await insert_rows(session, saga.outbox.table, done.events)
        await saga.records.add_rows(session, done.records)
    saga.observe(tx)
    return tx


# -- refunds


async def refund(
    saga: Saga,
    group: GroupCommit,
    user_id: uuid.UUID,
    tx_id: uuid.UUID,
    body: RefundIn,
    keyed: Keyed | None,
) -> Transaction:
    """POST /transactions/{id}/refund: a refund of a completed transfer (by its
    recipient) or payment (by the merchant), back to the wallet the money came from, or
    of a deposit (by its wallet's owner) back to its card, as a transaction of its own:
    through the group commit, or the card refund's saga (saga._to_card). Either moves
    against the refunder's available balance. Checked in the contract's order: 404,
    409, 403, then 400 REFUND_EXCEEDS_AMOUNT (nothing created). Its amount is reserved
    on the original in the same database transaction that stores it, so concurrent
    refunds together never exceed what was moved."""
    scoped = _scoped("refund", keyed)
    original, amount = await _key_first(
        saga, user_id, scoped, _refundable(saga, user_id, tx_id, body)
    )
    to_card = original.type == "deposit"  # back to the card it came from
    now = utcnow()
    tx = Transaction(
        id=uuid.uuid4(),
        type="refund",
        status=Status.PROCESSING,
        phase=Phase.STARTED,
        amount=amount,
        currency=original.currency,
        initiator_user_id=user_id,
        source_wallet_id=original.destination_wallet_id,
        destination_wallet_id=None if to_card else original.source_wallet_id,
        source_user_id=original.destination_user_id,
        destination_user_id=original.destination_user_id if to_card else original.source_user_id,
        description=body.reason,
        correlation_id=current_request_id(),
        idempotency_key=scoped.key if scoped else None,
        refunded_transaction_id=original.id,
        steps=[repository.step("created", "ok")],
        attempts=1,
        lease_until=now + saga.lease,
        created_at=now,
        updated_at=now,
    )
    key = new_key(saga, user_id, scoped, tx)
    async with saga.db.raw_transaction() as stored:
        why = await repository.insert_refund(stored, tx, amount, key)
    if why == "key":
        assert scoped is not None
        await check_key(saga, user_id, scoped)
        raise RequestInProgress(IN_PROGRESS)
    if why == "exceeds":
        raise RefundExceedsAmount("Another refund of this transaction was taken first.")
    if not to_card:
        (done,) = (await group.submit([tx], [None], key, inserted=True)).txs
        return done
    try:
        return await saga.drive(tx.id, fresh=tx)
    except OutcomeUnknown as exc:
        log.warning("saga_outcome_pending", transaction_id=str(tx.id), error=str(exc))
        raise OutcomePending.of_transaction(tx.id) from None


async def _refundable(
    saga: Saga, user_id: uuid.UUID, tx_id: uuid.UUID, body: RefundIn
) -> tuple[Transaction, int]:
    """The transaction this user may refund now, and the amount to refund."""
    original = await visible(saga.db, tx_id, user_id)
    if original.status != Status.COMPLETED or original.type == "refund":
        raise InvalidTransactionState(
            f"Only a completed transfer, payment or deposit can be refunded; this "
            f"{original.type} is {original.status}."
        )
    if original.destination_user_id != user_id:
        raise Forbidden("Only the party that received the money can refund it.")
    moved = original.captured_amount or original.amount  # a manual capture: what it took
    left = moved - original.refunded_amount - original.refund_reserved
    try:
        amount = parse_amount(body.amount, original.currency) if body.amount else left
    except MoneyError as exc:
        raise ValidationFailed(str(exc), errors=[{"loc": ["amount"], "msg": str(exc)}]) from None
    if left <= 0 or amount > left:
        raise RefundExceedsAmount(
            f"At most {format_amount(max(left, 0), original.currency)} "
            f"{original.currency} can still be refunded."
        )
    return original, amount


# -- authorizations: capture and void


async def capture(
    saga: Saga,
    group: GroupCommit,
    user_id: uuid.UUID,
    tx_id: uuid.UUID,
    body: CaptureIn,
    keyed: Keyed | None,
) -> Transaction:
    """POST /transactions/{id}/capture, by the merchant: takes all or part of what an
    AUTHORIZED payment holds (COMPLETED). Checked in this order: 404, 409 (not an
    authorization waiting, or expired), 403 (the payer), 400 AMOUNT_EXCEEDS_AUTHORIZED;
    then 400 WALLET_INACTIVE from wallets, the authorization left as it was. Claimed
    here, taken at wallets and ended through the group commit (with other captures,
    transfers and payments ready at the same moment)."""
    scoped = _scoped("capture", keyed)
    tx, amount = await _key_first(saga, user_id, scoped, _capturable(saga, user_id, tx_id, body))
    return await _take(
        saga,
        tx,
        user_id,
        scoped,
        Phase.CAPTURING,
        "capture",
        captured=amount,
        when="unexpired",
        group=group,
    )


async def _capturable(
    saga: Saga, user_id: uuid.UUID, tx_id: uuid.UUID, body: CaptureIn
) -> tuple[Transaction, int]:
    """The authorization this merchant may capture now, and the amount asked for."""
    tx = await visible(saga.db, tx_id, user_id)
    if not _waiting(tx) or utcnow() >= _expiry(tx):
        raise InvalidTransactionState(
            f"Only an AUTHORIZED payment can be captured, before it expires; this "
            f"{tx.type} is {tx.status}."
        )
    if tx.destination_user_id != user_id:
        raise Forbidden("Only the merchant that was paid can capture.")
    try:
        amount = parse_amount(body.amount, tx.currency) if body.amount else tx.amount
    except MoneyError as exc:
        raise ValidationFailed(str(exc), errors=[{"loc": ["amount"], "msg": str(exc)}]) from None
    if amount > tx.amount:
        raise AmountExceedsAuthorized(
            f"At most {format_amount(tx.amount, tx.currency)} {tx.currency} was authorized."
        )
    return tx, amount


async def void(
    saga: Saga, user_id: uuid.UUID, tx_id: uuid.UUID, keyed: Keyed | None
) -> Transaction:
    """POST /transactions/{id}/void, by the payer or the merchant: the hold released,
    VOIDED. 404 for anyone else, 409 unless it is an AUTHORIZED payment waiting."""
    scoped = _scoped("void", keyed)
    tx = await _key_first(saga, user_id, scoped, _voidable(saga, user_id, tx_id))
    return await _take(saga, tx, user_id, scoped, Phase.VOIDING, "void")


async def _voidable(saga: Saga, user_id: uuid.UUID, tx_id: uuid.UUID) -> Transaction:
    tx = await visible(saga.db, tx_id, user_id)
    if not _waiting(tx):
        raise InvalidTransactionState(
            f"Only an AUTHORIZED payment can be voided; this {tx.type} is {tx.status}."
        )
    return tx


async def _validate_items(
    saga: Saga, user_id: uuid.UUID, items: list[BatchItemIn]
) -> list[tuple[Transaction, dict[str, Any] | None, str | None]]:
    """`_validate` of each item of a batch; a 422 names the item."""
    # Each wallet and merchant read once, whatever the number of items naming it.
    wallets = {i.source_wallet_id for i in items} | {i.destination_wallet_id for i in items}
    await asyncio.gather(*(saga.clients.wallet_facts(w) for w in wallets))
    checked = []
    for index, item in enumerate(items):
        try:
            checked.append(await _validate(saga, user_id, item, None, in_batch=True))
        except ValidationFailed as exc:
            errors = [
                {**e, "loc": ["items", index, *e.get("loc", [])]}
                for e in exc.extra.get("errors", [])
            ]
            raise ValidationFailed(
                f"Item {index}: {exc.detail}", code=exc.code, errors=errors
            ) from None
    return checked


async def _key_first(
    saga: Saga, user_id: uuid.UUID, keyed: Keyed | None, checks: Awaitable[T]
) -> T:
    """What `checks` find; when they refuse the request and it has a key, the key's own
    answer comes first (a replay of a request that went through: Replay; its key with
    another body; or in progress). No read of the key on the way that goes ahead: the
    key is taken with the claim or the transaction, and a request whose key is already
    taken answers from it then."""
    try:
        return await checks
    except Exception:
        if keyed is not None:
            await check_key(saga, user_id, keyed)
        raise


def _scoped(operation: str, keyed: Keyed | None) -> Keyed | None:
    """Keys are scoped per operation: stored as "<operation>:<key>"."""
    return Keyed(f"{operation}:{keyed.key}", keyed.digest) if keyed else None


def _waiting(tx: Transaction) -> bool:
    return tx.status == Status.AUTHORIZED and tx.phase == Phase.HELD


def _expiry(tx: Transaction) -> datetime:
    assert tx.authorization_expires_at is not None
    return tx.authorization_expires_at


async def _take(
    saga: Saga,
    tx: Transaction,
    user_id: uuid.UUID,
    keyed: Keyed | None,
    phase: Phase,
    name: str,
    *,
    captured: int | None = None,
    when: str = "any",
    group: GroupCommit | None = None,
) -> Transaction:
    """Claims the authorization for this capture or void (of several racing, one wins:
    the others answer 409), with the request's key; then drives it to its end: through
    `group` when given (a capture), else by its saga (a void)."""
    key = new_key(saga, user_id, keyed, tx)
    async with saga.db.raw() as conn:
        claimed = await repository.claim_held(
            conn,
            tx.id,
            phase,
            lease=saga.lease,
            entry=repository.step(name, "started", by=str(user_id)),
            captured=captured,
            when=when,
            key=key,
        )
    if isinstance(claimed, str):  # "key": another request holds it; else no longer waiting
        if keyed is not None:
            await check_key(saga, user_id, keyed)  # its answer, if it has one, comes first
        if claimed == "key":
            raise RequestInProgress(IN_PROGRESS)
        raise InvalidTransactionState("This authorization was captured, voided or expired.")
    keep = (user_id, keyed.key) if keyed else None
    try:
        if group is not None:
            ended = await group.submit(
                [claimed], [None], key, lambda txs: saga.step_answer(txs[0]), inserted=True
            )
            return ended.txs[0]
        return await saga.drive(tx.id, fresh=claimed, keep=keep)
    except CaptureRefused as exc:
        raise CaptureRefusedError(
            "A wallet of this payment is inactive; the authorization stays as it was.",
            code=exc.code,
            transaction_id=str(tx.id),
        ) from None
    except OutcomeUnknown as exc:
        log.warning("saga_outcome_pending", transaction_id=str(tx.id), error=str(exc))
        raise OutcomePending.of_transaction(tx.id) from None


# -- reads


async def visible(db: Database, tx_id: uuid.UUID, user_id: uuid.UUID) -> Transaction:
    """A transaction the user's wallets take part in; anyone else's is not found."""
    async with db.raw() as conn:
        tx = await repository.read(conn, tx_id)
    if tx is None or user_id not in (tx.source_user_id, tx.destination_user_id):
        raise TransactionNotFound("No such transaction.")
    return tx


async def page(
    db: Database,
    user_id: uuid.UUID,
    *,
    wallet_id: uuid.UUID | None,
    type_: str | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> tuple[list[Transaction], bool]:
    """Newest first, after the cursor; and whether there is more."""
    async with db.uow() as session:
        rows = await repository.page(
            session,
            user_id,
            wallet_id=wallet_id,
            type_=type_,
            status=status,
            after=after,
            limit=limit,
        )
    return rows[:limit], len(rows) > limit
