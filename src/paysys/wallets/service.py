"""Business rules of the wallets service. Takes a session; never commits."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncpg.exceptions import UniqueViolationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.db import Database
from paysys.kit.errors import AppError, ValidationFailed
from paysys.kit.events import utcnow
from paysys.kit.money import CURRENCY_EXPONENTS, MoneyError, exponent, format_amount, parse_amount
from paysys.kit.outbox import Outbox
from paysys.wallets import limits, repository
from paysys.wallets.exceptions import (
    REFUSALS,
    CreditFenced,
    LimitAboveMaximum,
    WalletExists,
    WalletNotFound,
)
from paysys.wallets.models import LedgerEntry, Wallet
from paysys.wallets.schemas import FundsOut, LimitsOut, LimitValues, WalletOut

SIGN = {"credit": 1, "refund": 1, "debit": -1}
# The currencies' minor-unit digits, as capture_hold takes them (encoded once).
EXPONENTS_JSON = json.dumps(CURRENCY_EXPONENTS)
TOPIC = {
    "credit": "wallet.funds_added",
    "refund": "wallet.funds_added",
    "debit": "wallet.funds_deducted",
}


def to_state(wallet: Wallet) -> dict[str, Any]:
    """The cached form of a wallet (and the source of its public view), from the ORM
    object or a raw row's columns."""
    return {
        "id": str(wallet.id),
        "user_id": str(wallet.user_id),
        "currency": wallet.currency,
        "balance": wallet.balance,
        "held_balance": wallet.held_balance,
        "status": wallet.status,
        "version": wallet.version,
        "created_at": wallet.created_at.isoformat(),
        "updated_at": wallet.updated_at.isoformat(),
    }


def to_out(state: dict[str, Any]) -> WalletOut:
    currency = state["currency"]
    held = state.get("held_balance", 0)  # states cached before holds existed have none
    return WalletOut(
        id=state["id"],
        user_id=state["user_id"],
        currency=currency,
        balance=format_amount(state["balance"], currency),
        held_balance=format_amount(held, currency),
        available_balance=format_amount(state["balance"] - held, currency),
        status=state["status"],
        created_at=state["created_at"],
        updated_at=state["updated_at"],
    )


def payee_name(full_name: str, account_type: str) -> str:
    """Who a payer is shown before confirming: a merchant's full name; a person's first
    name and the initial of the last ("Grace H."), nothing more of them."""
    if account_type == "merchant":
        return full_name
    names = full_name.split()
    if len(names) < 2:
        return names[0] if names else ""
    return f"{names[0]} {names[-1][0]}."


async def create(
    session: AsyncSession,
    outbox: Outbox,
    user_id: uuid.UUID,
    currency: str,
    account_type: str | None = None,
) -> Wallet:
    wallet = Wallet(
        id=uuid.uuid4(),
        user_id=user_id,
        currency=currency,
        balance=0,
        version=0,
        account_type=account_type,
    )
    session.add(wallet)
    try:
        await session.flush()
    except IntegrityError:
        raise WalletExists(f"You already have a {currency} wallet.") from None
    await session.refresh(wallet)
    await outbox.add(
        session,
        "wallet.created",
        str(wallet.id),
        {"wallet_id": str(wallet.id), "user_id": str(user_id), "currency": currency},
    )
    return wallet


async def owned(session: AsyncSession, wallet_id: uuid.UUID, user_id: uuid.UUID) -> Wallet:
    wallet = await repository.get(session, wallet_id)
    if wallet is None or wallet.user_id != user_id:
        # Someone else's wallet is indistinguishable from no wallet.
        raise WalletNotFound("No such wallet.")
    return wallet


async def set_status(
    session: AsyncSession, wallet_id: uuid.UUID, user_id: uuid.UUID, status: str
) -> Wallet:
    await owned(session, wallet_id, user_id)
    wallet = await repository.set_status(session, wallet_id, status)
    assert wallet is not None
    return wallet


