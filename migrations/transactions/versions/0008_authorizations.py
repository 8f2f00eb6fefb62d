"""authorizations: manual-capture payments, AUTHORIZED then COMPLETED or VOIDED

A payment with a manual capture (issue 22) ends its first step AUTHORIZED, with the
money held by wallets until `authorization_expires_at`; a capture completes it
(`captured_amount`), a void or the expiry voids it. Phases while it is AUTHORIZED:
`held` (waiting), `capturing` or `voiding` (a runner holds the lease; the recovery
worker finishes it if that runner dies). What may be refunded of a captured payment is
what was captured.

Revision ID: 0008
Revises: 0007
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED', 'AUTHORIZED', 'VOIDED')"
REFUNDS = (
    'refunded_amount >= 0 AND refund_reserved >= 0 '
    'AND refunded_amount + refund_reserved <= coalesce(captured_amount, amount)'
)


def upgrade() -> None:
    op.add_column('transactions', sa.Column('captured_amount', sa.BigInteger(), nullable=True))
    op.add_column('transactions', sa.Column(
        'authorization_expires_at', sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint('ck_transactions_status', 'transactions')
    op.create_check_constraint(op.f('ck_transactions_status'), 'transactions', STATUSES)
    op.drop_constraint('ck_transactions_refunds_within_amount', 'transactions')
    op.create_check_constraint(op.f('ck_transactions_refunds_within_amount'), 'transactions', REFUNDS)
    op.create_check_constraint(
        op.f('ck_transactions_captured_within_amount'), 'transactions',
        'captured_amount IS NULL OR captured_amount BETWEEN 1 AND amount',
    )
    op.create_index(
        'ix_transactions_authorized', 'transactions', ['authorization_expires_at'],
        postgresql_where=sa.text("status = 'AUTHORIZED'"),
    )


def downgrade() -> None:
    op.drop_index('ix_transactions_authorized', table_name='transactions')
    op.drop_constraint('ck_transactions_captured_within_amount', 'transactions')
    op.drop_constraint('ck_transactions_refunds_within_amount', 'transactions')
    op.create_check_constraint(
        op.f('ck_transactions_refunds_within_amount'), 'transactions',
        'refunded_amount >= 0 AND refund_reserved >= 0 '
        'AND refunded_amount + refund_reserved <= amount',
    )
    op.drop_constraint('ck_transactions_status', 'transactions')
    op.create_check_constraint(
        op.f('ck_transactions_status'), 'transactions',
        "status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')",
    )
    op.drop_column('transactions', 'authorization_expires_at')
    op.drop_column('transactions', 'captured_amount')
