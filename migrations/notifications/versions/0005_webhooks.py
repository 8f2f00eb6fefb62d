"""webhooks: endpoints per user, their deliveries as durable jobs (issue 23)

- webhook_endpoints: a user's URL, the topics it wants, and its signing secret, sealed
  at rest (AES-GCM under key_id, as personal data: it is needed to sign, so it cannot be
  hashed; `paysys rotate-keys notifications` re-seals it).
- webhook_deliveries: one per (endpoint, event), a job the sender claims, tries, and
  retries with backoff for up to three days; its log is the API's deliveries list. The
  event's body is kept exactly as it came from Kafka (the signature covers those bytes).
- webhook_routes: a payment.processed event waits here until the deposit's own event
  names who owns the wallet (the processor's event does not); deposit_owners keeps that
  owner for a processor's event that comes after it (two producers: no order between
  them).

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'webhook_endpoints',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('user_id', sa.Uuid(), nullable=False),
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('events', postgresql.ARRAY(sa.String(length=60)), nullable=False),
        sa.Column('secret_sealed', sa.LargeBinary(), nullable=False),
        sa.Column('key_id', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints')),
    )
    op.create_index('ix_webhook_endpoints_user_id', 'webhook_endpoints', ['user_id'])
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('endpoint_id', sa.Uuid(), nullable=False),
        sa.Column('event_id', sa.Uuid(), nullable=False),
        sa.Column('event_type', sa.String(length=60), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(
            ['endpoint_id'], ['webhook_endpoints.id'],
            name=op.f('fk_webhook_deliveries_endpoint_id_webhook_endpoints'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
        sa.UniqueConstraint('endpoint_id', 'event_id', name=op.f('uq_webhook_deliveries_endpoint_id')),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name=op.f('ck_webhook_deliveries_status')
        ),
    )
    op.create_index(
        'ix_webhook_deliveries_due', 'webhook_deliveries', ['next_attempt_at'],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        'ix_webhook_deliveries_endpoint', 'webhook_deliveries', ['endpoint_id', 'created_at'],
    )
    op.create_table(
        'webhook_routes',
        sa.Column('transaction_id', sa.Uuid(), nullable=False),
        sa.Column('event_id', sa.Uuid(), nullable=False),
        sa.Column('event_type', sa.String(length=60), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('event_id', name=op.f('pk_webhook_routes')),
    )
    op.create_index('ix_webhook_routes_transaction_id', 'webhook_routes', ['transaction_id'])
    op.create_table(
        'deposit_owners',
        sa.Column('transaction_id', sa.Uuid(), nullable=False),
        sa.Column('user_id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('transaction_id', name=op.f('pk_deposit_owners')),
    )


def downgrade() -> None:
    op.drop_table('deposit_owners')
    op.drop_table('webhook_routes')
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_endpoints')
