"""The custom search attributes of a HoldWorkflow, so that people find holds in the Web UI.

Pure declarations, imported by the workflow, the client and the worker (which registers them on
a dev server). Amounts are exact decimal text (Keyword), never a float; ``LedgerAmountMinor``
(Int) is there for range queries such as ``LedgerAmountMinor > 10000``; ``LedgerExpiresAt``
(Datetime) finds holds expiring soon: ``LedgerHoldState = 'active' AND LedgerExpiresAt <
'2026-01-01T12:00:00Z'``.
"""

from __future__ import annotations

from datetime import datetime

from temporalio.common import SearchAttributeKey

__all__ = [
    "ALL_SEARCH_ATTRIBUTE_KEYS",
    "LEDGER_ACCOUNT",
    "LEDGER_AMOUNT",
    "LEDGER_AMOUNT_MINOR",
    "LEDGER_CURRENCY",
    "LEDGER_EXPIRES_AT",
    "LEDGER_HOLD_STATE",
    "LEDGER_ORDER",
    "LEDGER_PAYEE",
    "LEDGER_TENANT",
]

LEDGER_TENANT = SearchAttributeKey.for_keyword("LedgerTenant")
LEDGER_ACCOUNT = SearchAttributeKey.for_keyword("LedgerAccount")
LEDGER_HOLD_STATE = SearchAttributeKey.for_keyword("LedgerHoldState")
LEDGER_AMOUNT = SearchAttributeKey.for_keyword("LedgerAmount")
LEDGER_CURRENCY = SearchAttributeKey.for_keyword("LedgerCurrency")
LEDGER_ORDER = SearchAttributeKey.for_keyword("LedgerOrder")
LEDGER_PAYEE = SearchAttributeKey.for_keyword("LedgerPayee")
LEDGER_AMOUNT_MINOR = SearchAttributeKey.for_int("LedgerAmountMinor")
LEDGER_EXPIRES_AT = SearchAttributeKey.for_datetime("LedgerExpiresAt")

ALL_SEARCH_ATTRIBUTE_KEYS: tuple[
    SearchAttributeKey[str] | SearchAttributeKey[int] | SearchAttributeKey[datetime], ...
] = (
    LEDGER_TENANT,
    LEDGER_ACCOUNT,
    LEDGER_HOLD_STATE,
    LEDGER_AMOUNT,
    LEDGER_CURRENCY,
    LEDGER_ORDER,
    LEDGER_PAYEE,
    LEDGER_AMOUNT_MINOR,
    LEDGER_EXPIRES_AT,
)
