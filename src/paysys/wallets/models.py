"""Tables of the wallets service (schema `wallets`): wallets and their append-only ledger."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paysys.kit.db import NAMING
from paysys.kit.outbox import outbox_table
from paysys.kit.records import records_table


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


outbox = outbox_table(Base.metadata)
records_outbox = records_table(Base.metadata)


class Wallet(Base):
    __tablename__ = "wallets"
    __table_args__ = (
        UniqueConstraint("user_id", "currency"),
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint(
            "held_balance >= 0 AND held_balance <= balance", name="held_within_balance"
        ),
        CheckConstraint("status IN ('ACTIVE', 'INACTIVE')", name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    currency: Mapped[str] = mapped_column(String(3))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)  # minor units
    # Reserved by open authorizations; balance - held_balance is what can be spent.
    held_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(10), default="ACTIVE")
    # The owner's account type (personal, merchant): which maximums its limits have.
    # NULL on wallets from before limits existed: counted as personal until it is known.
    account_type: Mapped[str | None] = mapped_column(String(20))
    # The owner's own limits, minor units; NULL: the maximum for the account type.
    limit_per_transaction: Mapped[int | None] = mapped_column(BigInteger)
    limit_daily: Mapped[int | None] = mapped_column(BigInteger)
    limit_monthly: Mapped[int | None] = mapped_column(BigInteger)
    # What left the wallet in the UTC day / month that starts on spent_day / spent_month
    # (a window that is not the current one counts as nothing spent).
    spent_day: Mapped[date | None] = mapped_column(Date)
    spent_today: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_month: Mapped[date | None] = mapped_column(Date)
    spent_this_month: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bumped by every change; the cache only ever accepts a newer version.
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CreditFence(Base):
    """A transaction whose credit must never happen: written by the saga before it
    refunds, so that the money of one transaction either reaches the destination or
    goes back to the source, never both (even with two runners on one saga)."""

    __tablename__ = "credit_fences"

    transaction_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Refusal(Base):
    """A balance change that was refused, kept so that asking again for the same
    (transaction_id, operation) gets the same refusal, even once the balance would
    allow it: a transaction recorded FAILED can never move money later."""

    __tablename__ = "refusals"
    __table_args__ = (
        CheckConstraint("operation IN ('credit', 'debit', 'refund')", name="operation"),
    )

    transaction_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    operation: Mapped[str] = mapped_column(String(10), primary_key=True)
    wallet_id: Mapped[uuid.UUID]
    code: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TransferOutcome(Base):
    """The outcome of a transfer or payment's move, one row per transaction: the move
    and a refusal both insert it, so exactly one of them is ever kept, whatever order
    their statements' snapshots were taken in."""

    __tablename__ = "transfer_outcomes"
    __table_args__ = (
        CheckConstraint("outcome IN ('moved', 'refused')", name="outcome"),
        CheckConstraint("(outcome = 'refused') = (code IS NOT NULL)", name="code"),
    )

    transaction_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    outcome: Mapped[str] = mapped_column(String(10))
    wallet_id: Mapped[uuid.UUID | None]
    code: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LedgerEntry(Base):
    """One balance change. Never updated or deleted; (transaction_id, operation) is the
    idempotency key of the change, enforced here rather than trusted to the callers."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("transaction_id", "operation"),
        # The balance at an instant, a statement's period: one index range per wallet
        # (and every lookup by wallet alone: migration 0014 dropped that one's own index).
        Index("ix_ledger_entries_wallet_id_created_at", "wallet_id", "created_at", "id"),
        CheckConstraint("operation IN ('credit', 'debit', 'refund')", name="operation"),
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"))
    transaction_id: Mapped[uuid.UUID]
    operation: Mapped[str] = mapped_column(String(10))
    amount: Mapped[int] = mapped_column(BigInteger)  # signed minor units
    balance_after: Mapped[int] = mapped_column(BigInteger)
    # What the money moved for, learnt when it moved (for statements): the transaction's
    # type and description, and the other wallet (None for a card).
    kind: Mapped[str | None] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(String(500))
    counterparty_wallet_id: Mapped[uuid.UUID | None]
    # The clock at the insert, under the wallet's lock: a wallet's entries are in time
    # order as in id order (see migration 0012).
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp()
    )


class Hold(Base):
    """Money an authorization reserves on its wallet (a manual-capture payment), under
    its transaction's id: open, then captured or released, each exactly once; a refusal
    is kept as `refused`. The wallet's held_balance is the sum of its open holds."""

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('open', 'captured', 'released', 'refused')", name="status"),
        CheckConstraint("(status = 'refused') = (code IS NOT NULL)", name="code"),
        CheckConstraint(
            "(status = 'captured') = (captured_amount IS NOT NULL) "
            "AND (captured_amount IS NULL OR captured_amount BETWEEN 1 AND amount)",
            name="captured_within_amount",
        ),
        Index("ix_holds_open", "wallet_id", postgresql_where=text("status = 'open'")),
    )

    transaction_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"))
    destination_wallet_id: Mapped[uuid.UUID]
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10))
    code: Mapped[str | None] = mapped_column(String(40))
    captured_amount: Mapped[int | None] = mapped_column(BigInteger)
    description: Mapped[str | None] = mapped_column(String(500))
    # Whether the hold counted against the payer's limits (what it gives back when it
    # is released or captured in part); holds from before limits did not.
    counted: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
