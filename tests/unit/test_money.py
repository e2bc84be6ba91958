"""Exact money: decimal text <-> minor units, never a float, never a silent rounding."""

from __future__ import annotations

from decimal import ROUND_UP, Decimal, Inexact, Rounded, localcontext
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_db import limits
from ledger_db.errors import InvalidAmount, UnknownCurrency
from ledger_db.money import (
    CurrencyRegistry,
    canonical_decimal,
    exact_decimal,
    format_minor,
    parse_amount,
)

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


# --- the one grammar, exact whatever the host's decimal context (issue: hardening) ----------

GRAMMAR_REFUSED = [
    " 1.00",
    "1.00 ",
    "+5",
    "1.",
    ".5",
    "1e1",
    "1E+2",
    "1_0",
    "1,00",
    "0x10",
    "\uff11\uff12",  # full-width digits
    "\u0661\u0662",  # Arabic-Indic digits
    "\u0967\u0968",  # Devanagari digits
    "1e999999",
    "1e400000",
    "9" * (limits.amount_text_length_max + 1),
    "1" + "0" * 10_000_000,  # megabytes of digits: refused by the length cap, not parsed
    "1\n",
    "\n1",
]


@pytest.mark.parametrize("amount", GRAMMAR_REFUSED, ids=range(len(GRAMMAR_REFUSED)))
def test_only_ascii_digits_with_an_optional_fraction_are_amounts(amount: str) -> None:
    with pytest.raises(InvalidAmount):
        REGISTRY.to_minor(amount, "USD")
    with pytest.raises(InvalidAmount):
        canonical_decimal(amount)


def test_extra_precision_is_refused_never_rounded() -> None:
    with pytest.raises(InvalidAmount):
        REGISTRY.to_minor("0.99999999999999999999999999999", "USD")
    assert REGISTRY.to_minor("1.50", "USD") == 150  # trailing zeros are not extra precision
    assert REGISTRY.to_minor("1.500000", "USD") == 150


@pytest.mark.parametrize(
    "configure",
    [
        lambda context: setattr(context, "prec", 6),
        lambda context: context.traps.__setitem__(Inexact, True),
        lambda context: context.traps.__setitem__(Rounded, True),
        lambda context: setattr(context, "rounding", ROUND_UP),
        lambda context: setattr(context, "Emax", 3),
    ],
    ids=["prec6", "trap-inexact", "trap-rounded", "round-up", "emax3"],
)
def test_parsing_is_exact_whatever_the_decimal_context(configure: Any) -> None:
    with localcontext() as context:
        configure(context)
        assert REGISTRY.to_minor("1234.56", "USD") == 123456
        assert REGISTRY.to_minor("99999.99", "USD") == 9999999
        assert REGISTRY.to_minor(Decimal("99999.99"), "USD") == 9999999
        assert REGISTRY.to_minor(format_minor(limits.amount_minor_max, 2), "USD") == (
            limits.amount_minor_max
        )
        with pytest.raises(InvalidAmount):
            REGISTRY.to_minor("1234.567", "USD")
        with pytest.raises(InvalidAmount):
            REGISTRY.to_minor("0.99999999999999999999999999999", "USD")
        assert canonical_decimal("1234567.8900") == "1234567.89"


@pytest.mark.parametrize(
    ("amount", "canonical"),
    [("20", "20"), ("20.00", "20"), ("0.10", "0.1"), ("100", "100"), ("007.50", "7.5")],
)
def test_canonical_text_is_the_exact_value(amount: str, canonical: str) -> None:
    assert canonical_decimal(amount) == canonical
    assert canonical_decimal(Decimal(amount)) == canonical


def test_decimals_are_read_exactly_and_bounded() -> None:
    assert exact_decimal(Decimal("1E+2")) == (100, 0)
    assert exact_decimal(Decimal("12.50")) == (1250, 2)
    for huge in (Decimal("1E+999999"), Decimal("1E-999999"), Decimal("1" * 100)):
        with pytest.raises(InvalidAmount):
            exact_decimal(huge)
    for refused in (Decimal("-1"), Decimal("NaN"), Decimal("-Infinity"), Decimal("sNaN")):
        with pytest.raises(InvalidAmount):
            REGISTRY.to_minor(refused, "USD")


@given(
    minor=st.integers(min_value=1, max_value=limits.amount_minor_max),
    exponent=st.integers(min_value=0, max_value=18),
)
def test_canonical_text_parses_back_to_the_same_minor_units(minor: int, exponent: int) -> None:
    assert parse_amount(canonical_decimal(format_minor(minor, exponent)), exponent) == minor


def test_signed_amounts_are_the_grammar_with_a_leading_minus() -> None:
    from ledger_db.money import parse_signed_amount

    assert parse_signed_amount("-1.50", 2) == -150
    assert parse_signed_amount("0", 2) == 0
    assert parse_signed_amount("-0.00", 2) == 0
    for bad in ("+1", "--1", "-", " -1", "- 1", "-1e1", "-\uff11"):
        with pytest.raises(InvalidAmount):
            parse_signed_amount(bad, 2)
