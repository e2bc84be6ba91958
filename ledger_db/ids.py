"""Deterministic identifiers. Pure functions: workflows import this module too."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

__all__ = [
    "LEDGER_NAMESPACE",
    "derive_account_open_transaction_id",
    "derive_entry_id",
    "derive_event_id",
    "derive_hold_id",
    "derive_transaction_id",
    "hold_id_from_workflow_id",
    "hold_workflow_id",
]

# A fixed namespace so that every derived ID is stable across processes, machines and releases.
LEDGER_NAMESPACE = uuid.UUID("6f1c1a52-3f0e-5a8e-9d43-2f7b8c0c1e55")

_HOLD_WORKFLOW_PREFIX = "hold-"


def _derive(*parts: str) -> str:
    # The unit separator cannot appear in validated tenant IDs, keys or IDs, so distinct part
    # lists never collide.
    return str(uuid.uuid5(LEDGER_NAMESPACE, "\x1f".join(parts)))


def derive_hold_id(tenant_id: str, idempotency_key: str) -> str:
    """The hold ID of the freeze a tenant asked for under ``idempotency_key``."""
    return _derive("hold", tenant_id, idempotency_key)


def hold_workflow_id(hold_id: str) -> str:
    """The ID of the HoldWorkflow that owns ``hold_id``: no search needed to find it."""
    return f"{_HOLD_WORKFLOW_PREFIX}{hold_id}"


def hold_id_from_workflow_id(workflow_id: str) -> str:
    """Inverse of :func:`hold_workflow_id`."""
    if not workflow_id.startswith(_HOLD_WORKFLOW_PREFIX):
        raise ValueError(f"not a hold workflow ID: {workflow_id!r}")
    return workflow_id[len(_HOLD_WORKFLOW_PREFIX) :]


def derive_transaction_id(tenant_id: str, idempotency_key: str, operation: str) -> str:
    """The journal transaction written by ``operation`` under a tenant's idempotency key."""
    return _derive("txn", tenant_id, operation, idempotency_key)


def derive_entry_id(transaction_id: str, entry_index: int) -> str:
    """The ledger_entry_id of the ``entry_index``-th entry of a transaction."""
    return _derive("entry", transaction_id, str(entry_index))


def derive_event_id(transaction_id: str, event_type: str) -> str:
    """The event ID of the billing event a transaction emits: a retry re-emits the same ID."""
    return _derive("event", transaction_id, event_type)


def derive_account_open_transaction_id(tenant_id: str, account_ids: Sequence[str]) -> str:
    """The control transaction that journals the opening of ``account_ids`` (an account is
    opened once, so the IDs it opens name the transaction)."""
    return _derive("txn", tenant_id, "account_open", *sorted(account_ids))
