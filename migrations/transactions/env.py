"""Alembic environment of the transactions service (schema `transactions`)."""

from paysys.transactions.models import Base
from paysys.kit.migrate import run_env

run_env(Base.metadata)
