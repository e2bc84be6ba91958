"""Which database errors are transient (retry) and which are a typed collision (answer).

Serialization failures, deadlocks, lock timeouts and SQLite's busy database are transient: the
unit of work is run again. A unique violation is transient only when it is the idempotency-key
claim race (a concurrent duplicate committed first: the retry answers from its result); any
other unique violation is the typed error it means (:func:`collision_error`), at once.
"""

from __future__ import annotations

import sqlalchemy as sa

from ledger_db.errors import (
    AccountAlreadyExists,
    InvalidEntry,
    LedgerError,
    TransactionAlreadyReversed,
)

__all__ = ["collision_error", "is_claim_race", "is_retryable", "unique_violation"]

# The constraint of the idempotency-key claim (``pk_idempotency_keys``) as each engine names it.
_CLAIM_CONSTRAINT = "pk_idempotency_keys"
_CLAIM_COLUMNS_SQLITE = "idempotency_keys.tenant_id, idempotency_keys.idempotency_key"


def unique_violation(error: sa.exc.DBAPIError) -> str | None:
    """The violated unique constraint (PostgreSQL's name, or SQLite's column list), if any."""
    original = error.orig
    if getattr(original, "sqlstate", None) == "23505":
        diag = getattr(original, "diag", None)
        return str(getattr(diag, "constraint_name", None) or "unique")
    text = str(original)
    if text.startswith("UNIQUE constraint failed: "):
        return text.removeprefix("UNIQUE constraint failed: ")
    if text.startswith("journal_is_append_only: INSERT"):
        return text
    return None


def is_claim_race(constraint: str) -> bool:
    return constraint in (_CLAIM_CONSTRAINT, _CLAIM_COLUMNS_SQLITE)


def is_retryable(error: sa.exc.DBAPIError) -> bool:
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    # 40001 serialization_failure, 40P01 deadlock_detected, 55P03 lock_not_available.
    if sqlstate in {"40001", "40P01", "55P03"}:
        return True
    constraint = unique_violation(error)
    if constraint is not None:
        # Only the idempotency-key claim race is transient: a concurrent duplicate claimed the
        # key first; the retry sees its committed result and answers from it.
        return is_claim_race(constraint)
    text = str(original).lower()
    return "database is locked" in text or "database is busy" in text


# Which typed error a unique violation of each constraint is (PostgreSQL constraint names and
# the table of SQLite's message), when a concurrent writer took the same ID first.
_COLLISIONS: tuple[tuple[str, str, type[LedgerError], str], ...] = (
    ("pk_holds", "holds.", InvalidEntry, "hold_id"),
    ("pk_accounts", "accounts.", AccountAlreadyExists, "account_id"),
    (
        "uq_journal_transactions_tenant_id_reverses_transaction_id",
        "journal_transactions.tenant_id, journal_transactions.reverses",
        TransactionAlreadyReversed,
        "transaction_id",
    ),
    (
        "uq_journal_entries_tenant_id_ledger_entry_id",
        "journal_entries",
        InvalidEntry,
        "ledger_entry_id",
    ),
)


def collision_error(error: sa.exc.DBAPIError) -> LedgerError | None:
    """A unique violation that is not the claim race, as the typed error it means."""
    constraint = unique_violation(error)
    if constraint is None or is_claim_race(constraint):
        return None
    for name, sqlite_prefix, error_class, field in _COLLISIONS:
        if (
            constraint == name
            or constraint.startswith(sqlite_prefix)
            or sqlite_prefix in constraint
        ):
            return error_class(f"a concurrent request took this {field} first", field=field)
    return InvalidEntry(f"the write collides with an existing row ({constraint})", field=None)
