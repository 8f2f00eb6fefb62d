"""refused balance changes are kept: a replay gets the same refusal

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
    op.create_table(
        'refusals',
        sa.Column('transaction_id', sa.Uuid(), nullable=False),
        sa.Column('operation', sa.String(length=10), nullable=False),
        sa.Column('wallet_id', sa.Uuid(), nullable=False),
        sa.Column('code', sa.String(length=40), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("operation IN ('credit', 'debit', 'refund')", name=op.f('ck_refusals_operation')),
        sa.PrimaryKeyConstraint('transaction_id', 'operation', name=op.f('pk_refusals')),
    )


def downgrade() -> None:
    op.drop_table('refusals')
