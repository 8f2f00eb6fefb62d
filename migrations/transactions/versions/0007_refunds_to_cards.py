"""refunds to cards: a deposit's refund has no destination wallet

Revision ID: 0007
Revises: 0006
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column('transactions', 'destination_wallet_id', nullable=True)
    op.create_check_constraint(
        op.f('ck_transactions_destination_or_card'), 'transactions',
        "destination_wallet_id IS NOT NULL OR type = 'refund'",
    )


def downgrade() -> None:
    op.drop_constraint(op.f('ck_transactions_destination_or_card'), 'transactions')
    op.alter_column('transactions', 'destination_wallet_id', nullable=False)
