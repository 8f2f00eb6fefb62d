"""refunds: a refund is a transaction of its own; the original keeps what was refunded

A refund (type `refund`) names the transaction it gives back (`refunded_transaction_id`).
The original keeps `refunded_amount` (completed refunds) and `refund_reserved` (refunds
in flight, reserved when they are created, settled when they end), and the database
keeps their sum within its amount: concurrent refunds together never exceed it.
Idempotency-Keys are scoped per operation, stored with the operation's prefix
(`refund:`), hence a longer column.

Revision ID: 0006
Revises: 0005
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint('ck_transactions_type', 'transactions')
    op.create_check_constraint(
        op.f('ck_transactions_type'), 'transactions',
        "type IN ('deposit', 'transfer', 'payment', 'refund')",
    )
    op.add_column('transactions', sa.Column('refunded_transaction_id', sa.Uuid(), nullable=True))
    op.add_column('transactions', sa.Column(
        'refunded_amount', sa.BigInteger(), server_default='0', nullable=False))
    op.add_column('transactions', sa.Column(
        'refund_reserved', sa.BigInteger(), server_default='0', nullable=False))
    op.create_check_constraint(
        op.f('ck_transactions_refunds_within_amount'), 'transactions',
        'refunded_amount >= 0 AND refund_reserved >= 0 '
        'AND refunded_amount + refund_reserved <= amount',
    )
    op.create_index(
        'ix_transactions_refunded', 'transactions', ['refunded_transaction_id'],
        postgresql_where=sa.text('refunded_transaction_id IS NOT NULL'),
    )
    op.alter_column('idempotency_keys', 'key', type_=sa.String(300))


def downgrade() -> None:
    op.alter_column('idempotency_keys', 'key', type_=sa.String(255))
    op.drop_index('ix_transactions_refunded', table_name='transactions')
    op.drop_constraint('ck_transactions_refunds_within_amount', 'transactions')
    op.drop_column('transactions', 'refund_reserved')
    op.drop_column('transactions', 'refunded_amount')
    op.drop_column('transactions', 'refunded_transaction_id')
    op.drop_constraint('ck_transactions_type', 'transactions')
    op.create_check_constraint(
        op.f('ck_transactions_type'), 'transactions', "type IN ('deposit', 'transfer', 'payment')"
    )
