"""hold_batch(): many authorizations' holds in one statement (issue 21)

Authorizations (manual-capture payments) went to wallets one by one, each hold its own
call, statement and commit, while transfers and payments went in batches. hold_batch
takes a batch of them in one database transaction: hold_funds (migration 0013) for each,
in order, with its rules and its idempotency per transaction id, each keeping its own
outcome. Locks, so that batches never deadlock with each other nor with hold_funds,
capture_hold or move_batch: every transaction id's advisory lock first (ordered by key,
as hold_funds and capture_hold take theirs before any wallet), then every wallet of the
batch in id order (as move_batch takes them).

Rows back: per hold, in order, its item (0-based), result (held, refused with reason and
on_wallet, missing) and then the state rows hold_funds gives (item repeated, result
'state', the wallet as JSON).

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOLD_BATCH = """
CREATE FUNCTION hold_batch(
  p_tx uuid[], p_src uuid[], p_dst uuid[], p_amount bigint[], p_currency text[],
  p_digits int[], p_description text[], p_now timestamptz, p_maximums jsonb,
  p_event_ids uuid[], p_events jsonb[]
) RETURNS TABLE (item int, result text, reason text, on_wallet uuid, wallet jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  lock_key bigint;
BEGIN
  FOR lock_key IN
    SELECT DISTINCT hashtextextended(t::text, 0) FROM unnest(p_tx) AS t ORDER BY 1
  LOOP
    PERFORM pg_advisory_xact_lock(lock_key);
  END LOOP;
  PERFORM 1 FROM wallets w WHERE w.id = ANY(p_src || p_dst) ORDER BY w.id FOR UPDATE;
  FOR k IN 1..coalesce(cardinality(p_tx), 0) LOOP
    RETURN QUERY
    SELECT k - 1, h.result, h.reason, h.on_wallet, h.wallet
      FROM hold_funds(p_tx[k], p_src[k], p_dst[k], p_amount[k], p_currency[k], p_digits[k],
                      p_description[k], p_now, p_maximums, p_event_ids[k], p_events[k]) h;
  END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(HOLD_BATCH)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION hold_batch(uuid[], uuid[], uuid[], bigint[], text[], int[], text[], "
        "timestamptz, jsonb, uuid[], jsonb[])"
    )
