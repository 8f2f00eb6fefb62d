"""capture_batch(): many captures in one statement (issue 21)

Captures went to wallets one by one, each its own call, statement and commit, every one
of them waiting for its merchant's wallet lock: under 32 clients capturing on four
merchants, capture_hold took 5.6 ms of PostgreSQL's time per call, and a capture cost
about four times a transfer. capture_batch takes a batch of them in one database
transaction: capture_hold (migration 0013) for each, in order, with its rules and its
idempotency per transaction id, each keeping its own outcome. Locks, as hold_batch takes
them (migration 0015), so that batches never deadlock with each other nor with
hold_funds, capture_hold or move_batch: every transaction id's advisory lock first
(ordered by key), then every wallet of the batch's holds in id order.

Rows back: per capture, in order, its item (0-based), result (captured with the amount;
refused with reason and on_wallet; none: no such hold; ended with the hold's status;
too_much), then the state rows capture_hold gives (item repeated, result 'state', the
wallet as JSON).

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CAPTURE_BATCH = """
CREATE FUNCTION capture_batch(
  p_tx uuid[], p_amount bigint[], p_exponents jsonb,
  p_released_ids uuid[], p_released jsonb[], p_debit_ids uuid[], p_debit jsonb[],
  p_credit_ids uuid[], p_credit jsonb[]
) RETURNS TABLE (item int, result text, reason text, on_wallet uuid, amount bigint,
                 wallet jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  lock_key bigint;
BEGIN
  FOR lock_key IN
    SELECT DISTINCT hashtextextended(t::text, 0) FROM unnest(p_tx) AS t ORDER BY 1
  LOOP
    PERFORM pg_advisory_xact_lock(lock_key);
  END LOOP;
  PERFORM 1 FROM wallets w
   WHERE w.id IN (SELECT h.wallet_id FROM holds h WHERE h.transaction_id = ANY(p_tx)
                  UNION
                  SELECT h.destination_wallet_id FROM holds h
                   WHERE h.transaction_id = ANY(p_tx))
   ORDER BY w.id FOR UPDATE;
  FOR k IN 1..coalesce(cardinality(p_tx), 0) LOOP
    RETURN QUERY
    SELECT k - 1, c.result, c.reason, c.on_wallet, c.amount, c.wallet
      FROM capture_hold(p_tx[k], p_amount[k], p_exponents, p_released_ids[k],
                        p_released[k], p_debit_ids[k], p_debit[k], p_credit_ids[k],
                        p_credit[k]) c;
  END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(CAPTURE_BATCH)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION capture_batch(uuid[], bigint[], jsonb, uuid[], jsonb[], uuid[], "
        "jsonb[], uuid[], jsonb[])"
    )
