"""holds: money reserved by an authorization, captured or released later

One row per authorization (issue 22), under its transaction's id: `open` while it
reserves `amount` on its wallet, then `captured` (with the amount taken) or `released`;
`refused` keeps a refusal, so that asking again answers the same. A wallet's
held_balance is the sum of its open holds: each change of one and of the other is made
in the same statement's transaction, under the wallet's lock.

Revision ID: 0011
Revises: 0010
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | Sequence[str] | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'holds',
        sa.Column('transaction_id', sa.Uuid(), nullable=False),
        sa.Column('wallet_id', sa.Uuid(), nullable=False),
        sa.Column('destination_wallet_id', sa.Uuid(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('code', sa.String(length=40), nullable=True),
        sa.Column('captured_amount', sa.BigInteger(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint('amount > 0', name=op.f('ck_holds_amount_positive')),
        sa.CheckConstraint(
            "status IN ('open', 'captured', 'released', 'refused')", name=op.f('ck_holds_status')
        ),
        sa.CheckConstraint("(status = 'refused') = (code IS NOT NULL)", name=op.f('ck_holds_code')),
        sa.CheckConstraint(
            "(status = 'captured') = (captured_amount IS NOT NULL) "
            "AND (captured_amount IS NULL OR captured_amount BETWEEN 1 AND amount)",
            name=op.f('ck_holds_captured_within_amount'),
        ),
        sa.ForeignKeyConstraint(['wallet_id'], ['wallets.id'], name=op.f('fk_holds_wallet_id_wallets')),
        sa.PrimaryKeyConstraint('transaction_id', name=op.f('pk_holds')),
    )
    op.create_index(
        'ix_holds_open', 'holds', ['wallet_id'], postgresql_where=sa.text("status = 'open'")
    )


def downgrade() -> None:
    op.drop_index('ix_holds_open', table_name='holds')
    op.drop_table('holds')
