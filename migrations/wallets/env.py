"""Alembic environment of the wallets service (schema `wallets`)."""

from paysys.kit.migrate import run_env
from paysys.wallets.models import Base

run_env(Base.metadata)
