"""Tables of the users service (schema `users`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, LargeBinary, MetaData, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paysys.kit.db import NAMING
from paysys.kit.outbox import outbox_table
from paysys.kit.records import records_table


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


outbox = outbox_table(Base.metadata)
records_outbox = records_table(Base.metadata)


class User(Base):
    """A user. Email and full name are personal data: stored sealed (AES-GCM, see
    kit.crypto) under the key `key_id`; the email is found by its blind index."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("account_type IN ('personal', 'merchant')", name="account_type"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Case-blind keyed hash of the email. Unique: the index, not a prior SELECT, is what
    # makes two concurrent registrations of one address end in one 201 and one 409.
    email_index: Mapped[str] = mapped_column(String(64), unique=True)
    email_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    full_name_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    account_type: Mapped[str] = mapped_column(String(20), default="personal")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# What is sealed where, for `paysys rotate-keys users`: table, key column, and each
# sealed column with the context it was sealed under ("<context>:<row key>").
SEALED = ("users", "id", (("email_sealed", "users.email"), ("full_name_sealed", "users.full_name")))
