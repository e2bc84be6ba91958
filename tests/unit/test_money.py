"""Exact money: decimal text <-> minor units, never a float, never a silent rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_db import limits
from ledger_db.errors import InvalidAmount, UnknownCurrency
from ledger_db.money import CurrencyRegistry, format_minor, parse_amount

REGISTRY = CurrencyRegistry.with_custom({"USDT": 6, "CREDIT": 0})


@given(
    minor=st.integers(min_value=1, max_value=limits.amount_minor_max),
    exponent=st.integers(min_value=0, max_value=8),
)
def test_text_round_trips_exactly(minor: int, exponent: int) -> None:
    text = format_minor(minor, exponent)
    assert parse_amount(text, exponent) == minor
    assert Decimal(text).scaleb(exponent) == minor


@given(minor=st.integers(min_value=-(10**20), max_value=10**20), exponent=st.integers(0, 6))
def test_format_has_exactly_the_exponent_decimals(minor: int, exponent: int) -> None:
    text = format_minor(minor, exponent)
    if exponent:
        assert len(text.split(".")[1]) == exponent
    else:
        assert "." not in text


@pytest.mark.parametrize(
    ("currency", "exponent"), [("USD", 2), ("JPY", 0), ("BHD", 3), ("USDT", 6), ("CREDIT", 0)]
)
def test_exponents_come_from_iso_4217_and_configuration(currency: str, exponent: int) -> None:
    assert REGISTRY.exponent(currency) == exponent


@pytest.mark.parametrize(
    "amount",
    ["0", "0.00", "-1", "1.001", "abc", "1e2", "", " ", "NaN", "Infinity", 1.5, True, None, [1]],
)
def test_bad_amounts_are_refused(amount: object) -> None:
    with pytest.raises(InvalidAmount):
        REGISTRY.to_minor(amount, "USD")


def test_the_largest_amount_is_2_to_the_63_minus_1_minor_units() -> None:
    largest = format_minor(limits.amount_minor_max, 2)
    assert REGISTRY.to_minor(largest, "USD") == limits.amount_minor_max
    with pytest.raises(InvalidAmount):
        REGISTRY.to_minor(format_minor(limits.amount_minor_max + 1, 2), "USD")


def test_unknown_and_lower_case_currencies_are_refused() -> None:
    for code in ("XYZ", "usd", "", None):
        with pytest.raises(UnknownCurrency):
            REGISTRY.exponent(code)


def test_custom_currencies_come_from_the_environment() -> None:
    registry = CurrencyRegistry.from_env({"LEDGER_CUSTOM_CURRENCIES": "GPUH:3, USDT:2"})
    assert registry.exponent("GPUH") == 3
    assert registry.exponent("USDT") == 2
    assert registry.exponent("CREDIT") == 0