def _result(entry: LedgerEntry, wallet: Wallet) -> FundsOut:
    return FundsOut(
        wallet_id=wallet.id,
        user_id=wallet.user_id,
        transaction_id=entry.transaction_id,
        operation=entry.operation,
        amount=format_amount(abs(entry.amount), wallet.currency),
        currency=wallet.currency,
        balance=format_amount(entry.balance_after, wallet.currency),
    )


async def replay(
    session: AsyncSession, wallet_id: uuid.UUID, transaction_id: uuid.UUID, operation: str
) -> FundsOut | None:
    """The first result of an already-applied (transaction_id, operation), if any."""
    entry = await repository.entry(session, transaction_id, operation)
    if entry is None:
        return None
    wallet = await repository.get(session, entry.wallet_id)
    assert wallet is not None
    if entry.wallet_id != wallet_id:
        raise ValidationFailed(
            "This transaction_id was already used for another wallet.",
            code="IDEMPOTENCY_KEY_REUSED",
            status=422,
        )
    return _result(entry, wallet)


async def fence_credit(session: AsyncSession, transaction_id: uuid.UUID) -> bool:
    """Forbids the credit of a transaction from now on; True if it already happened
    (then the saga must complete, not refund)."""
    await repository.lock_transaction(session, transaction_id)
    if await repository.entry(session, transaction_id, "credit") is not None:
        return True
    await repository.add_fence(session, transaction_id)
    return False


@dataclass(frozen=True)
class Refused:
    """A balance change refused for good: the caller commits it, then answers with it."""

    code: str
    wallet_id: uuid.UUID
    # Wallets whose balance changed all the same (a legacy transfer given back to its
    # source), for the cache.
    states: list[dict[str, Any]] | None = None

    def error(self) -> AppError:
        return REFUSALS[self.code](REFUSAL_TEXT[self.code], wallet_id=str(self.wallet_id))


REFUSAL_TEXT = {
    "INSUFFICIENT_FUNDS": "The wallet's balance is too low.",
    "WALLET_INACTIVE": "The wallet is inactive.",
    "CURRENCY_MISMATCH": "The wallet holds another currency.",
    "LIMIT_EXCEEDED": "This would take the wallet past one of its spending limits.",
}


async def _refuse(
    session: AsyncSession,
    transaction_id: uuid.UUID,
    operation: str,
    wallet_id: uuid.UUID,
    code: str,
) -> Refused:
    await repository.add_refusal(session, transaction_id, operation, wallet_id, code)
    return Refused(code, wallet_id)


@dataclass(frozen=True)
class About:
    """What a balance change is for, kept on its ledger entry for statements: the
    transaction's type and description, and the other wallet (None: a card)."""

    kind: str | None = None
    description: str | None = None
    counterparty: uuid.UUID | None = None


