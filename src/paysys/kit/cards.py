"""Card numbers at the edge: the brand and the parts of a card that may be kept (brand,
last 4, expiry). The full number and the CVC never go further than the processor."""

from __future__ import annotations

from typing import Any


def brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or (
        number[:4].isdigit() and 2221 <= int(number[:4]) <= 2720
    ):
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    if number.startswith("6011") or number.startswith("65"):
        return "discover"
    return "unknown"


def keepable(card: dict[str, Any]) -> dict[str, Any]:
    """What may be stored of a card: never the number or the CVC."""
    number = str(card.get("number", ""))
    return {
        "brand": brand(number),
        "last4": number[-4:],
        "exp_month": card.get("exp_month"),
        "exp_year": card.get("exp_year"),
    }
