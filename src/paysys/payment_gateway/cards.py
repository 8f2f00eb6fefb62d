"""Card checks of the simulator: Luhn, expiry, CVC shape, brand, and the test cards."""

from __future__ import annotations

from datetime import date

from paysys.kit.cards import brand

__all__ = ["brand", "expired", "luhn_ok", "outcome"]

TEST_CARD_OUTCOMES: dict[str, str | None] = {
    "4242424242424242": None,
    "4000000000000002": "CARD_DECLINED",
    "4000000000009995": "CARD_DECLINED",
    "4000000000000069": "CARD_EXPIRED",
    "4000000000000119": "PAYMENT_GATEWAY_ERROR",
}


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def expired(exp_month: int, exp_year: int, today: date | None = None) -> bool:
    today = today or date.today()
    return (exp_year, exp_month) < (today.year, today.month)


def outcome(number: str, exp_month: int, exp_year: int) -> str | None:
    """None for an approved charge, else the contract's failure code."""
    if expired(exp_month, exp_year):
        return "CARD_EXPIRED"
    return TEST_CARD_OUTCOMES.get(number)