async def change_balance(
    session: AsyncSession,
    outbox: Outbox,
    wallet_id: uuid.UUID,
    transaction_id: uuid.UUID,
    operation: str,
    amount_text: str,
    currency: str | None = None,
    about: About | None = None,
) -> tuple[FundsOut | Refused, Wallet | None]:
    """Applies one balance change with its ledger entry and event, once per
    (transaction_id, operation): the first outcome, a refusal included, is the answer
    to every later call. Returns the outcome and the changed wallet (None when nothing
    moved)."""
    await repository.lock_transaction(session, transaction_id)
    previous = await replay(session, wallet_id, transaction_id, operation)
    if previous is not None:
        return previous, None
    earlier = await repository.refusal(session, transaction_id, operation)
    if earlier is not None:
        return Refused(earlier.code, earlier.wallet_id), None
    if operation == "credit" and await repository.fenced(session, transaction_id):
        raise CreditFenced("This transaction is being refunded; it cannot be credited.")
    current = await repository.get(session, wallet_id)
    if current is None:
        raise WalletNotFound("No such wallet.")
    if currency is not None and currency != current.currency:
        return await _refuse(
            session, transaction_id, operation, wallet_id, "CURRENCY_MISMATCH"
        ), None
    try:
        minor = parse_amount(amount_text, current.currency)
    except MoneyError as exc:
        raise ValidationFailed(str(exc)) from None
    delta = SIGN[operation] * minor
    wallet = await repository.apply_change(
        session, wallet_id, delta, require_active=operation != "refund"
    )
    if wallet is None:
        fresh = await repository.get(session, wallet_id)
        inactive = fresh is not None and fresh.status != "ACTIVE" and operation != "refund"
        code = "WALLET_INACTIVE" if inactive else "INSUFFICIENT_FUNDS"
        return await _refuse(session, transaction_id, operation, wallet_id, code), None
    about = about or About()
    entry = LedgerEntry(
        wallet_id=wallet_id,
        transaction_id=transaction_id,
        operation=operation,
        amount=delta,
        balance_after=wallet.balance,
        kind=about.kind,
        description=about.description,
        counterparty_wallet_id=about.counterparty,
    )
    session.add(entry)
    await session.flush()  # a concurrent twin fails here on the unique (transaction, op)
    await outbox.add(
        session,
        TOPIC[operation],
        str(wallet_id),
        {
            "wallet_id": str(wallet_id),
            "user_id": str(wallet.user_id),
            "transaction_id": str(transaction_id),
            "amount": format_amount(minor, wallet.currency),
            "currency": wallet.currency,
            "balance": format_amount(wallet.balance, wallet.currency),
        },
    )
    return _result(entry, wallet), wallet


# -- transfers and payments, in batches: one database transaction, one round trip


@dataclass(frozen=True)
class Moved:
    """The money moved; the wallets' states after (None on a replay: what counts is
    that it moved, once)."""

    states: list[dict[str, Any]] | None


@dataclass(frozen=True)
class Missing:
    """A wallet of the move does not exist; nothing was kept, nothing moved."""


@dataclass(frozen=True)
class Move:
    """One transfer or payment to apply: `amount` in minor units of `currency`."""

    transaction_id: uuid.UUID
    source: uuid.UUID
    destination: uuid.UUID
    amount: int
    currency: str
    correlation_id: str | None = None  # its events'; by default the current request's
    kind: str = "transfer"  # transfer, payment, refund (which no limit counts)
    description: str | None = None


@dataclass(frozen=True)
class Applied:
    """A batch's outcomes, one per move in order, and the states of the wallets whose
    balance changed (for the cache)."""

    outcomes: list[Moved | Refused | Missing]
    states: list[dict[str, Any]]
    # The wallets of moves answered from an earlier call's outcome: that call may have
    # died between its commit and its cache write, leaving their cached state old.
    replayed: set[uuid.UUID] = dataclasses.field(default_factory=set)


