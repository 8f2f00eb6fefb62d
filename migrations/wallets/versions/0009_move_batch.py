"""move_batch(): many transfers in one statement, applied line by line

The money path in batches (issue 21): wallets applies a whole batch of moves in one
database transaction and one round trip. Every wallet of the batch is locked first, in
id order (two batches never deadlock), then each move is checked and applied in order:
a move sees the balances the moves before it left, a refusal touches nothing else, and
each keeps its outcome row (idempotent per transaction id). The ledger rows, outcome rows
and events are inserted once, at the end, for the whole batch.

A function, not a statement sent from Python: the moves must run one after another on
the locked rows (a later move may spend what an earlier one brought in), which one SQL
statement cannot express, and sending them one by one would cost a round trip each.

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY_TEXT = """
CREATE FUNCTION money_text(amount bigint, digits int) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN digits = 0 THEN amount::text
         ELSE (amount / (10::bigint ^ digits)::bigint)::text || '.'
              || lpad((amount % (10::bigint ^ digits)::bigint)::text, digits, '0') END
$$
"""

# Arguments are parallel arrays, one element per move (p_digits: the currency's minor
# unit digits; p_debit_*/p_credit_*: each side's event envelope, its `data` filled here
# from the wallet as updated). Rows back: one per move, in order (item = its 0-based
# index; result moved, refused (with reason and on_wallet), kept_moved or kept_refused
# (an outcome from an earlier call), missing (a wallet that does not exist) or legacy
# (money moved for it under an earlier release: the caller finishes it)); then one row
# per wallet whose balance changed, result 'state', with the wallet as JSON.
MOVE_BATCH = """
CREATE FUNCTION move_batch(
  p_tx uuid[], p_src uuid[], p_dst uuid[], p_amount bigint[], p_currency text[],
  p_digits int[], p_debit_ids uuid[], p_debit_payloads jsonb[], p_credit_ids uuid[],
  p_credit_payloads jsonb[], p_debit_topic text, p_credit_topic text
) RETURNS TABLE (item int, result text, reason text, on_wallet uuid, wallet jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  n int := coalesce(cardinality(p_tx), 0);
  s wallets%ROWTYPE;
  d wallets%ROWTYPE;
  kept transfer_outcomes%ROWTYPE;
  o_tx uuid[] := '{}'; o_res text[] := '{}'; o_wallet uuid[] := '{}'; o_code text[] := '{}';
  l_wallet uuid[] := '{}'; l_tx uuid[] := '{}'; l_op text[] := '{}';
  l_amount bigint[] := '{}'; l_after bigint[] := '{}';
  e_id uuid[] := '{}'; e_topic text[] := '{}'; e_key text[] := '{}'; e_payload jsonb[] := '{}';
  touched uuid[] := '{}';
  why text;
  who uuid;
BEGIN
  -- Every wallet of the batch, locked in id order, before anything else.
  PERFORM 1 FROM wallets w WHERE w.id = ANY(p_src || p_dst) ORDER BY w.id FOR UPDATE;
  FOR k IN 1..n LOOP
    item := k - 1; reason := NULL; on_wallet := NULL; wallet := NULL;
    -- Each statement below reads the latest committed state (READ COMMITTED, after the
    -- locks): a twin of this call that ran first has left its outcome row by now.
    SELECT * INTO kept FROM transfer_outcomes t WHERE t.transaction_id = p_tx[k];
    IF FOUND THEN
      result := 'kept_' || kept.outcome; reason := kept.code; on_wallet := kept.wallet_id;
      RETURN NEXT; CONTINUE;
    END IF;
    IF EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = p_tx[k]) THEN
      result := 'legacy'; RETURN NEXT; CONTINUE;
    END IF;
    SELECT * INTO s FROM wallets w WHERE w.id = p_src[k];
    SELECT * INTO d FROM wallets w WHERE w.id = p_dst[k];
    IF s.id IS NULL OR d.id IS NULL OR s.id = d.id THEN
      result := 'missing'; RETURN NEXT; CONTINUE;
    END IF;
    why := NULL;
    IF s.currency <> p_currency[k] THEN why := 'CURRENCY_MISMATCH'; who := s.id;
    ELSIF d.currency <> p_currency[k] THEN why := 'CURRENCY_MISMATCH'; who := d.id;
    ELSIF s.status <> 'ACTIVE' THEN why := 'WALLET_INACTIVE'; who := s.id;
    ELSIF d.status <> 'ACTIVE' THEN why := 'WALLET_INACTIVE'; who := d.id;
    ELSIF s.balance < p_amount[k] THEN why := 'INSUFFICIENT_FUNDS'; who := s.id;
    END IF;
    o_tx := array_append(o_tx, p_tx[k]);
    IF why IS NOT NULL THEN
      o_res := array_append(o_res, 'refused'::text);
      o_wallet := array_append(o_wallet, who);
      o_code := array_append(o_code, why);
      result := 'refused'; reason := why; on_wallet := who;
      RETURN NEXT; CONTINUE;
    END IF;
    UPDATE wallets w SET balance = w.balance - p_amount[k], version = w.version + 1,
           updated_at = now()
     WHERE w.id = s.id RETURNING w.* INTO s;
    UPDATE wallets w SET balance = w.balance + p_amount[k], version = w.version + 1,
           updated_at = now()
     WHERE w.id = d.id RETURNING w.* INTO d;
    o_res := array_append(o_res, 'moved'::text);
    o_wallet := array_append(o_wallet, NULL::uuid);
    o_code := array_append(o_code, NULL::text);
    l_wallet := l_wallet || ARRAY[s.id, d.id];
    l_tx := l_tx || ARRAY[p_tx[k], p_tx[k]];
    l_op := l_op || ARRAY['debit', 'credit'];
    l_amount := l_amount || ARRAY[-p_amount[k], p_amount[k]];
    l_after := l_after || ARRAY[s.balance, d.balance];
    e_id := e_id || ARRAY[p_debit_ids[k], p_credit_ids[k]];
    e_topic := e_topic || ARRAY[p_debit_topic, p_credit_topic];
    e_key := e_key || ARRAY[s.id::text, d.id::text];
    e_payload := e_payload || ARRAY[
      jsonb_set(p_debit_payloads[k], '{data}', jsonb_build_object(
        'wallet_id', s.id::text, 'user_id', s.user_id::text, 'transaction_id', p_tx[k]::text,
        'amount', money_text(p_amount[k], p_digits[k]), 'currency', s.currency,
        'balance', money_text(s.balance, p_digits[k]))),
      jsonb_set(p_credit_payloads[k], '{data}', jsonb_build_object(
        'wallet_id', d.id::text, 'user_id', d.user_id::text, 'transaction_id', p_tx[k]::text,
        'amount', money_text(p_amount[k], p_digits[k]), 'currency', d.currency,
        'balance', money_text(d.balance, p_digits[k])))];
    touched := touched || ARRAY[s.id, d.id];
    result := 'moved'; RETURN NEXT;
  END LOOP;
  -- A duplicate transaction id in one batch fails here (the outcome's primary key), and
  -- with it the whole batch: nothing moves twice.
  INSERT INTO transfer_outcomes (transaction_id, outcome, wallet_id, code)
  SELECT * FROM unnest(o_tx, o_res, o_wallet, o_code);
  INSERT INTO ledger_entries (wallet_id, transaction_id, operation, amount, balance_after)
  SELECT * FROM unnest(l_wallet, l_tx, l_op, l_amount, l_after);
  INSERT INTO outbox (event_id, topic, key, payload)
  SELECT * FROM unnest(e_id, e_topic, e_key, e_payload);
  RETURN QUERY
  SELECT NULL::int, 'state'::text, NULL::text, w.id, jsonb_build_object(
           'id', w.id::text, 'user_id', w.user_id::text, 'currency', w.currency,
           'balance', w.balance, 'status', w.status, 'version', w.version,
           'created_at', w.created_at, 'updated_at', w.updated_at)
  FROM wallets w WHERE w.id = ANY(touched);
END
$$
"""


def upgrade() -> None:
    op.execute(MONEY_TEXT)
    op.execute(MOVE_BATCH)


def downgrade() -> None:
    op.execute("DROP FUNCTION move_batch")
    op.execute("DROP FUNCTION money_text")
