"""Alembic environment of the wallets service (schema `wallets`)."""

from paysys.wallets.models import Base
from paysys.kit.migrate import run_env

run_env(Base.metadata)
