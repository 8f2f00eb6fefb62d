"""Statements, balances at an instant, spending limits (issue 24)

- Ledger entries learn what they are for when the money moves (wallets never reads the
  transactions' tables): the transaction's type, its description and the other wallet.
  Their `created_at` is now the clock at the insert, taken under the wallet's lock, so a
  wallet's entries are in time order as they are in id order, and "the balance at an
  instant" is the balance_after of the last entry before it (an index on (wallet_id,
  created_at, id) finds it in one step on a wallet with millions of entries).
- Wallets keep their owner's account type (for the maximums of their limits), the
  owner's own limits (NULL: the maximum), and what was spent in the current UTC day and
  month (a window whose start is not today's counts as 0).
- move_batch gains four arguments (each move's kind and description, the instant the
  windows are counted at, the maximums per account type and currency) and checks the
  limits in the same statement that checks the available balance, under the source's
  lock: concurrent moves can never pass a limit together. The 12-argument function of
  0010 stays, for replicas of the previous release during a rollout (expand/contract).
- Holds keep their description (for the capture's entries) and whether they counted
  against the limits (holds from before this release did not: nothing to give back).

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Arguments as move_batch of 0009/0010, then: p_kind (transfer, payment or refund: a
# refund does not count against limits), p_description, p_now (the instant whose UTC day
# and month are counted), p_maximums ({"personal": {"USD": [per_transaction, daily,
# monthly], ...}, "merchant": {...}}, minor units; a missing entry: no maximum).
MOVE_BATCH = """
CREATE FUNCTION move_batch(
  p_tx uuid[], p_src uuid[], p_dst uuid[], p_amount bigint[], p_currency text[],
  p_digits int[], p_debit_ids uuid[], p_debit_payloads jsonb[], p_credit_ids uuid[],
  p_credit_payloads jsonb[], p_debit_topic text, p_credit_topic text,
  p_kind text[], p_description text[], p_now timestamptz, p_maximums jsonb
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
  l_kind text[] := '{}'; l_desc text[] := '{}'; l_other uuid[] := '{}';
  e_id uuid[] := '{}'; e_topic text[] := '{}'; e_key text[] := '{}'; e_payload jsonb[] := '{}';
  touched uuid[] := '{}';
  why text;
  who uuid;
  today date := (p_now AT TIME ZONE 'UTC')::date;
  this_month date := date_trunc('month', p_now AT TIME ZONE 'UTC')::date;
  counts boolean;
  maxima jsonb;
  spent_d bigint;
  spent_m bigint;
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
    -- Money leaving by transfer or payment counts against the source's limits; a
    -- refund does not. least() ignores NULLs: the owner's limit, else the maximum, else
    -- none; a comparison with NULL (no limit) is never true.
    counts := p_kind[k] IS DISTINCT FROM 'refund';
    maxima := p_maximums -> coalesce(s.account_type, 'personal') -> s.currency;
    spent_d := CASE WHEN s.spent_day = today THEN s.spent_today ELSE 0 END;
    spent_m := CASE WHEN s.spent_month = this_month THEN s.spent_this_month ELSE 0 END;
    why := NULL;
    IF s.currency <> p_currency[k] THEN why := 'CURRENCY_MISMATCH'; who := s.id;
    ELSIF d.currency <> p_currency[k] THEN why := 'CURRENCY_MISMATCH'; who := d.id;
    ELSIF s.status <> 'ACTIVE' THEN why := 'WALLET_INACTIVE'; who := s.id;
    ELSIF d.status <> 'ACTIVE' THEN why := 'WALLET_INACTIVE'; who := d.id;
    ELSIF s.balance - s.held_balance < p_amount[k] THEN why := 'INSUFFICIENT_FUNDS'; who := s.id;
    ELSIF counts AND (
        p_amount[k] > least(s.limit_per_transaction, (maxima ->> 0)::bigint)
        OR spent_d + p_amount[k] > least(s.limit_daily, (maxima ->> 1)::bigint)
        OR spent_m + p_amount[k] > least(s.limit_monthly, (maxima ->> 2)::bigint)) THEN
      why := 'LIMIT_EXCEEDED'; who := s.id;
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
           updated_at = now(),
           spent_day = CASE WHEN counts THEN today ELSE w.spent_day END,
           spent_today = CASE WHEN counts THEN spent_d + p_amount[k] ELSE w.spent_today END,
           spent_month = CASE WHEN counts THEN this_month ELSE w.spent_month END,
           spent_this_month = CASE WHEN counts THEN spent_m + p_amount[k]
                                   ELSE w.spent_this_month END
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
    l_kind := l_kind || ARRAY[p_kind[k], p_kind[k]];
    l_desc := l_desc || ARRAY[p_description[k], p_description[k]];
    l_other := l_other || ARRAY[d.id, s.id];
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
  -- created_at: the column's default, clock_timestamp(), row by row in this order.
  INSERT INTO ledger_entries (wallet_id, transaction_id, operation, amount, balance_after,
                              kind, description, counterparty_wallet_id)
  SELECT * FROM unnest(l_wallet, l_tx, l_op, l_amount, l_after, l_kind, l_desc, l_other);
  INSERT INTO outbox (event_id, topic, key, payload)
  SELECT * FROM unnest(e_id, e_topic, e_key, e_payload);
  RETURN QUERY
  SELECT NULL::int, 'state'::text, NULL::text, w.id, jsonb_build_object(
           'id', w.id::text, 'user_id', w.user_id::text, 'currency', w.currency,
           'balance', w.balance, 'held_balance', w.held_balance, 'status', w.status,
           'version', w.version, 'created_at', w.created_at, 'updated_at', w.updated_at)
  FROM wallets w WHERE w.id = ANY(touched);
END
$$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE ledger_entries ADD COLUMN kind varchar(20)")
    op.execute("ALTER TABLE ledger_entries ADD COLUMN description varchar(500)")
    op.execute("ALTER TABLE ledger_entries ADD COLUMN counterparty_wallet_id uuid")
    op.execute("ALTER TABLE ledger_entries ALTER COLUMN created_at SET DEFAULT clock_timestamp()")
    op.execute(
        "CREATE INDEX ix_ledger_entries_wallet_id_created_at "
        "ON ledger_entries (wallet_id, created_at, id)"
    )
    op.execute("ALTER TABLE wallets ADD COLUMN account_type varchar(20)")
    for column in ("limit_per_transaction", "limit_daily", "limit_monthly"):
        op.execute(f"ALTER TABLE wallets ADD COLUMN {column} bigint")
        op.execute(
            f"ALTER TABLE wallets ADD CONSTRAINT ck_wallets_{column}_not_negative "
            f"CHECK ({column} >= 0)"
        )
    op.execute("ALTER TABLE wallets ADD COLUMN spent_day date")
    op.execute("ALTER TABLE wallets ADD COLUMN spent_today bigint NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE wallets ADD COLUMN spent_month date")
    op.execute("ALTER TABLE wallets ADD COLUMN spent_this_month bigint NOT NULL DEFAULT 0")
    op.execute("ALTER TABLE holds ADD COLUMN description varchar(500)")
    op.execute("ALTER TABLE holds ADD COLUMN counted boolean NOT NULL DEFAULT false")
    op.execute(MOVE_BATCH)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION move_batch(uuid[], uuid[], uuid[], bigint[], text[], int[], uuid[], "
        "jsonb[], uuid[], jsonb[], text, text, text[], text[], timestamptz, jsonb)"
    )
    op.execute("ALTER TABLE holds DROP COLUMN counted")
    op.execute("ALTER TABLE holds DROP COLUMN description")
    for column in (
        "spent_this_month",
        "spent_month",
        "spent_today",
        "spent_day",
        "limit_monthly",
        "limit_daily",
        "limit_per_transaction",
        "account_type",
    ):
        op.execute(f"ALTER TABLE wallets DROP COLUMN {column}")
    op.execute("DROP INDEX ix_ledger_entries_wallet_id_created_at")
    op.execute("ALTER TABLE ledger_entries ALTER COLUMN created_at SET DEFAULT now()")
    for column in ("counterparty_wallet_id", "description", "kind"):
        op.execute(f"ALTER TABLE ledger_entries DROP COLUMN {column}")
