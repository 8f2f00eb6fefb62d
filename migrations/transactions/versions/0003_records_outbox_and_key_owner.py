"""records outbox (transaction logs, audit) replaces the logged_at retry; idempotency
keys know the request that holds them; the unused inbox goes

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written before the expand/contract rule (src/paysys_dev/expand_contract.py), for
# upgrades that stopped every replica first; kept as it was applied.
CONTRACT_STEP = "historical: before the expand/contract rule, for stop-the-world upgrades"


def upgrade() -> None:
    op.create_table(
        'records_outbox',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('event_id', sa.UUID(), nullable=False),
        sa.Column('topic', sa.String(length=100), nullable=False),
        sa.Column('key', sa.String(length=100), nullable=False),
        sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_records_outbox')),
        sa.UniqueConstraint('event_id', name=op.f('uq_records_outbox_event_id')),
    )
    op.create_index(
        'ix_records_outbox_unpublished', 'records_outbox', ['id'],
        postgresql_where=sa.text('published_at IS NULL'),
    )
    op.drop_column('transactions', 'logged_at')
    op.add_column('idempotency_keys', sa.Column('owner', sa.Uuid(), nullable=True))
    op.drop_column('idempotency_keys', 'error')
    op.drop_table('inbox')


def downgrade() -> None:
    op.create_table(
        'inbox',
        sa.Column('consumer', sa.String(length=100), nullable=False),
        sa.Column('event_id', sa.UUID(), nullable=False),
        sa.Column('event_type', sa.String(length=100), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('consumer', 'event_id', name=op.f('pk_inbox')),
    )
    op.add_column('idempotency_keys', sa.Column('error', sa.Text(), nullable=True))
    op.drop_column('idempotency_keys', 'owner')
    op.add_column('transactions', sa.Column('logged_at', sa.DateTime(timezone=True), nullable=True))
    op.drop_index('ix_records_outbox_unpublished', table_name='records_outbox')
    op.drop_table('records_outbox')
