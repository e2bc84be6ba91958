"""Exact money: currencies, their exponents, and decimal text <-> integer minor units.

All money arithmetic of the project goes through this module. No float is ever accepted or
produced: amounts come in as decimal text (or ``Decimal``/``int`` in major units) and go out as
decimal text with exactly the currency's number of decimals.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import iso4217

from ledger_db import limits
from ledger_db.errors import InvalidAmount, UnknownCurrency

__all__ = [
    "DEFAULT_CUSTOM_CURRENCIES",
    "CurrencyRegistry",
    "canonical_decimal",
    "default_registry",
    "format_minor",
    "parse_amount",
]

# Business codes that are not ISO 4217. USDT's on-chain precision is 6 decimals; CREDIT is a
# whole-number platform unit. Both may be overridden by LEDGER_CUSTOM_CURRENCIES.
DEFAULT_CUSTOM_CURRENCIES: Mapping[str, int] = {"USDT": 6, "USDC": 6, "CREDIT": 0}

_CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{2,11}$")
_DECIMAL_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


@dataclass(frozen=True)
class CurrencyRegistry:
    """Which currency codes the ledger accepts and how many decimals each has."""

    exponents: Mapping[str, int]

    @classmethod
    def with_custom(cls, custom: Mapping[str, int] | None = None) -> CurrencyRegistry:
        """ISO 4217 codes that have an exponent, plus custom codes (custom wins on conflict)."""
        exponents: dict[str, int] = {
            currency.code: currency.exponent
            for currency in iso4217.Currency
            if currency.exponent is not None
        }
        for code, exponent in (custom or DEFAULT_CUSTOM_CURRENCIES).items():
            if not _CODE_PATTERN.match(code) or not 0 <= exponent <= 18:
                raise ValueError(f"bad custom currency {code}:{exponent}")
            exponents[code] = exponent
        return cls(exponents=exponents)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CurrencyRegistry:
        """Reads ``LEDGER_CUSTOM_CURRENCIES`` such as ``USDT:6,CREDIT:0`` (added to defaults)."""
        environ = os.environ if environ is None else environ
        custom = dict(DEFAULT_CUSTOM_CURRENCIES)
        text = environ.get("LEDGER_CUSTOM_CURRENCIES", "").strip()
        if text:
            for item in text.split(","):
                code, _, exponent = item.strip().partition(":")
                custom[code.strip().upper()] = int(exponent)
        return cls.with_custom(custom)

    def exponent(self, currency: object) -> int:
        """The number of decimals of ``currency``; raises ``unknown_currency`` otherwise."""
        if not isinstance(currency, str) or currency not in self.exponents:
            raise UnknownCurrency(f"unknown currency {currency!r}", currency=str(currency))
        return self.exponents[currency]

    def to_minor(self, amount: object, currency: str) -> int:
        """Exact decimal amount in major units -> positive integer minor units."""
        return parse_amount(amount, self.exponent(currency))

    def to_text(self, amount_minor: int, currency: str) -> str:
        """Integer minor units -> decimal text with exactly the currency's decimals."""
        return format_minor(amount_minor, self.exponent(currency))


def parse_amount(amount: object, exponent: int, *, allow_zero: bool = False) -> int:
    """Parses a positive decimal (text, ``Decimal`` or ``int`` in major units) to minor units.

    Floats and bools are refused outright, as is any precision beyond ``exponent`` decimals:
    rounding money silently is the one thing a ledger must never do.
    """
    value = _to_decimal(amount)
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise InvalidAmount(
            f"amount {amount!r} has more than {exponent} decimals", amount=str(amount)
        )
    minor = int(scaled)
    if minor < 0 or (minor == 0 and not allow_zero):
        raise InvalidAmount(f"amount {amount!r} must be greater than zero", amount=str(amount))
    if minor > limits.amount_minor_max:
        raise InvalidAmount(
            f"amount {amount!r} is above the maximum of 2^63-1 minor units", amount=str(amount)
        )
    return minor


def _to_decimal(amount: object) -> Decimal:
    """Decimal text, ``Decimal`` or ``int`` -> a finite ``Decimal``; nothing else."""
    if isinstance(amount, bool | float):
        raise InvalidAmount(
            f"amount must be decimal text, not {type(amount).__name__}",
            amount=repr(amount),
        )
    if isinstance(amount, int):
        value = Decimal(amount)
    elif isinstance(amount, Decimal):
        value = amount
    elif isinstance(amount, str):
        text = amount.strip()
        if not _DECIMAL_TEXT.match(text):
            raise InvalidAmount(f"amount {amount!r} is not decimal text", amount=amount)
        try:
            value = Decimal(text)
        except InvalidOperation as error:  # pragma: no cover - the pattern guards this
            raise InvalidAmount(f"amount {amount!r} is not decimal text", amount=amount) from error
    else:
        raise InvalidAmount(
            f"amount must be decimal text, not {type(amount).__name__}", amount=repr(amount)
        )
    if not value.is_finite():
        raise InvalidAmount(f"amount {amount!r} is not finite", amount=str(amount))
    return value


def canonical_decimal(amount: object) -> str:
    """The exact value of a positive decimal amount as canonical text ("1.0" and "1.00" are
    both "1"), for hashing a request before its currency is known. Refuses what
    :func:`parse_amount` refuses whatever the currency: floats, bools, junk, zero, negatives."""
    value = _to_decimal(amount)
    if value <= 0:
        raise InvalidAmount(f"amount {amount!r} must be greater than zero", amount=str(amount))
    if value.adjusted() > 30:
        raise InvalidAmount(f"amount {amount!r} is out of range", amount=str(amount))
    return format(value.normalize(), "f")


def format_minor(amount_minor: int, exponent: int) -> str:
    """Integer minor units (any sign) -> decimal text with exactly ``exponent`` decimals."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError("amount_minor must be an int")
    sign = "-" if amount_minor < 0 else ""
    digits = str(abs(amount_minor))
    if exponent == 0:
        return sign + digits
    digits = digits.rjust(exponent + 1, "0")
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"


_default: CurrencyRegistry | None = None


def default_registry() -> CurrencyRegistry:
    """The registry built from ISO 4217 and ``LEDGER_CUSTOM_CURRENCIES``, built once."""
    global _default
    if _default is None:
        _default = CurrencyRegistry.from_env()
    return _default
