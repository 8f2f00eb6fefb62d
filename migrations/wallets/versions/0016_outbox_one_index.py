"""The outboxes lose their second index on id (issue 21)

`ix_outbox_unpublished` and `ix_records_outbox_unpublished` index `id` where
`published_at IS NULL`: every row, since a relay deletes the rows it published and never
sets `published_at`. The primary key is the same index; each event and record paid for
both (an insert into each, and their dead entries to vacuum). The relays' scans go by
the primary key.

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("outbox", "records_outbox")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP INDEX IF EXISTS ix_{table}_unpublished")


def downgrade() -> None:
    for table in TABLES:
        op.execute(
            f"DO $$ BEGIN IF to_regclass('{table}') IS NOT NULL THEN "
            f"CREATE INDEX IF NOT EXISTS ix_{table}_unpublished ON {table} (id) "
            f"WHERE published_at IS NULL; END IF; END $$"
        )
