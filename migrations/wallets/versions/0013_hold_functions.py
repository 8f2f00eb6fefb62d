"""Holds and captures in one statement each (issue 21)

An authorization's hold and a merchant's capture went through the ORM: an advisory
lock, the hold, the wallets locked, one or two flushes and an insert per event, each a
round trip, the merchant's wallet locked across all of them. Measured under 32 clients
capturing on four merchants: about 5 ms of wallets' time per step, nearly all of it
round trips (each about 1 ms of the process's time on a busy machine), and 30 captures
a second. `hold_funds` and `capture_hold` do the same in one statement, as move_batch
does for transfers, with the same rules as wallets/service.py had them:

- hold_funds: once per transaction id (its advisory lock, then its hold row: asked
  again, the first outcome); both wallets locked in id order; refused for a currency
  mismatch, an inactive wallet, too little available (balance less what is held) or a
  limit (as move_batch counts them); kept as a `refused` hold, or an open one whose
  amount is held and counted against the payer's limits, with its wallet.funds_held.
- capture_hold: the hold taken once (asked again, the first capture's amount); the
  whole hold released and, if it counted, what is not captured given back to the
  windows it was counted in when they are still current; the amount debited and
  credited with their ledger entries; wallet.funds_released, wallet.funds_deducted,
  wallet.funds_added in that order. Refused (nothing kept, the hold stays open) while
  either wallet is inactive.

Each event's envelope comes from the caller, its `data` filled here from the wallet as
updated. Rows back: the outcome, then the changed wallets' states (for the cache).

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATE = """jsonb_build_object(
    'id', w.id::text, 'user_id', w.user_id::text, 'currency', w.currency,
    'balance', w.balance, 'held_balance', w.held_balance, 'status', w.status,
    'version', w.version, 'created_at', w.created_at, 'updated_at', w.updated_at)"""

HOLD_FUNDS = f"""
CREATE FUNCTION hold_funds(
  p_tx uuid, p_src uuid, p_dst uuid, p_amount bigint, p_currency text, p_digits int,
  p_description text, p_now timestamptz, p_maximums jsonb, p_event_id uuid, p_event jsonb
) RETURNS TABLE (result text, reason text, on_wallet uuid, wallet jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  h holds%ROWTYPE;
  s wallets%ROWTYPE;
  d wallets%ROWTYPE;
  why text;
  who uuid;
  today date := (p_now AT TIME ZONE 'UTC')::date;
  this_month date := date_trunc('month', p_now AT TIME ZONE 'UTC')::date;
  maxima jsonb;
  spent_d bigint;
  spent_m bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(p_tx::text, 0));
  SELECT * INTO h FROM holds WHERE transaction_id = p_tx;
  IF FOUND THEN
    IF h.status = 'refused' THEN
      result := 'refused'; reason := h.code; on_wallet := h.wallet_id;
    ELSE
      result := 'held';
    END IF;
    RETURN NEXT; RETURN;
  END IF;
  PERFORM 1 FROM wallets w WHERE w.id IN (p_src, p_dst) ORDER BY w.id FOR UPDATE;
  SELECT * INTO s FROM wallets w WHERE w.id = p_src;
  SELECT * INTO d FROM wallets w WHERE w.id = p_dst;
  IF s.id IS NULL OR d.id IS NULL OR p_src = p_dst THEN
    result := 'missing'; RETURN NEXT; RETURN;
  END IF;
  maxima := p_maximums -> coalesce(s.account_type, 'personal') -> s.currency;
  spent_d := CASE WHEN s.spent_day = today THEN s.spent_today ELSE 0 END;
  spent_m := CASE WHEN s.spent_month = this_month THEN s.spent_this_month ELSE 0 END;
  IF s.currency <> p_currency THEN why := 'CURRENCY_MISMATCH'; who := s.id;
  ELSIF d.currency <> p_currency THEN why := 'CURRENCY_MISMATCH'; who := d.id;
  ELSIF s.status <> 'ACTIVE' THEN why := 'WALLET_INACTIVE'; who := s.id;
  ELSIF d.status <> 'ACTIVE' THEN why := 'WALLET_INACTIVE'; who := d.id;
  ELSIF s.balance - s.held_balance < p_amount THEN why := 'INSUFFICIENT_FUNDS'; who := s.id;
  ELSIF p_amount > least(s.limit_per_transaction, (maxima ->> 0)::bigint)
     OR spent_d + p_amount > least(s.limit_daily, (maxima ->> 1)::bigint)
     OR spent_m + p_amount > least(s.limit_monthly, (maxima ->> 2)::bigint) THEN
    why := 'LIMIT_EXCEEDED'; who := s.id;
  END IF;
  INSERT INTO holds (transaction_id, wallet_id, destination_wallet_id, amount, currency,
                     status, code, description, counted, created_at)
  VALUES (p_tx, p_src, p_dst, p_amount, p_currency,
          CASE WHEN why IS NULL THEN 'open' ELSE 'refused' END, why, p_description,
          why IS NULL, p_now);
  IF why IS NOT NULL THEN
    result := 'refused'; reason := why; on_wallet := who; RETURN NEXT; RETURN;
  END IF;
  UPDATE wallets w SET held_balance = w.held_balance + p_amount, version = w.version + 1,
         updated_at = now(), spent_day = today, spent_today = spent_d + p_amount,
         spent_month = this_month, spent_this_month = spent_m + p_amount
   WHERE w.id = s.id RETURNING w.* INTO s;
  INSERT INTO outbox (event_id, topic, key, payload)
  VALUES (p_event_id, 'wallet.funds_held', s.id::text, jsonb_set(p_event, '{{data}}',
    jsonb_build_object(
      'wallet_id', s.id::text, 'user_id', s.user_id::text, 'transaction_id', p_tx::text,
      'amount', money_text(p_amount, p_digits), 'currency', s.currency,
      'balance', money_text(s.balance, p_digits),
      'held_balance', money_text(s.held_balance, p_digits))));
  result := 'held'; RETURN NEXT;
  RETURN QUERY SELECT 'state'::text, NULL::text, w.id, {STATE} FROM wallets w WHERE w.id = s.id;
