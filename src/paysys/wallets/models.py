"""Tables of the wallets service (schema `wallets`)."""

from __future__ import annotations

from paysys.kit.db import make_base
from paysys.kit.outbox import inbox_table, outbox_table

Base = make_base()
outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
