"""Alembic environment of the users service (schema `users`)."""

from paysys.kit.migrate import run_env
from paysys.users.models import Base

run_env(Base.metadata)
