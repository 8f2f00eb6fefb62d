"""The invariants `make chaos` checks, as pure functions of what the run left behind.

Each takes rows already read (PostgreSQL, the processor's own records, Kafka, the mail
folder: `run_messages` is the one reader here) and returns (check, violations, notes).
Nothing else here reads anything: the unit
tests (tests/unit/test_chaos_invariants.py) feed each one a crafted broken state and
see it count the break, so a check that cannot fail cannot hide here.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

Result = tuple[str, int, str]

WALLET_TOPICS = ("wallet.funds_added", "wallet.funds_deducted")


@dataclass(frozen=True)
class Tx:
    id: str
    type: str  # deposit | transfer | payment | refund
    status: str  # COMPLETED | FAILED (anything else is "in flight", checked elsewhere)
    amount: int
    currency: str
    source: str | None  # wallet ids: no source for a deposit (from a card), no
    destination: str | None  # destination for a refund to a card
    captured: int | None = None  # a manual-capture payment's capture, once completed
    manual: bool = False  # a manual-capture payment (authorized first)

    @property
    def moved(self) -> int:
        """What the transaction moves when it completes."""
        return self.amount if self.captured is None else self.captured


@dataclass(frozen=True)
class HoldRow:
    """wallets' record of an authorization's hold."""

    tx_id: str
    wallet_id: str
    amount: int
    status: str  # open | captured | released | refused
    captured: int | None


@dataclass(frozen=True)
class CardRefund:
    """The card processor's own record of a refund to a card (its id: the refund's)."""

    tx_id: str
    amount: int
    currency: str
    status: str  # succeeded | failed


@dataclass(frozen=True)
class Leg:
    """One ledger row."""

    id: int  # its position: the ledger's id, in commit order per wallet
    tx_id: str
    wallet_id: str
    amount: int  # signed


@dataclass(frozen=True)
class Charge:
    """The card processor's own record of a transaction's charge."""

    tx_id: str
    amount: int
    currency: str
    status: str  # succeeded | declined | failed | voided | refunded


@dataclass(frozen=True)
class WalletEvent:
    """A wallet.funds_* event read back from Kafka (duplicates by event_id removed)."""

    topic: str
    wallet_id: str
    tx_id: str
    event_id: str


@dataclass(frozen=True)
class Spend:
    """Money that counted against a wallet's limits: a moved transfer or payment, or an
    authorization (what it holds while open, what was captured once captured), on the
    UTC day it was counted."""

    wallet_id: str
    amount: int
    day: date


def limits_held(
    spends: Iterable[Spend], limits: Mapping[str, tuple[int | None, int | None, int | None]]
) -> Result:
    """No spend above its wallet's per-transaction limit, and no UTC day or month whose
    spends add up past its limit (reaching it exactly is allowed)."""
    days: dict[tuple[str, date], int] = collections.Counter()
    months: dict[tuple[str, date], int] = collections.Counter()
    over = counted = 0
    for s in spends:
        if s.wallet_id not in limits:
            continue
        counted += 1
        per_tx = limits[s.wallet_id][0]
        over += per_tx is not None and s.amount > per_tx
        days[(s.wallet_id, s.day)] += s.amount
        months[(s.wallet_id, s.day.replace(day=1))] += s.amount
    for windows, i in ((days, 1), (months, 2)):
        for (wallet, _), total in windows.items():
            limit = limits[wallet][i]
            over += limit is not None and total > limit
    return (
        "no spending limit passed (per transaction, UTC day, UTC month)",
        over,
        f"{len(limits)} wallets with limits, {counted} spends over {len(days)} wallet-days",
    )


def legs_match_outcomes(txs: Mapping[str, Tx], legs: Iterable[Leg]) -> Result:
    """Per (transaction, wallet): a FAILED or VOIDED transaction nets 0 on every wallet;
    a COMPLETED one nets -amount (a captured payment: what was captured) on its source
    and as much on its destination, and nothing anywhere else. A ledger row of no known
    transaction is a violation too."""
    net: dict[str, dict[str, int]] = collections.defaultdict(lambda: collections.defaultdict(int))
    orphans = 0
    for leg in legs:
        if leg.tx_id not in txs:
            orphans += 1
            continue
        net[leg.tx_id][leg.wallet_id] += leg.amount
    wrong = 0
    for tx in txs.values():
        want: dict[str, int] = collections.defaultdict(int)
        if tx.status == "COMPLETED":
            if tx.source is not None:
                want[tx.source] -= tx.moved
            if tx.destination is not None:
                want[tx.destination] += tx.moved
        got = {w: n for w, n in net.get(tx.id, {}).items() if n}
        if got != {w: n for w, n in want.items() if n}:
            wrong += 1
    return (
        "each transaction's ledger matches its outcome, per wallet (FAILED nets 0 on each)",
        wrong + orphans,
        f"{len(txs)} transactions"
        + (f"; {orphans} ledger rows of no transaction" if orphans else ""),
    )


# What a manual-capture payment's hold must be, by the transaction's status.
HOLD_OF: dict[str, set[str | None]] = {
    "AUTHORIZED": {"open"},
    "COMPLETED": {"captured"},
    "VOIDED": {"released"},
    "FAILED": {"refused", None},  # refused by wallets, or refused before any hold
}


def holds_match(txs: Mapping[str, Tx], holds: Iterable[HoldRow], held: Mapping[str, int]) -> Result:
    """Every wallet's held_balance is the sum of its open holds; every manual-capture
    payment's hold agrees with its status (a completed one captured for what the
    transaction says it captured, a voided one released, a failed one refused or never
    held); no hold belongs to anything else, or to another wallet."""
    by_tx = {h.tx_id: h for h in holds}
    open_sum: dict[str, int] = collections.Counter()
    wrong = 0
    for h in by_tx.values():
        if h.status == "open":
            open_sum[h.wallet_id] += h.amount
        tx = txs.get(h.tx_id)
        if tx is None or not tx.manual or tx.source != h.wallet_id or tx.amount != h.amount:
            wrong += 1
    for tx in txs.values():
        if not tx.manual:
            continue
        hold = by_tx.get(tx.id)
        agrees = (hold.status if hold else None) in HOLD_OF.get(tx.status, set())
        if not agrees or (tx.status == "COMPLETED" and hold and hold.captured != tx.captured):
            wrong += 1
    wallets = set(held) | set(open_sum)
    off = sum(1 for w in wallets if held.get(w, 0) != open_sum.get(w, 0))
    return (
        "held = sum of open holds per wallet; each hold agrees with its authorization",
        wrong + off,
        f"{sum(1 for t in txs.values() if t.manual)} authorizations, {len(by_tx)} holds",
    )


def money_conserved(
    txs: Mapping[str, Tx],
    charges: Iterable[Charge],
    balances: Mapping[str, int],
    card_refunds: Iterable[CardRefund] = (),
) -> Result:
    """Against the card processor's own records, per currency: what it charged and kept
    (succeeded charges less the card refunds that succeeded) = the completed deposits
    less the completed refunds to cards = the sum of balances. Every completed deposit
    has a kept charge of its amount; every failed one's charge, if any, was declined,
    failed, voided or refunded; no kept charge is of anything else; every completed
    refund to a card has its succeeded card refund of its amount, and no card refund
    succeeded for anything else (money back on a card and in the wallet too)."""
    kept: dict[str, int] = collections.Counter()
    deposited: dict[str, int] = collections.Counter()
    by_tx = {c.tx_id: c for c in charges}
    refunded = {r.tx_id: r for r in card_refunds}
    wrong = 0
    for c in by_tx.values():
        if c.status == "succeeded":
            kept[c.currency] += c.amount
            tx = txs.get(c.tx_id)
            if tx is None or tx.type != "deposit" or tx.status != "COMPLETED":
                wrong += 1  # money taken from a card for nothing
    for r in refunded.values():
        if r.status == "succeeded":
            kept[r.currency] -= r.amount
            tx = txs.get(r.tx_id)
            if tx is None or tx.type != "refund" or tx.status != "COMPLETED":
                wrong += 1  # money given back to a card that no wallet gave
    for tx in txs.values():
        if tx.type == "deposit":
            charge = by_tx.get(tx.id)
            if tx.status == "COMPLETED":
                deposited[tx.currency] += tx.amount
                if charge is None or charge.status != "succeeded" or charge.amount != tx.amount:
                    wrong += 1  # money in a wallet that no card paid for
        elif tx.type == "refund" and tx.destination is None and tx.status == "COMPLETED":
            deposited[tx.currency] -= tx.amount
            back = refunded.get(tx.id)
            if back is None or back.status != "succeeded" or back.amount != tx.amount:
                wrong += 1  # money out of a wallet that no card got back
    currencies = set(kept) | set(deposited) | {c for c, v in balances.items() if v}
    unequal = [c for c in currencies if not (kept[c] == deposited[c] == balances.get(c, 0))]
    notes = "; ".join(
        f"{c}: charged and kept {kept[c]}, deposited net {deposited[c]}, "
        f"balances {balances.get(c, 0)}"
        for c in sorted(currencies)
    )
    return (
        "money conserved: kept card charges = completed deposits = sum of balances",
        wrong + len(unequal),
        notes,
    )


def events_match_ledger(legs: Iterable[Leg], events: Iterable[WalletEvent]) -> Result:
    """Every ledger row has exactly one wallet event (funds_added for a credit,
    funds_deducted for a debit) and every money event has its ledger row: counted both
    ways, per (wallet, transaction, direction)."""
    want = collections.Counter(
        (leg.wallet_id, leg.tx_id, leg.amount > 0) for leg in legs if leg.amount
    )
    got = collections.Counter(
        (e.wallet_id, e.tx_id, e.topic == "wallet.funds_added")
        for e in {e.event_id: e for e in events}.values()
    )
    missing = sum((want - got).values())
    extra = sum((got - want).values())
    return (
        "every ledger row has its wallet event, every wallet event its ledger row",
        missing + extra,
        f"{sum(want.values())} ledger rows; {missing} without an event, "
        f"{extra} events without a row",
    )


def events_in_commit_order(
    legs: Iterable[Leg], sequences: Mapping[tuple[str, str], list[str]]
) -> Result:
    """Each wallet's events, per topic, in the order of its ledger (its commits). An
    event with no ledger row counts as out of order here too (and above)."""
    position = {(leg.wallet_id, leg.tx_id, leg.amount > 0): leg.id for leg in legs}
    wrong = checked = 0
    for (topic, wallet), tx_ids in sequences.items():
        added = topic == "wallet.funds_added"
        order = [position.get((wallet, t, added)) for t in tx_ids]
        checked += len(order)
        wrong += sum(1 for p in order if p is None)
        known = [p for p in order if p is not None]
        wrong += sum(1 for a, b in itertools.pairwise(known) if b < a)
    return (
        "each wallet's events in commit order on Kafka (per topic, by its ledger)",
        wrong,
        f"{checked} wallet events",
    )


def one_answer_per_key(answers: Iterable[tuple[Any, ...]]) -> Result:
    """(user, operation, key, HTTP status, what the answer said, transaction id) of every
    keyed call. The final answers of one key (200, 201 or 400: those a key keeps) are
    one answer: the first request's and every replay's, the same status, the same
    transaction, and the same word for it (its status, or the error's code). Final: a
    success, or a 400 that names its transaction (one that FAILED). Not final: in
    progress (409), another body (422), unavailable (503), no answer, a refusal before
    any transaction (a refund beyond what is left: the key is not kept), and a refused
    capture (its key is let go: the authorization waits again, and a later capture with
    that key may go through)."""
    said: dict[tuple[Any, ...], set[tuple[Any, ...]]] = collections.defaultdict(set)
    for user, op, key, status, what, tx in answers:
        final = status in (200, 201) or (status == 400 and tx is not None and op != "capture")
        if key is not None and final:
            said[(user, op, key)].add((status, what, tx))
    differ = [(k, v) for k, v in said.items() if len(v) > 1]
    return (
        "one answer per Idempotency-Key (the first request's and every replay's)",
        len(differ),
        "; ".join(f"{op} {key}: {sorted(map(str, v))}" for (_, op, key), v in differ[:3])
        or f"{len(said)} keys answered",
    )


def emails_sent_once(messages: Iterable[tuple[str, str]], resend_allowance: int) -> Result:
    """(recipient, Message-ID) of every message the run's people received. One message
    per notification: a second copy with the same Message-ID is the documented resend of
    a sender killed between the server's acceptance and its record (at most one batch
    per such fault: `resend_allowance`); beyond that, or with no such fault, each copy
    is a violation."""
    copies = collections.Counter(mid for _, mid in messages)
    resent = sum(n - 1 for n in copies.values() if n > 1)
    return (
        "no email sent twice (beyond one batch resent per killed sender)",
        max(0, resent - resend_allowance),
        f"{len(copies)} notifications; {resent} resent with the same Message-ID "
        f"(allowed after this run's faults: {resend_allowance})",
    )


def run_messages(summaries: Iterable[dict[str, Any]], addresses: set[str]) -> list[tuple[str, str]]:
    """(recipient, Message-ID) of the messages this run's people received, from the
    summaries Mailpit gives of the run's messages (paysys_dev.inbox), whatever they hold
    (a message with no Message-ID counts by Mailpit's own id), never a crash on a
    message the check did not expect."""
    found = []
    for m in summaries:
        try:
            to = [str(a.get("Address", "")).lower() for a in m.get("To") or []]
            key = str(m.get("MessageID") or m["ID"])
        except (AttributeError, KeyError, TypeError):
            continue  # not a message this run could have sent
        if any(a in addresses for a in to):
            found.append((to[0], key))
    return found
