"""one outcome row per transfer: the move and the refusal both insert it

A transfer's outcome is one row (moved, or refused with its code) under the
transaction's id: the move and a twin's refusal cannot both be kept. Filled from what
earlier releases left: kept refusals, moves with both legs, and transfers the legacy
saga gave back (debit and refund). A legacy transfer that was debited and neither
credited nor given back gets its outcome when it is next asked for (wallets.service:
it is finished, or given back).

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


def upgrade() -> None:
    op.create_table(
        'transfer_outcomes',
        sa.Column('transaction_id', sa.Uuid(), nullable=False),
        sa.Column('outcome', sa.String(length=10), nullable=False),
        sa.Column('wallet_id', sa.Uuid(), nullable=True),
        sa.Column('code', sa.String(length=40), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint("outcome IN ('moved', 'refused')", name=op.f('ck_transfer_outcomes_outcome')),
        sa.CheckConstraint("(outcome = 'refused') = (code IS NOT NULL)", name=op.f('ck_transfer_outcomes_code')),
        sa.PrimaryKeyConstraint('transaction_id', name=op.f('pk_transfer_outcomes')),
    )
    op.execute(
        "INSERT INTO transfer_outcomes (transaction_id, outcome, wallet_id, code) "
        "SELECT transaction_id, 'refused', wallet_id, code FROM refusals WHERE operation = 'debit' "
        "ON CONFLICT DO NOTHING"
    )
    op.execute(
        "INSERT INTO transfer_outcomes (transaction_id, outcome) "
        "SELECT transaction_id, 'moved' FROM ledger_entries GROUP BY transaction_id "
        "HAVING bool_or(operation = 'debit') AND bool_or(operation = 'credit') "
        "ON CONFLICT DO NOTHING"
    )
    op.execute(
        "INSERT INTO transfer_outcomes (transaction_id, outcome, wallet_id, code) "
        "SELECT d.transaction_id, 'refused', coalesce(r.wallet_id, d.wallet_id), "
        "       coalesce(r.code, 'WALLET_INACTIVE') "
        "FROM ledger_entries d "
        "JOIN ledger_entries g ON g.transaction_id = d.transaction_id AND g.operation = 'refund' "
        "LEFT JOIN refusals r ON r.transaction_id = d.transaction_id AND r.operation = 'credit' "
        "WHERE d.operation = 'debit' ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    op.drop_table('transfer_outcomes')
