"""Tables of the wallets service (schema `wallets`): wallets and their append-only ledger."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
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
        CheckConstraint("operation IN ('credit', 'debit', 'refund')", name="operation"),
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("wallets.id"), index=True)
    transaction_id: Mapped[uuid.UUID]
    operation: Mapped[str] = mapped_column(String(10))
    amount: Mapped[int] = mapped_column(BigInteger)  # signed minor units
    balance_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


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
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
