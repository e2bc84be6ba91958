"""The read API's JSON: the ledger's own records, with one rule applied to money.

Every ``*_minor`` integer of a record becomes ``*``, the exact decimal text of that amount in
the record's ``currency`` (``posted_minor`` -> ``posted``, ``fee_minor`` -> ``fee``), at the same
place; the integers themselves are left out. A JSON number is a binary double to most clients
(JavaScript loses integers above 2^53), so the API carries money only as text, the one form
that is exact everywhere. Event envelopes are the exception: they go out exactly as on the bus
(DESIGN section 6), payload and all.

The field list stays the ledger's (``ledger_db.models``): the response schemas of the OpenAPI
document are derived from those records by the same rule, never written out a second time.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from ledger_db import (
    Account,
    Balance,
    Event,
    Hold,
    JournalEntry,
    TransactionResult,
    default_registry,
)
from ledger_db import EntriesPage as LedgerEntriesPage

__all__ = [
    "AccountOut",
    "BalanceOut",
    "EntriesPage",
    "EntryOut",
    "ErrorBody",
    "EventOut",
    "EventsPage",
    "Health",
    "HoldOut",
    "HoldsPage",
    "Report",
    "TransactionOut",
    "account_json",
    "balance_json",
    "entries_page_json",
    "event_json",
    "hold_json",
    "transaction_json",
]

_MINOR_SUFFIX = "_minor"
# Write-path artifacts that mean nothing to a reader.
_LEFT_OUT = frozenset({"replayed", "sent_at", "hold"})
_MONEY_DESCRIPTION = "Exact decimal text in the record's `currency` (never a JSON number)."


@functools.cache
def _wire_names(record: type[BaseModel]) -> list[tuple[str, str]]:
    """(wire name, source field) in the record's order: ``x_minor`` shows as ``x``."""
    names: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name in [*record.model_fields, *record.model_computed_fields]:
        if name in _LEFT_OUT:
            continue
        wire = name.removesuffix(_MINOR_SUFFIX)
        if wire not in seen:
            seen.add(wire)
            names.append((wire, name))
    return names


def _wire_model(
    record: type[BaseModel], name: str, doc: str, nested: Mapping[str, Any] | None = None
) -> type[BaseModel]:
    """The response schema of ``record`` under the money rule (for the OpenAPI document).

    Every field is required in the schema: the API always sends every field, ``null`` when
    it has no value.
    """
    nested = nested or {}
    fields: dict[str, Any] = {}
    for wire, source in _wire_names(record):
        if wire in nested:
            fields[wire] = (nested[wire], ...)
        elif source.endswith(_MINOR_SUFFIX) or source in record.model_computed_fields:
            fields[wire] = (str, Field(description=_MONEY_DESCRIPTION, examples=["25.50"]))
        else:
            info = record.model_fields[source]
            fields[wire] = (info.annotation, Field(description=info.description))
    model: type[BaseModel] = create_model(
        name, __config__=ConfigDict(frozen=True), __doc__=doc, **fields
    )
    return model


def _wire_json(record: BaseModel, nested: Sequence[str] = ()) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    currency = data.get("currency")
    registry = default_registry()
    out: dict[str, Any] = {}
    for wire, source in _wire_names(type(record)):
        if wire in nested:
            out[wire] = [_wire_json(item) for item in getattr(record, source)]
        elif source.endswith(_MINOR_SUFFIX) and wire not in data:
            out[wire] = registry.to_text(int(data[source]), str(currency))
        else:
            out[wire] = data[wire]
    return out


AccountOut = _wire_model(
    Account, "Account", "A ComputeAccount: money of one currency for one owner, in one tenant."
)
BalanceOut = _wire_model(
    Balance,
    "Balance",
    "posted (journal, hold bucket included), held (active holds), available = posted - held, "
    "and the journal sequence the snapshot reflects (`as_of`: replayed up to that instant).",
)
HoldOut = _wire_model(Hold, "Hold", "Money frozen on an agent account for one negotiation.")
EntryOut = _wire_model(
    JournalEntry,
    "LedgerEntry",
    "One movement of money on one account: LedgerEntry v1.0 plus its journal keys.",
)
TransactionOut = _wire_model(
    TransactionResult,
    "Transaction",
    "One balanced journal transaction and its entries, in journal order.",
    nested={"entries": list[EntryOut]},  # type: ignore[valid-type]
)
EventOut = _wire_model(
    Event,
    "Event",
    "A billing event: the envelope as published on the bus (payload amounts carry "
    "`amount`, `amount_minor` and `currency`) plus its outbox `sequence`.",
)


class EntriesPage(BaseModel):
    """One page of an account's journal entries, in journal order."""

    entries: list[EntryOut]  # type: ignore[valid-type]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class HoldsPage(BaseModel):
    """One page of the tenant's holds, oldest first."""

    holds: list[HoldOut]  # type: ignore[valid-type]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class EventsPage(BaseModel):
    """Billing events after a sequence, in outbox order."""

    events: list[EventOut]  # type: ignore[valid-type]
    last_sequence: int = Field(
        description="The sequence of the last event returned (`after` when none): pass it as "
        "`after` to read on, now or later."
    )
    has_more: bool = Field(description="Whether more events follow right away.")


class Health(BaseModel):
    """The service is up, its database answers and its schema is this program's."""

    status: str = Field(description="`ok`.")
    schema_revision: str | None = Field(description="The database's schema revision.")
    events: str = Field(description="`nats` (streams woken by the bus) or `outbox` (polling).")


class Report(BaseModel):
    """Totals and counts per group and currency: `compute-ledger report --json`."""

    group_by: list[str] = Field(description="The dimensions, in order.")
    filter: dict[str, Any] = Field(description="The question: every filter that applied.")
    rows: list[dict[str, Any]] = Field(
        description="One per group and currency: the dimension values, `currency`, `count`, "
        "`total_in`, `total_out`, `net` (exact decimal text)."
    )
    totals: list[dict[str, Any]] = Field(description="Per currency, over every row.")


class ErrorDetail(BaseModel):
    """The error itself."""

    code: str = Field(description="Stable snake_case code; see the status table.")
    message: str = Field(description="What went wrong, for people.")
    details: dict[str, Any] | None = Field(default=None, description="Fields of the error.")


class ErrorBody(BaseModel):
    """Every failure: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


def account_json(account: Account) -> dict[str, Any]:
    return _wire_json(account)


def balance_json(balance: Balance) -> dict[str, Any]:
    return _wire_json(balance)


def hold_json(hold: Hold) -> dict[str, Any]:
    return _wire_json(hold)


def transaction_json(transaction: TransactionResult) -> dict[str, Any]:
    return _wire_json(transaction, nested=("entries",))


def entries_page_json(page: LedgerEntriesPage) -> dict[str, Any]:
    return {
        "entries": [_wire_json(entry) for entry in page.entries],
        "next_cursor": page.next_cursor,
    }


def event_json(event: Event) -> dict[str, Any]:
    """The envelope as published on the bus, plus the outbox ``sequence`` to resume after."""
    return _wire_json(event)
