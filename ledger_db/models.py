"""The ledger's public records: small immutable values, no persistence in sight.

Amounts are carried as integer minor units (``*_minor``) together with their currency; each
record also renders them as exact decimal text (``amount`` and friends) for people and JSON.
These models cross the Temporal boundary as-is (pydantic data converter).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from ledger_db.money import default_registry

__all__ = [
    "CONTROL_KINDS",
    "REVERSIBLE_KINDS",
    "Account",
    "AccountKind",
    "Balance",
    "Direction",
    "EntriesPage",
    "Event",
    "Hold",
    "HoldState",
    "JournalEntry",
    "LedgerEntryInput",
    "Problem",
    "TransactionBatchResult",
    "TransactionKind",
    "TransactionResult",
]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


def _text(amount_minor: int, currency: str) -> str:
    return default_registry().to_text(amount_minor, currency)


class AccountKind(enum.StrEnum):
    """What an account stands for; ``hold`` and ``operating`` are opened by the ledger itself."""

    AGENT = "agent"
    ESCROW = "escrow"
    REVENUE = "revenue"
    EXTERNAL = "external"
    OPERATING = "operating"
    HOLD = "hold"


class HoldState(enum.StrEnum):
    """A hold starts active and ends in exactly one of the three other states."""

    ACTIVE = "active"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"


class Direction(enum.StrEnum):
    """IN: money into the account (or the tenant); OUT: money out of it."""

    IN = "IN"
    OUT = "OUT"


class TransactionKind(enum.StrEnum):
    """Which operation wrote a journal transaction."""

    DEPOSIT = "deposit"
    FREEZE = "freeze"
    CAPTURE = "capture"
    FINALIZE = "finalize"
    RELEASE = "release"
    EXPIRE = "expire"
    RECORD = "record"
    REVERSAL = "reversal"
    # Control transactions move no money (zero entries): they journal the attributes of the
    # accounts an operation opened, and every later change of an account's overdraft limit.
    ACCOUNT_OPEN = "account_open"
    ACCOUNT_CHANGE = "account_change"


# The kinds that carry no entries; every other kind balances with at least one entry.
CONTROL_KINDS: frozenset[TransactionKind] = frozenset(
    {TransactionKind.ACCOUNT_OPEN, TransactionKind.ACCOUNT_CHANGE}
)
# What ``reverse_transaction`` reverses. Hold movements (freeze, capture, release, expire) are
# resolved by the hold's own operations; a finalize paid a payee, so taking it back is a refund
# (its own operation, not a reversal); a reversal is corrected by a new entry; control
# transactions move no money.
REVERSIBLE_KINDS: frozenset[TransactionKind] = frozenset(
    {TransactionKind.DEPOSIT, TransactionKind.RECORD}
)


class Account(_Record):
    """A ComputeAccount: money of one currency for one owner, within one tenant."""

    tenant_id: str
    account_id: str
    kind: AccountKind
    currency: str
    name: str | None = None
    overdraft_limit_minor: int = 0
    status: str = "open"
    created_at: datetime
    replayed: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def overdraft_limit(self) -> str:
        return _text(self.overdraft_limit_minor, self.currency)


class Balance(_Record):
    """A balance snapshot: posted = sum of journal entries, held = active holds, available."""

    tenant_id: str
    account_id: str
    currency: str
    posted_minor: int
    held_minor: int
    available_minor: int
    overdraft_limit_minor: int = 0
    journal_sequence: int = Field(description="last journal sequence this snapshot reflects")
    as_of: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def posted(self) -> str:
        return _text(self.posted_minor, self.currency)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def held(self) -> str:
        return _text(self.held_minor, self.currency)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def available(self) -> str:
        return _text(self.available_minor, self.currency)


class Hold(_Record):
    """Money frozen on an agent account for one negotiation."""

    tenant_id: str
    hold_id: str
    account_id: str
    currency: str
    amount_minor: int
    state: HoldState
    reason: str
    expires_at: datetime
    created_at: datetime
    payee_account_id: str | None = None
    order_id: str | None = None
    captured_minor: int = 0
    released_minor: int = 0
    finalized: bool = False
    fee_minor: int = 0
    resolved_at: datetime | None = None
    freeze_transaction_id: str
    resolve_transaction_id: str | None = None
    finalize_transaction_id: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    replayed: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def amount(self) -> str:
        return _text(self.amount_minor, self.currency)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def captured(self) -> str:
        return _text(self.captured_minor, self.currency)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def released(self) -> str:
        return _text(self.released_minor, self.currency)


class JournalEntry(_Record):
    """One movement of money on one account, in the LedgerEntry v1.0 shape plus journal keys."""

    ledger_entry_id: str
    transaction_id: str
    journal_sequence: int
    entry_index: int
    tenant_id: str
    account_id: str
    project_id: str | None = None
    env: str
    asset_id: str | None = None
    task_id: str | None = None
    external_ref: str | None = None
    direction: Direction
    amount_minor: int
    currency: str
    reason: str
    category: str
    tags: list[str] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime
    recorded_at: datetime
    counterpart: bool = Field(
        default=False,
        description="the balancing side of a tenant-level record; reports never count it",
    )
    hold_id: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def amount(self) -> str:
        return _text(self.amount_minor, self.currency)


class TransactionResult(_Record):
    """What a journal-writing operation returns: its transaction and the entries it posted."""

    tenant_id: str
    transaction_id: str
    kind: TransactionKind
    journal_sequence: int
    entries: list[JournalEntry]
    hold: Hold | None = None
    reverses_transaction_id: str | None = None
    replayed: bool = False


class TransactionBatchResult(_Record):
    """What ``record_entries_many`` returns: one journal transaction per batch, in order."""

    tenant_id: str
    transactions: list[TransactionResult]
    replayed: bool = False


class EntriesPage(_Record):
    """One page of journal entries in journal order; pass ``next_cursor`` for the next one."""

    entries: list[JournalEntry]
    next_cursor: str | None = None


class LedgerEntryInput(_Record):
    """A LedgerEntry v1.0 record as given to ``record_entries`` (amount as decimal text)."""

    ledger_entry_id: str | None = None
    tenant_id: str | None = None
    project_id: str | None = None
    env: str = "prod"
    asset_id: str | None = None
    task_id: str | None = None
    external_ref: str | None = None
    direction: Direction
    amount: str
    currency: str
    reason: str
    category: str
    tags: list[str] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = None
    recorded_at: datetime | None = None
    account_id: str | None = None


class Event(_Record):
    """A billing event envelope as stored in the outbox and published on the bus."""

    event_id: str
    type: str
    version: str = "1.0"
    tenant_id: str
    occurred_at: datetime
    hold_id: str | None = None
    order_id: str | None = None
    account_id: str | None = None
    transaction_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    sequence: int = 0
    sent_at: datetime | None = None


class Problem(_Record):
    """One thing ``verify_journal`` found wrong, as data: what, where (journal position, tenant,
    account, hold) and, for a row that disagrees with the journal, which ``field``."""

    kind: str
    message: str
    journal_sequence: int | None = None
    transaction_id: str | None = None
    tenant_id: str | None = None
    account_id: str | None = None
    hold_id: str | None = None
    field: str | None = None
    expected: str | None = None
    actual: str | None = None