async def move_batch(
    db: Database,
    outbox: Outbox,
    moves: list[Move],
    maximums: dict[str, dict[str, limits.Triple]] | None = None,
    now: datetime | None = None,
) -> Applied:
    """Applies the moves in one database transaction, in one statement (the
    `move_batch` function of migration 0009): every wallet locked in id order, then each
    move checked (currency, status, funds) and applied in order, so that a move sees the
    balances the ones before it left and a refusal touches nothing else. Idempotent per
    transaction id: asked again, a move gives its first outcome, a refusal included,
    even once the source could pay. Transfers and payments count against the source's
    limits at `now` (by default the clock), checked in the same statement."""
    debits = [
        outbox.row("wallet.funds_deducted", str(m.source), {}, m.correlation_id) for m in moves
    ]
    credits = [
        outbox.row("wallet.funds_added", str(m.destination), {}, m.correlation_id) for m in moves
    ]
    args = (
        [m.transaction_id for m in moves],
        [m.source for m in moves],
        [m.destination for m in moves],
        [m.amount for m in moves],
        [m.currency for m in moves],
        [exponent(m.currency) for m in moves],
        [e[0] for e in debits],
        [e[3] for e in debits],
        [e[0] for e in credits],
        [e[3] for e in credits],
        debits[0][1] if debits else "wallet.funds_deducted",
        credits[0][1] if credits else "wallet.funds_added",
        [m.kind for m in moves],
        [m.description for m in moves],
        now or utcnow(),
        limits.as_json(limits.DEFAULT_MINOR if maximums is None else maximums),
    )
    for attempt in range(2):
        try:
            async with db.raw() as conn:
                rows = await conn.fetch(repository.MOVE_BATCH, *args)
            break
        except UniqueViolationError:
            # A twin of one of these moves (the same transaction id, in another call)
            # kept its outcome between our locks and our insert: nothing of this batch
            # was kept; once more, it finds that outcome.
            if attempt:
                raise
    outcomes: list[Moved | Refused | Missing] = []
    states: list[dict[str, Any]] = []
    replayed: set[uuid.UUID] = set()
    for row in rows:
        result = row["result"]
        if result == "state":
            states.append(dict(row["wallet"]))  # jsonb: decoded by the pool's codec
        elif result in ("moved", "kept_moved"):
            outcomes.append(Moved(None))
            if result == "kept_moved":
                m = moves[row["item"]]
                replayed.update((m.source, m.destination))
        elif result in ("refused", "kept_refused"):
            outcomes.append(Refused(row["reason"], row["on_wallet"]))
        elif result == "missing":
            outcomes.append(Missing())
        else:  # legacy: moved in part under an earlier release; finished on its own
            m = moves[row["item"]]
            legacy = await _first_outcome(
                db, outbox, m.transaction_id, m.source, m.destination, m.currency
            )
            states.extend(legacy.states or [])
            outcomes.append(legacy)
    if states:
        db.written(outbox.table.name)
    return Applied(outcomes, states, replayed)


async def _first_outcome(
    db: Database,
    outbox: Outbox,
    tx: uuid.UUID,
    source: uuid.UUID,
    destination: uuid.UUID,
    currency: str,
) -> Moved | Refused:
    """The outcome kept for a transaction that already had one: read under the
    transaction's lock. Without an outcome row, money moved for it under an earlier
    release, whose saga debited and credited in separate steps: it counts as moved only
    with both legs. One debited and neither credited nor given back is finished now (the
    credit), or, when the credit is refused or fenced, given back to its source; either
    way its outcome row is kept with it, in one database transaction."""
    states: list[dict[str, Any]] = []
    async with db.uow() as session:
        await repository.lock_transaction(session, tx)
        if (kept := await repository.outcome(session, tx)) is not None:
            if kept.outcome == "refused":
                assert kept.code is not None
                return Refused(kept.code, kept.wallet_id or source)
            return Moved(None)
        debit = await repository.entry(session, tx, "debit")
        if debit is None:
            raise AssertionError(f"transaction {tx} has no outcome to replay")
        refused: Refused | None = None
        if await repository.entry(session, tx, "credit") is not None:
            pass  # both legs: it moved
        elif await repository.entry(session, tx, "refund") is not None:
            refused = await _legacy_refusal(session, tx, destination)  # already given back
        else:
            amount = format_amount(-debit.amount, currency)
            try:
                credited, wallet = await change_balance(
                    session, outbox, destination, tx, "credit", amount, currency
                )
            except (CreditFenced, WalletNotFound):
                credited, wallet = await _legacy_refusal(session, tx, destination), None
            if wallet is not None:
                states.append(to_state(wallet))
            if isinstance(credited, Refused):
                refused = credited
                _, back = await change_balance(
                    session, outbox, source, tx, "refund", amount, currency
                )
                if back is not None:
                    states.append(to_state(back))
        if refused is not None:
            await repository.add_outcome(session, tx, "refused", refused.wallet_id, refused.code)
        else:
            await repository.add_outcome(session, tx, "moved", None, None)
    db.written(outbox.table.name)
    if refused is not None:
        return dataclasses.replace(refused, states=states or None)
    return Moved(states or None)


