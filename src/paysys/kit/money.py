"""Money at the edge: decimal strings in and out, integer minor units inside."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, Field

# ISO 4217 minor units of the currencies paysys accepts.
CURRENCY_EXPONENTS: dict[str, int] = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}
DEFAULT_MAX_AMOUNT = "1000000.00"

# No amount is larger than this many minor units, whatever the configured maximum: far
# above any real payment, far below what a BIGINT column (and sums of them) can hold.
_LARGEST_MINOR = 10**15
_AMOUNT_RE = re.compile(r"^(?P<int>0|[1-9][0-9]{0,17})(?:\.(?P<frac>[0-9]{1,18}))?$")


class MoneyError(ValueError):
    """A malformed or out-of-range amount; the edge renders it as a 422."""


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"unsupported currency {currency!r}") from None


def parse_amount(text: str, currency: str, max_minor: int | None = None) -> int:
    """'10.50' USD -> 1050. Refuses signs, exponents, NaN, zero and excess decimals."""
    if not isinstance(text, str):
        raise MoneyError('amount must be a decimal string such as "10.50"')
    match = _AMOUNT_RE.fullmatch(text)
    if match is None:
        raise MoneyError('amount must be a decimal string such as "10.50"')
    digits = exponent(currency)
    frac = match.group("frac") or ""
    if len(frac) > digits:
        raise MoneyError(f"{currency} amounts have at most {digits} decimal places")
    minor = int(match.group("int")) * 10**digits + int(frac.ljust(digits, "0") or "0")
    if minor <= 0:
        raise MoneyError("amount must be greater than zero")
    if minor > _LARGEST_MINOR:
        raise MoneyError("amount is too large")
    if max_minor is not None and minor > max_minor:
        raise MoneyError(f"amount exceeds the maximum of {format_amount(max_minor, currency)}")
    return minor


def format_amount(minor: int, currency: str) -> str:
    """1050 USD -> '10.50'; 1050 JPY -> '1050'."""
    digits = exponent(currency)
    if digits == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}"


def max_minor_units(max_amount: str, currency: str) -> int:
    """The per-transaction maximum (a major-unit string) in minor units of `currency`."""
    return int(Decimal(max_amount).scaleb(exponent(currency)).to_integral_value())


def _require_str(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError('amount must be a JSON string such as "10.50", not a number')
    return value


# The raw amount string at the edge: a JSON number is refused before anything else;
# the currency-aware check happens once the currency is known (parse_amount).
# The pattern is checked here too, so that a malformed amount is refused before any
# lookup, and the document says what an amount looks like.
AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,17})(\.[0-9]{1,18})?$"
AmountStr = Annotated[
    str,
    BeforeValidator(_require_str),
    Field(min_length=1, max_length=40, pattern=AMOUNT_PATTERN, examples=["10.50", "1000"]),
]
CurrencyCode = Annotated[str, Field(pattern=r"^(USD|EUR|GBP|JPY)$")]
