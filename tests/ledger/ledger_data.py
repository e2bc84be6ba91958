"""Sample inputs shared by the ledger suites (imported by name: ``tests/ledger`` is on the path)."""

from __future__ import annotations

from typing import Any


def sample_record(**overrides: Any) -> dict[str, Any]:
    """A valid LedgerEntry v1.0 record of 1.00 USD, as a caller hands it to ``record_entries``."""
    entry: dict[str, Any] = {
        "task_id": "task-1",
        "direction": "OUT",
        "amount": "1.00",
        "currency": "USD",
        "reason": "PROCUREMENT",
        "category": "CLOUD_COST",
    }
    entry.update(overrides)
    return entry
