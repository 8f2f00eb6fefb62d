"""Alembic environment of the notifications service (schema `notifications`)."""

from paysys.notifications.models import Base
from paysys.kit.migrate import run_env

run_env(Base.metadata)
