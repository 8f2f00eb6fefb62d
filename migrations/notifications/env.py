"""Alembic environment of the notifications service (schema `notifications`)."""

from paysys.kit.migrate import run_env
from paysys.notifications.models import Base

run_env(Base.metadata)
