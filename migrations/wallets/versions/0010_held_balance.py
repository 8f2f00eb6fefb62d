"""held_balance: money reserved by open authorizations; spending checks what is available

A wallet's `held_balance` is the part of its balance that open authorizations reserve
(issue 22); `balance - held_balance` is what can be spent, held or refunded from it.
The database keeps 0 <= held_balance <= balance. move_batch now refuses a move that
the available balance cannot pay, and reports held_balance with each wallet's state.

Revision ID: 0010
Revises: 0009
"""
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = '0010'
down_revision: str | Sequence[str] | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _previous():  # 0009's statements, the base of this one's changes
    path = Path(__file__).with_name('0009_move_batch.py')
    spec = importlib.util.spec_from_file_location('wallets_0009', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


AVAILABLE = ("ELSIF s.balance < p_amount[k] THEN",
             "ELSIF s.balance - s.held_balance < p_amount[k] THEN")
STATE = ("'balance', w.balance, 'status', w.status,",
         "'balance', w.balance, 'held_balance', w.held_balance, 'status', w.status,")


def _function(text: str, *changes: tuple[str, str]) -> str:
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    return text.replace('CREATE FUNCTION', 'CREATE OR REPLACE FUNCTION', 1)


def upgrade() -> None:
    op.execute('ALTER TABLE wallets ADD COLUMN held_balance bigint NOT NULL DEFAULT 0')
    op.execute(
        'ALTER TABLE wallets ADD CONSTRAINT ck_wallets_held_within_balance '
        'CHECK (held_balance >= 0 AND held_balance <= balance)'
    )
    op.execute(_function(_previous().MOVE_BATCH, AVAILABLE, STATE))


def downgrade() -> None:
    op.execute(_function(_previous().MOVE_BATCH))
    op.execute('ALTER TABLE wallets DROP CONSTRAINT ck_wallets_held_within_balance')
    op.execute('ALTER TABLE wallets DROP COLUMN held_balance')