async def _legacy_refusal(session: AsyncSession, tx: uuid.UUID, destination: uuid.UUID) -> Refused:
    """Why a legacy transfer's credit did not happen: its kept refusal, else (fenced by
    a compensating saga, or the wallet gone) the destination counts as inactive."""
    earlier = await repository.refusal(session, tx, "credit")
    return (
        Refused(earlier.code, earlier.wallet_id)
        if earlier
        else Refused("WALLET_INACTIVE", destination)
    )


# -- holds: authorize now, capture later (issue 22). Not the hot path: each is one
# database transaction through the ORM, under the transaction's lock and then the
# wallets' locks in id order (as move_batch takes them, so the two never deadlock).


# Each outcome that went through carries the states of the wallets it changed (written
# to the cache) and, when it is a replay, the wallets its first call changed: that call
# may have died between its commit and its write to the cache, so their cached states
# are dropped (as move_batch's `replayed`).


@dataclass(frozen=True)
class Held:
    """The money is reserved (now, or by an earlier call)."""

    states: list[dict[str, Any]]
    replayed: frozenset[uuid.UUID] = frozenset()


@dataclass(frozen=True)
class Captured:
    """The hold was captured (now, or by an earlier call) for `amount`."""

    amount: int
    states: list[dict[str, Any]]
    replayed: frozenset[uuid.UUID] = frozenset()


@dataclass(frozen=True)
class Released:
    """The hold no longer reserves anything (now, or since an earlier call)."""

    states: list[dict[str, Any]]
    replayed: frozenset[uuid.UUID] = frozenset()


@dataclass(frozen=True)
class HoldEnded:
    """The hold was already captured (for a release) or released (for a capture)."""

    status: str


def _touch(*wallets: Wallet) -> None:
    """A wallet about to change: a newer version (the cache keeps only newer ones)."""
    for wallet in wallets:
        wallet.version += 1
        wallet.updated_at = utcnow()


async def _locked(session: AsyncSession, *ids: uuid.UUID) -> dict[uuid.UUID, Wallet]:
    return {w.id: w for w in await repository.lock_wallets(session, list(ids))}


async def hold(
    db: Database,
    outbox: Outbox,
    tx: uuid.UUID,
    source: uuid.UUID,
    destination: uuid.UUID,
    amount: int,
    currency: str,
    maximums: dict[str, dict[str, limits.Triple]],
    description: str | None = None,
    now: datetime | None = None,
) -> Held | Refused | Missing:
    """Reserves `amount` on the source for a payment to `destination`, if the payment
    could move now: both wallets active, in its currency, the source's available
    balance enough, its limits not passed (the hold counts against them from now on).
    Once per transaction id: asked again, the first outcome. A batch of one (the
    `hold_funds` function of migration 0013, through hold_batch)."""
    item = HoldItem(tx, source, destination, amount, currency, description)
    (first,), states = await hold_batch(db, outbox, [item], maximums, now)
    return Held(states, first.replayed) if isinstance(first, Held) else first


@dataclass(frozen=True)
class HoldItem:
    """One authorization's hold, in a batch: `amount` in minor units of `currency`."""

    transaction_id: uuid.UUID
    source: uuid.UUID
    destination: uuid.UUID
    amount: int
    currency: str
    description: str | None = None
    correlation_id: str | None = None  # its event's; by default the current request's


