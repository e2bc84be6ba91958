"""The curated public surface: what ledger_db exports is what we mean to export."""

from __future__ import annotations

import ledger_db
from ledger_db import errors


def test_exported_names_are_exactly_the_public_api() -> None:
    assert sorted(ledger_db.__all__) == ledger_db.__all__
    assert set(ledger_db.__all__) == {
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
    }
    for name in ledger_db.__all__:
        assert getattr(ledger_db, name) is not None


def test_every_design_error_code_has_exactly_one_class() -> None:
    design_codes = {
        "account_not_found",
        "account_closed",
        "currency_mismatch",
        "invalid_amount",
        "insufficient_funds",
        "hold_not_found",
        "hold_expired",
        "hold_already_captured",
        "hold_already_released",
        "capture_exceeds_hold",
        "payee_required",
        "ttl_out_of_range",
        "idempotency_key_reused",
        "invalid_entry",
        "unbalanced_transaction",
        "journal_is_append_only",
    }
    assert design_codes <= set(errors.ERROR_CODES)
    classes = [errors.error_class_for_code(code) for code in errors.ERROR_CODES]
    assert len(set(classes)) == len(classes)
    for code, cls in zip(errors.ERROR_CODES, classes, strict=True):
        assert cls.code == code
        assert issubclass(cls, errors.LedgerError)
        assert cls.__doc__, f"{cls.__name__} needs a one-line docstring"
    assert errors.error_class_for_code("no_such_code") is errors.LedgerError
