"""The ledger's words, once: system account IDs, reasons and categories of its own movements,
operation names, event types and the LedgerEntry v1.0 field list.

Every value here is frozen. Operation names are hashed into idempotency records and transaction
IDs (``ids.derive_transaction_id``), reasons and categories are stored on journal entries, and
event types are read by subscribers: changing one would make existing idempotency keys, IDs and
reports mean something else. Add new words; never edit old ones.

Pure: no SQLAlchemy, no I/O, so that the rules and the workflow may import it.
"""

from __future__ import annotations

import enum
from typing import Final

from ledger_db.models import AccountKind

__all__ = [
    "CATEGORY_COMPUTE_COST",
    "CATEGORY_FEE",
    "CATEGORY_FUNDING",
    "CATEGORY_HOLD",
    "CATEGORY_PRODUCT_REVENUE",
    "EVENT_VERSION",
    "HOLD_BUCKET_PREFIX",
    "LEDGER_ENTRY_FIELDS",
    "LEDGER_ENTRY_REFERENCES",
    "LEDGER_ENTRY_SUBJECTS",
    "LEDGER_ENTRY_VERSION",
    "PLATFORM_KINDS",
    "REASON_ADJUSTMENT",
    "REASON_HOLD_EXPIRE",
    "REASON_HOLD_FREEZE",
    "REASON_HOLD_RELEASE",
    "REASON_ORDER_CAPTURE",
    "REASON_PLATFORM_FEE",
    "REASON_SALE_REVENUE",
    "REASON_TOP_UP",
    "RESERVED_ACCOUNT_PREFIX",
    "EventType",
    "Operation",
    "TransactionStep",
    "hold_bucket_id",
    "platform_account_ids",
    "system_account_id",
]

# ---------------------------------------------------------------------------- system accounts

# Account IDs starting with "@" belong to the ledger: a hold bucket ``@hold:<agent account>``
# or a platform account ``@<kind>:<currency>`` (``@escrow:USD``, ``@revenue:USD`` ...).
RESERVED_ACCOUNT_PREFIX: Final = "@"
HOLD_BUCKET_PREFIX: Final = "@hold:"
# The tenant's platform accounts of a currency, opened with its first agent account.
PLATFORM_KINDS: Final = (AccountKind.ESCROW, AccountKind.REVENUE, AccountKind.EXTERNAL)


def system_account_id(kind: AccountKind, currency: str) -> str:
    """The tenant's one account of ``kind`` for ``currency``: ``@escrow:USD``."""
    return f"{RESERVED_ACCOUNT_PREFIX}{kind.value}:{currency}"


def hold_bucket_id(account_id: str) -> str:
    """The bucket that carries an agent account's frozen money: ``@hold:<account>``."""
    return f"{HOLD_BUCKET_PREFIX}{account_id}"


def platform_account_ids(currency: str) -> list[tuple[str, AccountKind, str]]:
    """The tenant's escrow, revenue and external accounts of a currency, as ensure-specs
    ``(account_id, kind, currency)``."""
    return [(system_account_id(kind, currency), kind, currency) for kind in PLATFORM_KINDS]


# ---------------------------------------------------------------------------- reasons, categories

# The ledger's own movements. FinOps reports leave out the HOLD category by default: freezing
# and releasing moves no money out of the tenant.
REASON_TOP_UP: Final = "TOP_UP"
REASON_HOLD_FREEZE: Final = "HOLD_FREEZE"
REASON_HOLD_RELEASE: Final = "HOLD_RELEASE"
REASON_HOLD_EXPIRE: Final = "HOLD_EXPIRE"
REASON_ORDER_CAPTURE: Final = "ORDER_CAPTURE"
REASON_SALE_REVENUE: Final = "SALE_REVENUE"
REASON_PLATFORM_FEE: Final = "PLATFORM_FEE"
REASON_ADJUSTMENT: Final = "ADJUSTMENT"

CATEGORY_FUNDING: Final = "FUNDING"
CATEGORY_HOLD: Final = "HOLD"
CATEGORY_COMPUTE_COST: Final = "COMPUTE_COST"
CATEGORY_PRODUCT_REVENUE: Final = "PRODUCT_REVENUE"
CATEGORY_FEE: Final = "FEE"

# ---------------------------------------------------------------------------- operations


class Operation(enum.StrEnum):
    """The name of a write operation, stored with its idempotency key and hashed into the
    request hash: a key used for one operation is ``idempotency_key_reused`` for another."""

    OPEN_ACCOUNT = "open_account"
    ENSURE_PLATFORM_ACCOUNTS = "ensure_platform_accounts"
    SET_OVERDRAFT_LIMIT = "set_overdraft_limit"
    DEPOSIT = "deposit"
    FREEZE = "freeze"
    CAPTURE_HOLD = "capture_hold"
    FINALIZE_HOLD = "finalize_hold"
    RELEASE_HOLD = "release_hold"
    EXPIRE_HOLD = "expire_hold"
    EXTEND_HOLD = "extend_hold"
    RECORD_ENTRIES = "record_entries"
    RECORD_ENTRIES_MANY = "record_entries_many"
    RECORD_ENTRIES_ATOMICALLY = "record_entries_atomically"
    REVERSE_TRANSACTION = "reverse_transaction"


class TransactionStep(enum.StrEnum):
    """The step name ``derive_transaction_id(tenant, key, step)`` hashes: the transaction ID
    of an operation's journal transaction (or, for an extension, its event's identity).
    ``record_entries_many`` numbers its transactions ``record:<n>``, see :meth:`record`."""

    SET_OVERDRAFT_LIMIT = "set_overdraft_limit"
    DEPOSIT = "deposit"
    FREEZE = "freeze"
    CAPTURE = "capture"
    FINALIZE = "finalize"
    RELEASE = "release_hold"
    EXPIRE = "expire_hold"
    EXTEND = "extend_hold"
    RECORD = "record"
    REVERSE = "reverse"

    @staticmethod
    def record(number: int | None) -> str:
        """``record`` for ``record_entries``; ``record:<n>`` for batch ``n`` of a many-call."""
        return TransactionStep.RECORD.value if number is None else f"record:{number}"


class EventType(enum.StrEnum):
    """The type of an outbox event (the bus subject's last token)."""

    INTENT_CREATED = "INTENT_CREATED"
    ORDER_CREATED = "ORDER_CREATED"
    PAYMENT_SUCCEEDED = "PAYMENT_SUCCEEDED"
    HOLD_RELEASED = "HOLD_RELEASED"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    HOLD_EXTENDED = "HOLD_EXTENDED"


EVENT_VERSION: Final = "1.0"

# ---------------------------------------------------------------------------- LedgerEntry v1.0

LEDGER_ENTRY_VERSION: Final = "1.0"
# The LedgerEntry v1.0 fields in the schema's order: the column order of every export.
LEDGER_ENTRY_FIELDS: Final[tuple[str, ...]] = (
    "ledger_entry_id",
    "tenant_id",
    "project_id",
    "env",
    "asset_id",
    "task_id",
    "external_ref",
    "direction",
    "amount",
    "currency",
    "reason",
    "category",
    "tags",
    "meta",
    "occurred_at",
    "recorded_at",
)
# The references of a record: at least one of the last three names what the money was for.
LEDGER_ENTRY_REFERENCES: Final[tuple[str, ...]] = (
    "project_id",
    "asset_id",
    "task_id",
    "external_ref",
)
LEDGER_ENTRY_SUBJECTS: Final[tuple[str, ...]] = ("asset_id", "task_id", "external_ref")