async def hold_batch(
    db: Database,
    outbox: Outbox,
    items: list[HoldItem],
    maximums: dict[str, dict[str, limits.Triple]],
    now: datetime | None = None,
) -> tuple[list[Held | Refused | Missing], list[dict[str, Any]]]:
    """`hold` for many authorizations in one database transaction and one round trip
    (the `hold_batch` function of migration 0015): each in order, with its own outcome
    (asked again, its first one); and the states of the wallets whose held balance
    changed, latest last."""
    # (id and JSON only: the function keys each event by its wallet and fills its data)
    events = [outbox.row("wallet.funds_held", "", {}, i.correlation_id) for i in items]
    async with db.raw() as conn:
        rows = await conn.fetch(
            repository.HOLD_BATCH,
            [i.transaction_id for i in items],
            [i.source for i in items],
            [i.destination for i in items],
            [i.amount for i in items],
            [i.currency for i in items],
            [exponent(i.currency) for i in items],
            [i.description for i in items],
            now or utcnow(),
            limits.as_json(maximums),
            [e[0] for e in events],
            [e[3] for e in events],
        )
    outcomes: list[Held | Refused | Missing] = []
    states: list[dict[str, Any]] = []
    changed: set[int] = set()  # the items that held now (a state row follows each)
    for row in rows:
        if row["result"] == "state":
            states.append(dict(row["wallet"]))
            changed.add(row["item"])
        elif row["result"] == "missing":
            outcomes.append(Missing())
        elif row["result"] == "refused":
            outcomes.append(Refused(row["reason"], row["on_wallet"]))
        else:
            outcomes.append(Held([]))
    outcomes = [
        Held([], frozenset({items[n].source})) if isinstance(o, Held) and n not in changed else o
        for n, o in enumerate(outcomes)
    ]
    if states:
        db.written(outbox.table.name)
    return outcomes, states


async def capture(
    db: Database, outbox: Outbox, tx: uuid.UUID, amount: int
) -> Captured | Refused | HoldEnded | None:
    """Takes `amount` (at most what is held) of an open hold: the whole hold released,
    the amount debited from the payer and credited to the merchant, with their ledger
    entries and events (funds_released, then funds_deducted and funds_added). Refused
    (nothing kept: the hold stays open) while either wallet is inactive. Once per
    transaction id: asked again, the first capture. None: no such hold. A batch of one
    (the `capture_hold` function of migration 0013, through capture_batch)."""
    (first,), states = await capture_batch(db, outbox, [CaptureItem(tx, amount)])
    if isinstance(first, TooMuch):
        raise ValidationFailed("More than the hold reserves.", code=first.code)
    if isinstance(first, Captured):
        return Captured(first.amount, states, first.replayed)
    return first


async def _hold_wallets(db: Database, txs: list[uuid.UUID]) -> frozenset[uuid.UUID]:
    """The wallets of these transactions' holds (a replayed capture's: rare)."""
    async with db.raw() as conn:
        rows = await conn.fetch(repository.HOLD_WALLETS, txs)
    return frozenset(w for r in rows for w in (r["wallet_id"], r["destination_wallet_id"]))


@dataclass(frozen=True)
class CaptureItem:
    """One capture, in a batch: `amount` (minor units) of the transaction's hold."""

    transaction_id: uuid.UUID
    amount: int
    correlation_id: str | None = None  # its events'; by default the current request's


@dataclass(frozen=True)
class TooMuch:
    """More than the hold reserves was asked for (a capture of a batch; alone: 422)."""

    code: str = "AMOUNT_EXCEEDS_AUTHORIZED"


Capture = Captured | Refused | HoldEnded | TooMuch | None


