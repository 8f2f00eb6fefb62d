"""Tables of the notifications service (schema `notifications`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paysys.kit.db import NAMING
from paysys.kit.outbox import inbox_table
from paysys.kit.records import records_table


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


inbox = inbox_table(Base.metadata)
records_outbox = records_table(Base.metadata)


class Recipient(Base):
    """Who a user is, as told by user.registered: a local projection, so sending mail
    never depends on the users service being up. Personal data: sealed at rest (AES-GCM,
    see kit.crypto) under the key `key_id`."""

    __tablename__ = "recipients"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    email_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    full_name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))


class EmailJob(Base):
    """One email to send; the sender retries it with backoff until sent or failed.

    status: pending -> sending -> sent | failed (or back to pending, to retry). A job in
    `sending` belongs to the sender that claimed it until `next_attempt_at`, after which
    another may take it over (its sender died mid-send)."""

    __tablename__ = "email_jobs"
    __table_args__ = (
        UniqueConstraint("event_id", "user_id", "kind"),
        Index(
            "ix_email_jobs_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'sending')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# What is sealed where, for `paysys rotate-keys notifications` (see users.models.SEALED).
SEALED = (
    "recipients",
    "user_id",
    (("email_sealed", "recipients.email"), ("full_name_sealed", "recipients.full_name")),
)
