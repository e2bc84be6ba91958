"""Temporal activities of the compute ledger: thin, idempotent wrappers over ``ledger_db``."""

from __future__ import annotations

from activities.events import (
    EventActivities,
    EventPublisher,
    NatsSettings,
    relay_outbox,
    relay_unsent,
)
from activities.faults import FaultInjector, InjectedFault
from activities.ledger import LedgerActivities, activity_idempotency_key, business_error

__all__ = [
    "EventActivities",
    "EventPublisher",
    "FaultInjector",
    "InjectedFault",
    "LedgerActivities",
    "NatsSettings",
    "activity_idempotency_key",
    "business_error",
    "relay_outbox",
    "relay_unsent",
]
