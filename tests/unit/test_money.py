"""Amount parsing and formatting: decimal strings at the edge, integer minor units inside."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paysys.kit.money import MoneyError, format_amount, max_minor_units, parse_amount


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("10.50", "USD", 1050),
        ("0.01", "EUR", 1),
        ("7", "GBP", 700),
        ("1000", "JPY", 1000),
        ("1000000.00", "USD", 100_000_000),
    ],
)
def test_valid_amounts_parse_to_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("0", "USD"),
        ("0.00", "USD"),
        ("-5", "USD"),
        ("1e3", "USD"),
        ("NaN", "USD"),
        ("0.001", "USD"),
        ("1.5", "JPY"),
        ("", "USD"),
        (" 1", "USD"),
        ("01", "USD"),
        ("1.", "USD"),
        (".5", "USD"),
        ("+1", "USD"),
        ("1,00", "USD"),
        ("Infinity", "USD"),
        ("10", "XXX"),
    ],
)
def test_malformed_amounts_are_refused(text: str, currency: str) -> None:
    with pytest.raises(MoneyError):
        parse_amount(text, currency)


def test_json_number_is_refused() -> None:
    with pytest.raises(MoneyError):
        parse_amount(10.5, "USD")  # type: ignore[arg-type]


def test_amount_over_the_maximum_is_refused() -> None:
    cap = max_minor_units("1000000.00", "USD")
    assert parse_amount("1000000.00", "USD", cap) == cap
    with pytest.raises(MoneyError):
        parse_amount("1000000.01", "USD", cap)


@given(st.integers(min_value=1, max_value=10**15), st.sampled_from(["USD", "EUR", "GBP", "JPY"]))
def test_format_then_parse_round_trips(minor: int, currency: str) -> None:
    assert parse_amount(format_amount(minor, currency), currency) == minor