END
$$
"""

CAPTURE_HOLD = f"""
CREATE FUNCTION capture_hold(
  p_tx uuid, p_amount bigint, p_exponents jsonb,
  p_released_id uuid, p_released jsonb, p_debit_id uuid, p_debit jsonb,
  p_credit_id uuid, p_credit jsonb
) RETURNS TABLE (result text, reason text, on_wallet uuid, amount bigint, wallet jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  h holds%ROWTYPE;
  s wallets%ROWTYPE;
  d wallets%ROWTYPE;
  digits int;
  day0 date;
  month0 date;
  back bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(p_tx::text, 0));
  SELECT * INTO h FROM holds WHERE transaction_id = p_tx;
  IF NOT FOUND OR h.status = 'refused' THEN
    result := 'none'; RETURN NEXT; RETURN;
  END IF;
  IF h.status = 'captured' THEN
    result := 'captured'; amount := h.captured_amount; RETURN NEXT; RETURN;
  END IF;
  IF h.status <> 'open' THEN
    result := 'ended'; reason := h.status; RETURN NEXT; RETURN;
  END IF;
  IF NOT (0 < p_amount AND p_amount <= h.amount) THEN
    result := 'too_much'; RETURN NEXT; RETURN;
  END IF;
  PERFORM 1 FROM wallets w WHERE w.id IN (h.wallet_id, h.destination_wallet_id)
   ORDER BY w.id FOR UPDATE;
  SELECT * INTO s FROM wallets w WHERE w.id = h.wallet_id;
  SELECT * INTO d FROM wallets w WHERE w.id = h.destination_wallet_id;
  IF d.id IS NULL OR s.status <> 'ACTIVE' OR d.status <> 'ACTIVE' THEN
    result := 'refused'; reason := 'WALLET_INACTIVE';
    on_wallet := CASE WHEN d.id IS NULL OR s.status <> 'ACTIVE' THEN s.id ELSE d.id END;
    RETURN NEXT; RETURN;
  END IF;
  digits := (p_exponents ->> h.currency)::int;
  day0 := (h.created_at AT TIME ZONE 'UTC')::date;
  month0 := date_trunc('month', h.created_at AT TIME ZONE 'UTC')::date;
  back := CASE WHEN h.counted THEN h.amount - p_amount ELSE 0 END;
  -- The whole hold released (its event shows the balance before the debit) ...
  INSERT INTO outbox (event_id, topic, key, payload)
  VALUES (p_released_id, 'wallet.funds_released', s.id::text, jsonb_set(p_released, '{{data}}',
    jsonb_build_object(
      'wallet_id', s.id::text, 'user_id', s.user_id::text, 'transaction_id', p_tx::text,
      'amount', money_text(h.amount, digits), 'currency', s.currency,
      'balance', money_text(s.balance, digits),
      'held_balance', money_text(s.held_balance - h.amount, digits))));
  -- ... then the amount moved, as a transfer moves it.
  UPDATE wallets w SET held_balance = w.held_balance - h.amount,
         balance = w.balance - p_amount, version = w.version + 1, updated_at = now(),
         spent_today = CASE WHEN w.spent_day = day0 THEN greatest(0, w.spent_today - back)
                            ELSE w.spent_today END,
         spent_this_month = CASE WHEN w.spent_month = month0
                                 THEN greatest(0, w.spent_this_month - back)
                                 ELSE w.spent_this_month END
   WHERE w.id = s.id RETURNING w.* INTO s;
  UPDATE wallets w SET balance = w.balance + p_amount, version = w.version + 1,
         updated_at = now()
   WHERE w.id = d.id RETURNING w.* INTO d;
  UPDATE holds SET status = 'captured', captured_amount = p_amount, updated_at = now()
   WHERE transaction_id = p_tx;
  INSERT INTO ledger_entries (wallet_id, transaction_id, operation, amount, balance_after,
                              kind, description, counterparty_wallet_id)
  VALUES (s.id, p_tx, 'debit', -p_amount, s.balance, 'payment', h.description, d.id),
         (d.id, p_tx, 'credit', p_amount, d.balance, 'payment', h.description, s.id);
  INSERT INTO outbox (event_id, topic, key, payload)
  VALUES (p_debit_id, 'wallet.funds_deducted', s.id::text, jsonb_set(p_debit, '{{data}}',
    jsonb_build_object(
      'wallet_id', s.id::text, 'user_id', s.user_id::text, 'transaction_id', p_tx::text,
      'amount', money_text(p_amount, digits), 'currency', s.currency,
      'balance', money_text(s.balance, digits))));
  INSERT INTO outbox (event_id, topic, key, payload)
  VALUES (p_credit_id, 'wallet.funds_added', d.id::text, jsonb_set(p_credit, '{{data}}',
    jsonb_build_object(
      'wallet_id', d.id::text, 'user_id', d.user_id::text, 'transaction_id', p_tx::text,
      'amount', money_text(p_amount, digits), 'currency', d.currency,
      'balance', money_text(d.balance, digits))));
  result := 'captured'; amount := p_amount; RETURN NEXT;
  amount := NULL;
  RETURN QUERY SELECT 'state'::text, NULL::text, w.id, NULL::bigint, {STATE}
    FROM wallets w WHERE w.id IN (s.id, d.id);
END
$$
"""


def upgrade() -> None:
    op.execute(HOLD_FUNDS)
    op.execute(CAPTURE_HOLD)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION capture_hold(uuid, bigint, jsonb, uuid, jsonb, uuid, jsonb, uuid, jsonb)"
    )
    op.execute(
        "DROP FUNCTION hold_funds(uuid, uuid, uuid, bigint, text, int, text, timestamptz, "
        "jsonb, uuid, jsonb)"
    )
