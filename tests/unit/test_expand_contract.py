"""Migrations beside running pods (issue 25.4): a migration that drops or renames what
the release before it still uses is refused unless it is marked a contract step."""

from __future__ import annotations

from paysys_dev.expand_contract import destructive, marked_contract, violations
from paysys_dev.stack import ROOT

EXPAND = """
def upgrade() -> None:
    op.add_column('wallets', sa.Column('nickname', sa.String(40), nullable=True))
    op.execute("CREATE INDEX ix_w ON wallets (nickname)")


def downgrade() -> None:
    op.drop_column('wallets', 'nickname')  # a downgrade may remove what it added
"""


def test_every_migration_keeps_the_rule() -> None:
    assert violations(ROOT / "migrations") == {}


def test_adding_is_allowed_and_what_removes_or_renames_is_found() -> None:
    assert destructive(EXPAND) == []
    for body in (
        "op.drop_column('wallets', 'status')",
        "op.drop_table('holds')",
        "op.rename_table('holds', 'reservations')",
        "op.alter_column('wallets', 'status', new_column_name='state')",
        'op.execute("ALTER TABLE wallets DROP COLUMN status")',
        'op.execute("alter table holds rename to reservations")',
        'op.execute("DROP TABLE holds")',
        'op.execute(f"TRUNCATE {TABLE}")',
    ):
        source = f"def upgrade() -> None:\n    {body}\n"
        assert destructive(source), body
        assert not marked_contract(source)
        marked = f'CONTRACT_STEP = "unused since 2.3"\n\n{source}'
        assert marked_contract(marked)
