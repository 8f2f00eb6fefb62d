"""card refunds: part or all of a charge back to the card, once per refund id

A deposit refunded to its card (issue 22) is a card refund of its own, idempotent per
refund id (the refund transaction's id). The charge keeps what was refunded of it, and
the database keeps that within its amount.

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('payments', sa.Column(
        'refunded_amount', sa.BigInteger(), server_default='0', nullable=False))
    op.create_check_constraint(
        op.f('ck_payments_refunded_within_amount'), 'payments',
        'refunded_amount >= 0 AND refunded_amount <= amount',
    )
    op.create_table(
        'card_refunds',
        sa.Column('refund_id', sa.Uuid(), nullable=False),
        sa.Column('payment_id', sa.Uuid(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('failure_code', sa.String(length=40), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("status IN ('succeeded', 'failed')", name=op.f('ck_card_refunds_status')),
        sa.CheckConstraint('amount > 0', name=op.f('ck_card_refunds_amount_positive')),
        sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_card_refunds_payment_id_payments')),
        sa.PrimaryKeyConstraint('refund_id', name=op.f('pk_card_refunds')),
    )


def downgrade() -> None:
    op.drop_table('card_refunds')
    op.drop_constraint(op.f('ck_payments_refunded_within_amount'), 'payments')
    op.drop_column('payments', 'refunded_amount')
