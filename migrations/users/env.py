"""Alembic environment of the users service (schema `users`)."""

from paysys.users.models import Base
from paysys.kit.migrate import run_env

run_env(Base.metadata)
