"""Alembic environment of the payment_gateway service (schema `payment_gateway`)."""

from paysys.payment_gateway.models import Base
from paysys.kit.migrate import run_env

run_env(Base.metadata)
