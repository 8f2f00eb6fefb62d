"""retire the legacy saga's phases and key reservations

Transfers and payments the legacy saga left in flight (it debited and credited in two
steps: phases `debited` and `compensating`) go back to `started`: the one-operation
move finishes them, and wallets counts one as moved only with both legs, crediting or
giving back a half-moved one. Idempotency keys the legacy code reserved without a
transaction (it reserved before validating) are freed: no request of it is alive.

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE transactions SET phase = 'started', lease_until = NULL, updated_at = now() "
        "WHERE type IN ('transfer', 'payment') AND phase IN ('debited', 'compensating') "
        "AND status IN ('PENDING', 'PROCESSING')"
    )
    op.execute("DELETE FROM idempotency_keys WHERE transaction_id IS NULL")


def downgrade() -> None:
    pass  # nothing to restore: the legacy phases are never entered again
