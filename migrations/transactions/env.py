"""Alembic environment of the transactions service (schema `transactions`)."""

from paysys.kit.migrate import run_env
from paysys.transactions.models import Base

run_env(Base.metadata)
