"""email jobs are claimed (sending) before SMTP; records outbox for MongoDB

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


def upgrade() -> None:
    op.drop_index('ix_email_jobs_due', table_name='email_jobs')
    op.create_index(
        'ix_email_jobs_due', 'email_jobs', ['next_attempt_at'],
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
    )
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


def downgrade() -> None:
    op.drop_index('ix_records_outbox_unpublished', table_name='records_outbox')
    op.drop_table('records_outbox')
    op.drop_index('ix_email_jobs_due', table_name='email_jobs')
    op.create_index(
        'ix_email_jobs_due', 'email_jobs', ['next_attempt_at'],
        postgresql_where=sa.text("status = 'pending'"),
    )
