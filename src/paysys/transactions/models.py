"""Tables of the transactions service (schema `transactions`): the saga's persisted
state, and the idempotency keys of POST /transactions/create."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    func,
    text,
)
from sqlalchemy import (
    Enum as SAEnum,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paysys.kit.db import NAMING
from paysys.kit.outbox import outbox_table
from paysys.kit.records import records_table


class Status(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    AUTHORIZED = "AUTHORIZED"  # a manual-capture payment: the money held, not moved
    VOIDED = "VOIDED"  # an authorization voided (or expired): the hold released


class Phase(StrEnum):
    STARTED = "started"
    CHARGED = "charged"
    DEBITED = "debited"  # a deposit's refund to its card: the wallet debited
    COMPENSATING = "compensating"
    # An AUTHORIZED payment: waiting for a capture or a void; a runner capturing it or
    # voiding it (with the lease: the recovery worker finishes what a dead one left).
    HELD = "held"
    CAPTURING = "capturing"
    VOIDING = "voiding"
    DONE = "done"


def _enum(kind: type[StrEnum], length: int) -> SAEnum:
    """A column holding one of `kind`'s values as text (the CHECK constraints are the
    migrations'); rows load as members of `kind`."""
    return SAEnum(
        kind,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


outbox = outbox_table(Base.metadata)
records_outbox = records_table(Base.metadata)


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint("type IN ('deposit', 'transfer', 'payment', 'refund')", name="type"),
        CheckConstraint(
            "refunded_amount >= 0 AND refund_reserved >= 0 "
            "AND refunded_amount + refund_reserved <= coalesce(captured_amount, amount)",
            name="refunds_within_amount",
        ),
        CheckConstraint(
            "captured_amount IS NULL OR captured_amount BETWEEN 1 AND amount",
            name="captured_within_amount",
        ),
        CheckConstraint(
            "destination_wallet_id IS NOT NULL OR type = 'refund'", name="destination_or_card"
        ),
        CheckConstraint(
            "status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'AUTHORIZED', 'VOIDED')",
            name="status",
        ),
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("ix_transactions_source_user", "source_user_id", "created_at"),
        Index("ix_transactions_destination_user", "destination_user_id", "created_at"),
        Index(
            "ix_transactions_in_flight",
            "lease_until",
            postgresql_where=text("status IN ('PENDING', 'PROCESSING')"),
        ),
        Index(
            "ix_transactions_authorized",
            "authorization_expires_at",
            postgresql_where=text("status = 'AUTHORIZED'"),
        ),
        Index(
            "ix_transactions_batch",
            "batch_id",
            "batch_index",
            unique=True,
            postgresql_where=text("batch_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    type: Mapped[str] = mapped_column(String(10))
    status: Mapped[Status] = mapped_column(_enum(Status, 10), default=Status.PENDING)
    # Saga progress: started -> debited|charged -> compensating -> done. Once
    # "compensating" is recorded, the saga only ever goes back, never forward.
    phase: Mapped[Phase] = mapped_column(_enum(Phase, 20), default=Phase.STARTED)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    initiator_user_id: Mapped[uuid.UUID]
    source_wallet_id: Mapped[uuid.UUID | None]
    destination_wallet_id: Mapped[uuid.UUID | None]  # None: a refund to a card
    source_user_id: Mapped[uuid.UUID | None]
    destination_user_id: Mapped[uuid.UUID]
    description: Mapped[str | None] = mapped_column(String(500))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    correlation_id: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # Who drives the saga: a runner holds the lease and renews it at every step; the
    # recovery worker takes over transactions whose lease has run out.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # An item of POST /transactions/batch: the batch, and its 0-based place in it.
    batch_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    batch_index: Mapped[int | None] = mapped_column(default=None)
    # A refund: the transaction it gives back. The original: its completed refunds, and
    # those in flight (reserved at their creation, settled when they end).
    refunded_transaction_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    # A manual-capture payment: until when it may be captured, and what was (set when a
    # capture starts, kept once it completes; what a refund may give back).
    authorization_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None
    )
    captured_amount: Mapped[int | None] = mapped_column(BigInteger, default=None)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # Scoped per operation: a refund's key is stored as "refund:<key>".
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    # HMAC of the request body, card number and CVC left out (see service.request_hash).
    request_hash: Mapped[str] = mapped_column(String(64))
    # The request that holds the key until it links a transaction: a takeover of an
    # abandoned key changes it, and the first request then cannot link any more.
    owner: Mapped[uuid.UUID | None]
    transaction_id: Mapped[uuid.UUID | None]
    # The key of a POST /transactions/batch: its items carry this batch_id.
    batch_id: Mapped[uuid.UUID | None]
    response_status: Mapped[int | None]
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
