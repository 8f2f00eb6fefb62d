"""Tables of the users service (schema `users`)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Index, MetaData, String, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from paysys.kit.db import NAMING
from paysys.kit.outbox import inbox_table, outbox_table
from paysys.kit.records import records_table


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
records_outbox = records_table(Base.metadata)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # Emails compare case-insensitively; the index, not a prior SELECT, is what
        # makes two concurrent registrations of one address end in one 201 and one 409.
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
        CheckConstraint("account_type IN ('personal', 'merchant')", name="account_type"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str] = mapped_column(String(200))
    account_type: Mapped[str] = mapped_column(String(20), default="personal")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
