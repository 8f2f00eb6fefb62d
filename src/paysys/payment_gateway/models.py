"""Tables of the payment_gateway service (schema `payment_gateway`)."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from paysys.kit.db import NAMING
from paysys.kit.outbox import inbox_table, outbox_table


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