async def capture_batch(
    db: Database, outbox: Outbox, items: list[CaptureItem]
) -> tuple[list[Capture], list[dict[str, Any]]]:
    """`capture` for many holds in one database transaction and one round trip (the
    `capture_batch` function of migration 0017): each in order, with its own outcome
    (asked again, its first capture; None: no such hold). And the states of the
    wallets that changed, latest last."""
    topics = ("wallet.funds_released", TOPIC["debit"], TOPIC["credit"])
    # (id and JSON only: the function keys each event by its wallet and fills its data)
    events = [[outbox.row(t, "", {}, i.correlation_id) for t in topics] for i in items]
    async with db.raw() as conn:
        rows = await conn.fetch(
            repository.CAPTURE_BATCH,
            [i.transaction_id for i in items],
            [i.amount for i in items],
            EXPONENTS_JSON,
            *[
                column
                for n in range(3)
                for column in (
                    [e[n][0] for e in events],
                    [e[n][3] for e in events],
                )
            ],
        )
    outcomes: list[Capture] = []
    states: list[dict[str, Any]] = []
    changed: set[int] = set()  # the items captured now (state rows follow each)
    for row in rows:
        result = row["result"]
        if result == "state":
            states.append(dict(row["wallet"]))
            changed.add(row["item"])
        elif result == "captured":
            outcomes.append(Captured(row["amount"], []))
        elif result == "refused":
            outcomes.append(Refused(row["reason"], row["on_wallet"]))
        elif result == "too_much":
            outcomes.append(TooMuch())
        elif result == "ended":
            outcomes.append(HoldEnded(row["reason"]))
        else:
            outcomes.append(None)  # no such hold
    replays = [n for n, o in enumerate(outcomes) if isinstance(o, Captured) and n not in changed]
    if replays:
        replayed = await _hold_wallets(db, [items[n].transaction_id for n in replays])
        for n in replays:
            first = outcomes[n]
            assert isinstance(first, Captured)
            outcomes[n] = Captured(first.amount, [], replayed)
    if states:
        db.written(outbox.table.name)
    return outcomes, states


async def release(
    session: AsyncSession, outbox: Outbox, tx: uuid.UUID
) -> Released | HoldEnded | None:
    """Gives an open hold's money back to what is available (a void, an expiry),
    whatever the wallet's status. Once: a hold released (or refused) before answers
    Released again; a captured one, HoldEnded. None: no such hold."""
    await repository.lock_transaction(session, tx)
    h = await repository.hold(session, tx)
    if h is None:
        return None
    if h.status == "captured":
        return HoldEnded(h.status)
    if h.status != "open":
        return Released([], frozenset({h.wallet_id}) if h.status == "released" else frozenset())
    (s,) = (await _locked(session, h.wallet_id)).values()
    _touch(s)
    s.held_balance -= h.amount
    if h.counted:
        limits.give_back(s, h.amount, h.created_at)
    h.status, h.updated_at = "released", utcnow()
    await session.flush()
    await outbox.add(
        session,
        "wallet.funds_released",
        str(s.id),
        {
            "wallet_id": str(s.id),
            "user_id": str(s.user_id),
            "transaction_id": str(tx),
            "amount": format_amount(h.amount, s.currency),
            "currency": s.currency,
            "balance": format_amount(s.balance, s.currency),
            "held_balance": format_amount(s.held_balance, s.currency),
        },
    )
    return Released([to_state(s)])


# -- statements and balances at an instant: read from the append-only ledger

MAX_STATEMENT_DAYS = 366


