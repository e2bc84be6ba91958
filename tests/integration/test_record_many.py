"""record_entries_many: several journal transactions, one all-or-nothing database write."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ledger_db import Ledger
from ledger_db.errors import InsufficientFunds, InvalidEntry


def _record(amount: str, direction: str = "OUT", **extra: Any) -> dict[str, Any]:
    return {
        "ledger_entry_id": str(uuid.uuid4()),
        "task_id": "task-1",
        "direction": direction,
        "amount": amount,
        "currency": "USD",
        "reason": "TASK_BURN",
        "category": "CLOUD_COST",
        **extra,
    }


@pytest.fixture
def ledger(database_url: str) -> Any:
    ledger = Ledger.from_url(database_url)
    yield ledger
    ledger.close()


def test_batches_become_consecutive_transactions_and_replay(ledger: Ledger) -> None:
    batches = [[_record("1.00"), _record("2.00")], [_record("3.00", "IN")]]
    result = ledger.record_entries_many(batches, tenant_id="t", idempotency_key="file-1")
    assert [len(t.entries) for t in result.transactions] == [4, 2]
    sequences = [t.journal_sequence for t in result.transactions]
    assert sequences == [sequences[0], sequences[0] + 1]
    balance = ledger.get_balance("@operating:USD", tenant_id="t")
    assert balance.posted == "0.00"  # -1 -2 +3
    again = ledger.record_entries_many(batches, tenant_id="t", idempotency_key="file-1")
    assert again.replayed
    assert all(transaction.replayed for transaction in again.transactions)
    assert [t.model_copy(update={"replayed": False}) for t in again.transactions] == (
        result.transactions
    )
    assert ledger.verify_journal() == []


def test_one_bad_batch_applies_nothing(ledger: Ledger) -> None:
    ledger.open_account(tenant_id="t", currency="USD", idempotency_key="open", account_id="a")
    ledger.deposit("a", "5.00", tenant_id="t", idempotency_key="dep")
    before = ledger.get_balance("a", tenant_id="t")
    batches = [[_record("4.00")], [_record("4.00")]]  # the second batch overdraws the agent
    with pytest.raises(InsufficientFunds):
        ledger.record_entries_many(batches, tenant_id="t", idempotency_key="k", account_id="a")
    assert ledger.get_balance("a", tenant_id="t") == before
    assert len(ledger.list_ledger_entries("a", tenant_id="t").entries) == 1  # the deposit only
    duplicate = _record("1.00")
    with pytest.raises(InvalidEntry) as caught:
        ledger.record_entries_many([[duplicate], [duplicate]], tenant_id="t", idempotency_key="d")
    assert caught.value.details["field"] == "ledger_entry_id"
    assert ledger.get_balance("a", tenant_id="t") == before
    assert ledger.verify_journal() == []
