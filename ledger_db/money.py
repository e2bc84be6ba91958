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
from decimal import Decimal

import iso4217

from ledger_db import limits
from ledger_db.errors import InvalidAmount, UnknownCurrency

__all__ = [
    "AMOUNT_GRAMMAR",
    "DEFAULT_CUSTOM_CURRENCIES",
    "CurrencyRegistry",
    "canonical_decimal",
    "default_registry",
    "exact_decimal",
    "format_minor",
    "parse_amount",
    "parse_signed_amount",
    "platform_fee_minor",
    "signed_minor",
]

# Business codes that are not ISO 4217. USDT's on-chain precision is 6 decimals; CREDIT is a
# whole-number platform unit. Both may be overridden by LEDGER_CUSTOM_CURRENCIES.
DEFAULT_CUSTOM_CURRENCIES: Mapping[str, int] = {"USDT": 6, "USDC": 6, "CREDIT": 0}

_CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{2,11}$")
# The one grammar of amounts, for the ledger, the workflows, the client and the CLI alike.
AMOUNT_GRAMMAR = "ASCII digits with an optional '.' and fraction digits, e.g. 12 or 12.50"
_DECIMAL_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


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

    Exact whatever the host program's ``decimal`` context says (precision, rounding, traps): the
    value is read with integer arithmetic only. Floats and bools are refused outright, as is any
    precision beyond ``exponent`` decimals: rounding money silently is the one thing a ledger
    must never do. Trailing zeros are not extra precision (``"1.50"`` is 150 cents).
    """
    coefficient, scale = exact_decimal(amount)
    minor: int
    if scale <= exponent:
        minor = coefficient * 10 ** (exponent - scale)
    else:
        minor, rest = divmod(coefficient, 10 ** (scale - exponent))
        if rest:
            raise InvalidAmount(
                f"amount {_shown(amount)} has more than {exponent} decimals",
                amount=_shown(amount),
            )
    if minor == 0 and not allow_zero:
        raise InvalidAmount(
            f"amount {_shown(amount)} must be greater than zero", amount=_shown(amount)
        )
    if minor > limits.amount_minor_max:
        raise InvalidAmount(
            f"amount {_shown(amount)} is above the maximum of 2^63-1 minor units",
            amount=_shown(amount),
        )
    return minor


def parse_signed_amount(amount: object, exponent: int) -> int:
    """Decimal text with an optional leading ``-`` (a credit on a provider bill) to signed minor
    units: ``-`` then the one grammar, nothing else (no ``+``, no space); zero is accepted."""
    if isinstance(amount, str) and amount.startswith("-"):
        return -parse_amount(amount[1:], exponent, allow_zero=True)
    return parse_amount(amount, exponent, allow_zero=True)


def _shown(amount: object) -> str:
    """The amount as an error message shows it: never megabytes of text."""
    text = amount if isinstance(amount, str) else repr(amount)
    cap = limits.amount_text_length_max
    return repr(text) if len(text) <= cap else repr(text[:cap]) + "..."


def exact_decimal(amount: object) -> tuple[int, int]:
    """The exact non-negative value of an amount as ``(coefficient, scale)``, meaning
    ``coefficient / 10**scale``: ``"12.50"`` is ``(1250, 2)``.

    Accepted: text of the one grammar (:data:`AMOUNT_GRAMMAR`: ASCII digits with an optional
    ``.`` and at least one fraction digit; no sign, exponent, whitespace, underscores or other
    digits) of at most ``limits.amount_text_length_max`` characters, a finite non-negative
    ``Decimal`` of at most as many digits, or a non-negative ``int``. Everything else is
    ``invalid_amount``, refused before any arithmetic (``"1e999999"`` never becomes a number).
    No ``Decimal`` arithmetic happens here, so no context can round or trap.
    """
    if isinstance(amount, bool) or not isinstance(amount, str | int | Decimal):
        raise InvalidAmount(
            f"amount must be decimal text, not {type(amount).__name__}",
            amount=_shown(amount),
        )
    if isinstance(amount, int):
        if amount < 0:
            raise InvalidAmount(f"amount {amount} must be greater than zero", amount=str(amount))
        if amount > limits.amount_minor_max:
            raise InvalidAmount(
                f"amount {_shown(amount)} is above the maximum of 2^63-1 minor units",
                amount=_shown(amount),
            )
        return amount, 0
    if isinstance(amount, Decimal):
        return _exact_from_decimal(amount)
    if len(amount) > limits.amount_text_length_max or not _DECIMAL_TEXT.fullmatch(amount):
        raise InvalidAmount(
            f"amount {_shown(amount)} is not decimal text ({AMOUNT_GRAMMAR})",
            amount=_shown(amount),
        )
    whole, _, fraction = amount.partition(".")
    return int(whole + fraction), len(fraction)


def _exact_from_decimal(amount: Decimal) -> tuple[int, int]:
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):
        raise InvalidAmount(f"amount {amount!r} is not finite", amount=repr(amount))
    if len(digits) > limits.amount_text_length_max or abs(exponent) > limits.amount_text_length_max:
        raise InvalidAmount(f"amount {_shown(amount)} is out of range", amount=_shown(amount))
    coefficient = int("".join(str(digit) for digit in digits) or "0")
    if sign and coefficient:
        raise InvalidAmount(f"amount {amount!r} must be greater than zero", amount=repr(amount))
    if exponent >= 0:
        return coefficient * 10**exponent, 0
    return coefficient, -exponent


def canonical_decimal(amount: object, *, allow_zero: bool = False) -> str:
    """The exact value of a positive decimal amount as canonical text ("1.0" and "1.00" are
    both "1"), for hashing a request before its currency is known. Refuses what
    :func:`parse_amount` refuses whatever the currency: floats, bools, junk, zero, negatives."""
    coefficient, scale = exact_decimal(amount)
    if coefficient == 0 and not allow_zero:
        raise InvalidAmount(
            f"amount {_shown(amount)} must be greater than zero", amount=_shown(amount)
        )
    while scale and coefficient % 10 == 0:
        coefficient //= 10
        scale -= 1
    return format_minor(coefficient, scale)


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


def platform_fee_minor(amount_minor: int, fee_basis_points: int) -> int:
    """The platform's fee on ``amount_minor``: rounded down, in the payee's favour."""
    return amount_minor * fee_basis_points // 10_000


def signed_minor(direction: str, amount_minor: int) -> int:
    """The sign rule, once: money IN an account counts plus, money OUT of it minus.

    ``direction`` is ``"IN"`` or ``"OUT"`` (a ``Direction`` is a ``str``); anything else is a
    programmer error, not a refusal.
    """
    if direction == "IN":
        return amount_minor
    if direction == "OUT":
        return -amount_minor
    raise ValueError(f"direction is IN or OUT, not {direction!r}")


_default: CurrencyRegistry | None = None


def default_registry() -> CurrencyRegistry:
    """The registry built from ISO 4217 and ``LEDGER_CUSTOM_CURRENCIES``, built once."""
    global _default
    if _default is None:
        _default = CurrencyRegistry.from_env()
    return _default