def period(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """A statement's [start, end): by default `from` is the first instant of the
    current calendar month in UTC and `to` the first instant of the next."""
    first = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = start or first
    end = end or (first + timedelta(days=32)).replace(day=1)
    if end < start:
        raise ValidationFailed("`to` is before `from`.", errors=_at_query("to", "before from"))
    if end - start > timedelta(days=MAX_STATEMENT_DAYS):
        raise ValidationFailed(
            f"A statement covers at most {MAX_STATEMENT_DAYS} days.",
            errors=_at_query("to", f"more than {MAX_STATEMENT_DAYS} days after from"),
        )
    return start, end


def _at_query(name: str, msg: str) -> list[dict[str, Any]]:
    return [{"loc": ["query", name], "msg": msg, "type": "value_error"}]


async def balance_at(db: Database, wallet_id: uuid.UUID, at: datetime) -> int:
    async with db.snapshot() as conn:
        return await repository.balance_at(conn, wallet_id, at)


@dataclass(frozen=True)
class Statement:
    opening: int
    closing: int
    credits: int
    debits: int
    rows: list[Any]  # ledger rows, oldest first


async def statement(
    db: Database, wallet_id: uuid.UUID, start: datetime, end: datetime
) -> Statement:
    """The entries of [start, end) with the balances around them, from one snapshot:
    opening + credits - debits = closing, and closing is the balance at `end`."""
    async with db.snapshot() as conn:
        opening = await repository.balance_at(conn, wallet_id, start)
        rows = await conn.fetch(repository.ENTRIES_BETWEEN, wallet_id, start, end)
    credits = sum(int(r["amount"]) for r in rows if r["amount"] > 0)
    debits = -sum(int(r["amount"]) for r in rows if r["amount"] < 0)
    closing = opening + credits - debits
    if rows and int(rows[-1]["balance_after"]) != closing:
        # The ledger's own chain disagrees with its sums: never show such a statement.
        raise AssertionError(f"ledger of wallet {wallet_id} does not add up")
    return Statement(opening, closing, credits, debits, list(rows))


async def stream_entries(
    db: Database, wallet_id: uuid.UUID, start: datetime, end: datetime
) -> AsyncIterator[Any]:
    """The entries of [start, end), oldest first, from a cursor: a year of a busy wallet
    is never held in memory."""
    async with db.snapshot() as conn:
        async for row in conn.cursor(
            repository.ENTRIES_BETWEEN, wallet_id, start, end, prefetch=500
        ):
            yield row


# -- spending limits


def limits_out(
    wallet: Wallet, maximums: dict[str, dict[str, limits.Triple]], now: datetime
) -> LimitsOut:
    s = limits.standing(wallet, maximums, now)
    cur = wallet.currency

    def text(minor: int | None) -> str | None:
        return None if minor is None else format_amount(minor, cur)

    return LimitsOut(
        wallet_id=wallet.id,
        currency=cur,
        per_transaction=text(s.limits[0]),
        daily=text(s.limits[1]),
        monthly=text(s.limits[2]),
        spent_today=format_amount(s.spent_today, cur),
        spent_this_month=format_amount(s.spent_this_month, cur),
        maximum=LimitValues(
            per_transaction=text(s.maximum[0]), daily=text(s.maximum[1]), monthly=text(s.maximum[2])
        ),
    )


async def set_limits(
    session: AsyncSession,
    wallet_id: uuid.UUID,
    user_id: uuid.UUID,
    changes: dict[str, str | None],
    maximums: dict[str, dict[str, limits.Triple]],
) -> Wallet:
    """The owner's limits, changed under the wallet's lock (so no move is checked
    against half of them): a value given, or None for the maximum again; never above
    the maximum."""
    wallet = await repository.lock_wallet(session, wallet_id)
    if wallet is None or wallet.user_id != user_id:
        raise WalletNotFound("No such wallet.")
    maximum = dict(zip(limits.WINDOWS, limits.maximum_of(wallet, maximums), strict=True))
    for window, value in changes.items():
        minor: int | None = None
        if value is not None:
            try:
                minor = parse_amount(value, wallet.currency)
            except MoneyError as exc:
                raise ValidationFailed(
                    str(exc),
                    errors=[{"loc": ["body", window], "msg": str(exc), "type": "value_error"}],
                ) from None
            top = maximum[window]
            if top is not None and minor > top:
                raise LimitAboveMaximum(
                    f"The {window.replace('_', ' ')} limit can be at most "
                    f"{format_amount(top, wallet.currency)} {wallet.currency}.",
                    field=window,
                    maximum=format_amount(top, wallet.currency),
                )
        setattr(wallet, f"limit_{window}", minor)
    await session.flush()
    return wallet
