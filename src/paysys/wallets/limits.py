"""Spending limits: what may leave a wallet per transaction, per UTC day and per UTC
month. The owner's own limits (NULL: the maximum) are never above the maximums of the
account type and currency, which are settings. move_batch (migration 0012) applies the
same rules in SQL for transfers and payments, and hold_funds and capture_hold
(migration 0013) for holds; a hold released (a void, an expiry) gives back here, on the
wallet row locked by the same transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pydantic import BaseModel

from paysys.kit.money import parse_amount
from paysys.wallets.models import Wallet

WINDOWS = ("per_transaction", "daily", "monthly")


class Maximum(BaseModel):
    """One account type's maximums in one currency, as decimal strings."""

    per_transaction: str
    daily: str
    monthly: str


def _same(per_transaction: str, daily: str, monthly: str) -> dict[str, Maximum]:
    two = Maximum(per_transaction=per_transaction, daily=daily, monthly=monthly)
    # JPY has no minor unit: the same sums in yen are a hundred times the digits.
    yen = Maximum(
        per_transaction=per_transaction.replace(".00", "00"),
        daily=daily.replace(".00", "00"),
        monthly=monthly.replace(".00", "00"),
    )
    return {"USD": two, "EUR": two, "GBP": two, "JPY": yen}


# What a consumer wallet app allows a verified person, and a business account more.
DEFAULT_MAXIMUMS: dict[str, dict[str, Maximum]] = {
    "personal": _same("10000.00", "20000.00", "50000.00"),
    "merchant": _same("1000000.00", "5000000.00", "50000000.00"),
}

Triple = tuple[int | None, int | None, int | None]


def minor_maximums(maximums: dict[str, dict[str, Maximum]]) -> dict[str, dict[str, Triple]]:
    """The settings in minor units, as move_batch takes them (per account type, per
    currency: [per_transaction, daily, monthly])."""
    return {
        account_type: {
            currency: (
                parse_amount(m.per_transaction, currency),
                parse_amount(m.daily, currency),
                parse_amount(m.monthly, currency),
            )
            for currency, m in by_currency.items()
        }
        for account_type, by_currency in maximums.items()
    }


DEFAULT_MINOR = minor_maximums(DEFAULT_MAXIMUMS)


def windows(now: datetime) -> tuple[date, date]:
    """The UTC day and month (its first day) that `now` falls in."""
    day = now.astimezone(UTC).date()
    return day, day.replace(day=1)


def _least(*values: int | None) -> int | None:
    """As SQL's least(): the smallest of those given; None when none is (no limit)."""
    known = [v for v in values if v is not None]
    return min(known) if known else None


@dataclass(frozen=True)
class Standing:
    """A wallet's limits as they apply now, what is spent against them, the maximums."""

    limits: Triple
    spent_today: int
    spent_this_month: int
    maximum: Triple


def maximum_of(wallet: Wallet, maximums: dict[str, dict[str, Triple]]) -> Triple:
    return maximums.get(wallet.account_type or "personal", {}).get(
        wallet.currency, (None, None, None)
    )


def standing(wallet: Wallet, maximums: dict[str, dict[str, Triple]], now: datetime) -> Standing:
    day, month = windows(now)
    maximum = maximum_of(wallet, maximums)
    own = (wallet.limit_per_transaction, wallet.limit_daily, wallet.limit_monthly)
    return Standing(
        limits=(
            _least(own[0], maximum[0]),
            _least(own[1], maximum[1]),
            _least(own[2], maximum[2]),
        ),
        spent_today=wallet.spent_today if wallet.spent_day == day else 0,
        spent_this_month=wallet.spent_this_month if wallet.spent_month == month else 0,
        maximum=maximum,
    )


def give_back(wallet: Wallet, amount: int, counted_at: datetime) -> None:
    """`amount` counted at `counted_at` did not leave after all (a hold released; the
    rest of a partial capture is given back by capture_hold): taken off the windows it
    was counted in, if they are still the current ones."""
    day, month = windows(counted_at)
    if wallet.spent_day == day:
        wallet.spent_today = max(0, wallet.spent_today - amount)
    if wallet.spent_month == month:
        wallet.spent_this_month = max(0, wallet.spent_this_month - amount)


# Encoded once per maximums table (the settings' lives as long as the process): not
# per batch on the money path.
_ENCODED: dict[int, tuple[dict[str, dict[str, Triple]], str]] = {}


def as_json(maximums: dict[str, dict[str, Triple]]) -> str:
    """The maximums as move_batch's jsonb argument."""
    known = _ENCODED.get(id(maximums))
    if known is None or known[0] is not maximums:
        known = (
            maximums,
            json.dumps({t: {c: list(v) for c, v in by.items()} for t, by in maximums.items()}),
        )
        _ENCODED[id(maximums)] = known
    return known[1]
