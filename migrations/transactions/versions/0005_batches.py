"""batches: a transaction's place in a POST /transactions/batch, and the batch's key

A bulk request's items are transactions like any other, marked with their batch and
their 0-based place in it, so that a replay of the batch's Idempotency-Key can answer
from them even when the request died before its answer was stored.

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('transactions', sa.Column('batch_id', sa.Uuid(), nullable=True))
    op.add_column('transactions', sa.Column('batch_index', sa.Integer(), nullable=True))
    op.create_index(
        'ix_transactions_batch', 'transactions', ['batch_id', 'batch_index'],
        unique=True, postgresql_where=sa.text('batch_id IS NOT NULL'),
    )
    op.add_column('idempotency_keys', sa.Column('batch_id', sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column('idempotency_keys', 'batch_id')
    op.drop_index('ix_transactions_batch', table_name='transactions')
    op.drop_column('transactions', 'batch_index')
    op.drop_column('transactions', 'batch_id')
