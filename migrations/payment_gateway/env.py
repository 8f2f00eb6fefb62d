"""Alembic environment of the payment_gateway service (schema `payment_gateway`)."""

from paysys.kit.migrate import run_env
from paysys.payment_gateway.models import Base

run_env(Base.metadata)
