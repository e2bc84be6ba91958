"""Typed errors of the ledger, one class per stable code.

Every error a caller can cause is a :class:`LedgerError` with a ``code`` that never changes::

    LedgerError
    ├── AccountNotFound            account_not_found
    ├── AccountClosed              account_closed
    ├── AccountAlreadyExists       account_already_exists
    ├── CurrencyMismatch           currency_mismatch
    ├── UnknownCurrency            unknown_currency
    ├── InvalidAmount              invalid_amount
    ├── InsufficientFunds          insufficient_funds
    ├── HoldNotFound               hold_not_found
    ├── HoldExpired                hold_expired
    ├── HoldNotExpired             hold_not_expired
    ├── HoldAlreadyCaptured        hold_already_captured
    ├── HoldAlreadyFinalized       hold_already_finalized
    ├── HoldAlreadyReleased        hold_already_released
    ├── HoldNotCaptured            hold_not_captured
    ├── CaptureExceedsHold         capture_exceeds_hold
    ├── PayeeRequired              payee_required
    ├── TtlOutOfRange              ttl_out_of_range
    ├── IdempotencyKeyInvalid      idempotency_key_invalid
    ├── IdempotencyKeyReused       idempotency_key_reused
    ├── InvalidEntry               invalid_entry
    ├── LedgerUnavailable          ledger_unavailable
    ├── TransactionNotFound        transaction_not_found
    ├── TransactionAlreadyReversed transaction_already_reversed
    ├── UnbalancedTransaction      unbalanced_transaction
    └── JournalIsAppendOnly        journal_is_append_only

The codes of ``shared/DESIGN.md`` section 5 are all here; the few extra ones name outcomes that
section does not cover (an unknown currency code, a malformed idempotency key, a second
reversal). Another tenant's object raises the same ``..._not_found`` as a missing one.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AccountAlreadyExists",
    "AccountClosed",
    "AccountNotFound",
    "CaptureExceedsHold",
    "CurrencyMismatch",
    "HoldAlreadyCaptured",
    "HoldAlreadyFinalized",
    "HoldAlreadyReleased",
    "HoldExpired",
    "HoldNotCaptured",
    "HoldNotExpired",
    "HoldNotFound",
    "IdempotencyKeyInvalid",
    "IdempotencyKeyReused",
    "InsufficientFunds",
    "InvalidAmount",
    "InvalidEntry",
    "JournalIsAppendOnly",
    "LedgerError",
    "LedgerUnavailable",
    "PayeeRequired",
    "TransactionAlreadyReversed",
    "TransactionNotFound",
    "TtlOutOfRange",
    "UnbalancedTransaction",
    "UnknownCurrency",
    "error_class_for_code",
]


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""

    code: ClassVar[str] = "ledger_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        """The stable wire form used by the CLI and by Temporal activity failures."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class AccountNotFound(LedgerError):
    """No such account in this tenant (or it belongs to another tenant)."""

    code = "account_not_found"


class AccountClosed(LedgerError):
    """The account is closed and takes no new movements."""

    code = "account_closed"


class AccountAlreadyExists(LedgerError):
    """An account with this ID already exists in the tenant."""

    code = "account_already_exists"


class CurrencyMismatch(LedgerError):
    """The amount's currency differs from the account's or the hold's."""

    code = "currency_mismatch"


class UnknownCurrency(LedgerError):
    """The currency code is neither ISO 4217 nor configured as a custom code."""

    code = "unknown_currency"


class InvalidAmount(LedgerError):
    """The amount is not a positive exact decimal within the currency's precision and range."""

    code = "invalid_amount"


class InsufficientFunds(LedgerError):
    """The account's available balance (plus overdraft) does not cover the amount."""

    code = "insufficient_funds"


class HoldNotFound(LedgerError):
    """No such hold in this tenant."""

    code = "hold_not_found"


class HoldExpired(LedgerError):
    """The hold is past its expiry (or already expired) and can no longer be captured."""

    code = "hold_expired"


class HoldNotExpired(LedgerError):
    """Expiry was asked for a hold whose expiry time has not come yet."""

    code = "hold_not_expired"


class HoldAlreadyCaptured(LedgerError):
    """The hold was captured already; it resolves once."""

    code = "hold_already_captured"


class HoldAlreadyFinalized(LedgerError):
    """The captured hold was paid out already."""

    code = "hold_already_finalized"


class HoldAlreadyReleased(LedgerError):
    """The hold was released already; it resolves once."""

    code = "hold_already_released"


class HoldNotCaptured(LedgerError):
    """Finalize was asked for a hold that has not been captured."""

    code = "hold_not_captured"


class CaptureExceedsHold(LedgerError):
    """The capture amount is above the held amount."""

    code = "capture_exceeds_hold"


class PayeeRequired(LedgerError):
    """A capture needs a payee, given either at freeze or at capture."""

    code = "payee_required"


class TtlOutOfRange(LedgerError):
    """The hold TTL is outside the configured bounds."""

    code = "ttl_out_of_range"


class IdempotencyKeyInvalid(LedgerError):
    """The idempotency key is empty, too long or not text."""

    code = "idempotency_key_invalid"


class IdempotencyKeyReused(LedgerError):
    """The idempotency key was used before with a different request."""

    code = "idempotency_key_reused"


class InvalidEntry(LedgerError):
    """A field of the request or of a LedgerEntry is malformed or out of its limits."""

    code = "invalid_entry"


class LedgerUnavailable(LedgerError):
    """The ledger's database did not answer in time; send the request again, same key."""

    code = "ledger_unavailable"


class TransactionNotFound(LedgerError):
    """No such journal transaction in this tenant."""

    code = "transaction_not_found"


class TransactionAlreadyReversed(LedgerError):
    """The transaction was reversed already; a transaction is reversed at most once."""

    code = "transaction_already_reversed"


class UnbalancedTransaction(LedgerError):
    """Per currency, the transaction's IN and OUT entries do not add up to the same amount."""

    code = "unbalanced_transaction"


class JournalIsAppendOnly(LedgerError):
    """An UPDATE, DELETE or TRUNCATE of a journal row was attempted."""

    code = "journal_is_append_only"


_BY_CODE: dict[str, type[LedgerError]] = {
    cls.code: cls
    for cls in (
        AccountNotFound,
        AccountClosed,
        AccountAlreadyExists,
        CurrencyMismatch,
        UnknownCurrency,
        InvalidAmount,
        InsufficientFunds,
        HoldNotFound,
        HoldExpired,
        HoldNotExpired,
        HoldAlreadyCaptured,
        HoldAlreadyFinalized,
        HoldAlreadyReleased,
        HoldNotCaptured,
        CaptureExceedsHold,
        PayeeRequired,
        TtlOutOfRange,
        IdempotencyKeyInvalid,
        IdempotencyKeyReused,
        InvalidEntry,
        LedgerUnavailable,
        TransactionNotFound,
        TransactionAlreadyReversed,
        UnbalancedTransaction,
        JournalIsAppendOnly,
    )
}

ERROR_CODES: tuple[str, ...] = tuple(sorted(_BY_CODE))


def error_class_for_code(code: str) -> type[LedgerError]:
    """The class of a stable code, so a code that crossed a wire becomes the same error again."""
    return _BY_CODE.get(code, LedgerError)
