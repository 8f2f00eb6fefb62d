"""audit outbox becomes the records outbox (audit, logs and other MongoDB records)

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written before the expand/contract rule (src/paysys_dev/expand_contract.py), for
# upgrades that stopped every replica first; kept as it was applied.
CONTRACT_STEP = "historical: before the expand/contract rule, for stop-the-world upgrades"


def upgrade() -> None:
    op.rename_table('audit_outbox', 'records_outbox')
    op.execute('ALTER TABLE records_outbox RENAME CONSTRAINT pk_audit_outbox TO pk_records_outbox')
    op.execute(
        'ALTER TABLE records_outbox RENAME CONSTRAINT uq_audit_outbox_event_id'
        ' TO uq_records_outbox_event_id'
    )
    op.execute('ALTER INDEX ix_audit_outbox_unpublished RENAME TO ix_records_outbox_unpublished')
    # The topic of a record is now the MongoDB collection it goes to.
    op.execute("UPDATE records_outbox SET topic = 'audit_log' WHERE topic = 'audit'")


def downgrade() -> None:
    op.execute("UPDATE records_outbox SET topic = 'audit' WHERE topic = 'audit_log'")
    op.execute('ALTER INDEX ix_records_outbox_unpublished RENAME TO ix_audit_outbox_unpublished')
    op.execute(
        'ALTER TABLE records_outbox RENAME CONSTRAINT uq_records_outbox_event_id'
        ' TO uq_audit_outbox_event_id'
    )
    op.execute('ALTER TABLE records_outbox RENAME CONSTRAINT pk_records_outbox TO pk_audit_outbox')
    op.rename_table('records_outbox', 'audit_outbox')
