"""Compute Ledger core: accounts, holds and an append-only, double-entry, hash-chained journal.

Usable on its own, without Temporal: ``Ledger.from_url(...)`` on SQLite (the embedded default)
or PostgreSQL. See ``docs/ledger-api.md`` for the contract.
"""

from ledger_db.errors import LedgerError
from ledger_db.ids import derive_hold_id, hold_workflow_id
from ledger_db.ledger import Ledger, LedgerConfig, RecordRequest
from ledger_db.models import (
    Account,
    AccountKind,
    Balance,
    Direction,
    EntriesPage,
    Event,
    Hold,
    HoldState,
    JournalEntry,
    LedgerEntryInput,
    Problem,
    TransactionBatchResult,
    TransactionKind,
    TransactionResult,
)
from ledger_db.money import CurrencyRegistry, default_registry

__all__ = [
    "Account",
    "AccountKind",
    "Balance",
    "CurrencyRegistry",
    "Direction",
    "EntriesPage",
    "Event",
    "Hold",
    "HoldState",
    "JournalEntry",
    "Ledger",
    "LedgerConfig",
    "LedgerEntryInput",
    "LedgerError",
    "Problem",
    "RecordRequest",
    "TransactionBatchResult",
    "TransactionKind",
    "TransactionResult",
    "default_registry",
    "derive_hold_id",
    "hold_workflow_id",
]
