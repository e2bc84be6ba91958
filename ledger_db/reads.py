"""The ledger's read side: accounts, balances, holds, journal transactions and entries, outbox
events. Each function takes an open connection and checked-free arguments as the public
:class:`ledger_db.ledger.Ledger` methods receive them, checks them and reads; none writes.

The row loaders here (``account_row``, ``hold_row``, ``transaction_row``) are shared with the
write path, which reads the same rows inside its transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ledger_db import limits
from ledger_db.errors import AccountNotFound, HoldNotFound, InvalidEntry, TransactionNotFound
from ledger_db.journal import entry_from_row
from ledger_db.models import (
    Account,
    AccountKind,
    Balance,
    EntriesPage,
    Event,
    Hold,
    HoldState,
    JournalEntry,
    TransactionKind,
    TransactionResult,
)
from ledger_db.rules.accounts import AccountRecord
from ledger_db.schema import accounts, holds, journal_entries, journal_transactions, outbox_events
from ledger_db.sums import amounts_in_out, exact_sum, exact_sum_columns
from ledger_db.validation import (
    check_account_id,
    check_bool,
    check_identifier,
    check_instant,
    check_limit,
    check_sequence,
    check_tenant_id,
)
from ledger_db.vocabulary import hold_bucket_id

__all__ = [
    "account_from_row",
    "account_record",
    "account_row",
    "balance",
    "events",
    "find_account",
    "hold_exists",
    "hold_from_row",
    "hold_row",
    "list_accounts",
    "list_holds",
    "list_ledger_entries",
    "list_transactions",
    "parse_cursor",
    "reversed_by",
    "transaction_row",
    "with_entries",
]

# A keyset cursor of list_ledger_entries; 19 digits is more than 2^63 - 1 already.
_CURSOR = re.compile(r"([0-9]{1,19})\.([0-9]{1,19})", re.ASCII)

# ---------------------------------------------------------------------------- row loaders


def account_row(conn: sa.Connection, tenant_id: str, account_id: str) -> Any:
    row = conn.execute(
        sa.select(accounts).where(
            accounts.c.tenant_id == tenant_id, accounts.c.account_id == account_id
        )
    ).first()
    if row is None:
        raise AccountNotFound(f"account {account_id!r} not found", account_id=account_id)
    return row


def find_account(conn: sa.Connection, tenant_id: str, account_id: str) -> AccountRecord | None:
    """The account as the rules see it, or None: the rules say ``account_not_found`` in their
    own order of checks."""
    row = conn.execute(
        sa.select(accounts).where(
            accounts.c.tenant_id == tenant_id, accounts.c.account_id == account_id
        )
    ).first()
    return None if row is None else AccountRecord.from_mapping(row._mapping)


def account_record(row: Any) -> AccountRecord:
    return AccountRecord.from_mapping(row._mapping)


def account_from_row(row: Any) -> Account:
    # The accounts table's columns are the Account record's fields plus the snapshot.
    return Account.model_validate(dict(row._mapping))


def hold_row(conn: sa.Connection, tenant_id: str, hold_id: str) -> Any:
    row = conn.execute(
        sa.select(holds).where(holds.c.tenant_id == tenant_id, holds.c.hold_id == hold_id)
    ).first()
    if row is None:
        raise HoldNotFound(f"hold {hold_id!r} not found", hold_id=hold_id)
    return row


def hold_exists(conn: sa.Connection, tenant_id: str, hold_id: str) -> bool:
    return (
        conn.execute(
            sa.select(holds.c.hold_id).where(
                holds.c.tenant_id == tenant_id, holds.c.hold_id == hold_id
            )
        ).first()
        is not None
    )


def hold_from_row(row: Any) -> Hold:
    # The holds table's columns are the Hold record's fields (extra ones are ignored).
    return Hold.model_validate({**row._mapping, "meta": dict(row.meta or {})})


def transaction_row(conn: sa.Connection, tenant_id: str, transaction_id: str) -> Any:
    row = conn.execute(
        sa.select(journal_transactions).where(
            journal_transactions.c.tenant_id == tenant_id,
            journal_transactions.c.transaction_id == transaction_id,
        )
    ).first()
    if row is None:
        raise TransactionNotFound(f"transaction {transaction_id!r} not found")
    return row


def reversed_by(conn: sa.Connection, tenant_id: str, transaction_id: str) -> str | None:
    """The transaction that reversed ``transaction_id``, if one did."""
    row = conn.execute(
        sa.select(journal_transactions.c.transaction_id).where(
            journal_transactions.c.tenant_id == tenant_id,
            journal_transactions.c.reverses_transaction_id == transaction_id,
        )
    ).first()
    return None if row is None else str(row.transaction_id)


def with_entries(conn: sa.Connection, rows: Sequence[Any]) -> list[TransactionResult]:
    """Journal transaction rows as records carrying their entries (one query for all rows)."""
    entries: dict[int, list[JournalEntry]] = {int(row.sequence): [] for row in rows}
    if entries:
        for entry in conn.execute(
            sa.select(journal_entries)
            .where(journal_entries.c.journal_sequence.in_(list(entries)))
            .order_by(journal_entries.c.journal_sequence, journal_entries.c.entry_index)
        ):
            entries[int(entry.journal_sequence)].append(entry_from_row(entry))
    return [
        TransactionResult(
            tenant_id=row.tenant_id,
            transaction_id=row.transaction_id,
            kind=TransactionKind(row.kind),
            journal_sequence=int(row.sequence),
            entries=entries[int(row.sequence)],
            reverses_transaction_id=row.reverses_transaction_id,
        )
        for row in rows
    ]


# ---------------------------------------------------------------------------- accounts


def list_accounts(conn: sa.Connection, tenant_id: str, include_internal: bool) -> list[Account]:
    check_tenant_id(tenant_id)
    check_bool(include_internal, "include_internal")
    query = sa.select(accounts).where(accounts.c.tenant_id == tenant_id)
    if not include_internal:
        query = query.where(accounts.c.kind != AccountKind.HOLD.value)
    rows = conn.execute(query.order_by(accounts.c.account_id)).all()
    return [account_from_row(row) for row in rows]


def balance(
    conn: sa.Connection, dialect: str, tenant_id: str, account_id: str, as_of: datetime | None
) -> Balance:
    """The account's balance snapshot, or replayed from the journal up to ``as_of``.

    For an agent account, posted counts its hold bucket too: frozen money is still the
    agent's; held is what the bucket carries; available is what may be spent.
    """
    check_tenant_id(tenant_id)
    check_account_id(account_id)
    if as_of is not None:
        as_of = check_instant(as_of, "as_of")
    row = account_row(conn, tenant_id, account_id)
    bucket = hold_bucket_id(account_id)
    ids = [account_id, bucket] if row.kind == AccountKind.AGENT.value else [account_id]
    if as_of is None:
        rows = {
            r.account_id: r
            for r in conn.execute(
                sa.select(accounts).where(
                    accounts.c.tenant_id == tenant_id, accounts.c.account_id.in_(ids)
                )
            )
        }
        own = int(rows[account_id].balance_minor)
        bucket_row = rows.get(bucket)
        held = int(bucket_row.balance_minor) if bucket_row is not None else 0
        sequence = max(int(r.last_sequence) for r in rows.values())
    else:
        # IN and OUT summed apart (each exact past 2^63 - 1, see ledger_db.sums).
        amount_in, amount_out = amounts_in_out()
        sums = {
            r.account_id: (
                exact_sum(r, dialect, "in") - exact_sum(r, dialect, "out"),
                int(r.last or 0),
            )
            for r in conn.execute(
                sa.select(
                    journal_entries.c.account_id,
                    *exact_sum_columns(amount_in, dialect, "in"),
                    *exact_sum_columns(amount_out, dialect, "out"),
                    sa.func.max(journal_entries.c.journal_sequence).label("last"),
                )
                .where(
                    journal_entries.c.tenant_id == tenant_id,
                    journal_entries.c.account_id.in_(ids),
                    journal_entries.c.recorded_at <= as_of,
                )
                .group_by(journal_entries.c.account_id)
            )
        }
        own = sums.get(account_id, (0, 0))[0]
        held = sums.get(bucket, (0, 0))[0]
        sequence = max([s[1] for s in sums.values()], default=0)
    return Balance(
        tenant_id=tenant_id,
        account_id=account_id,
        currency=row.currency,
        posted_minor=own + held,
        held_minor=held,
        available_minor=own,
        overdraft_limit_minor=int(row.overdraft_limit_minor),
        journal_sequence=sequence,
        as_of=as_of,
    )


# ---------------------------------------------------------------------------- holds


def list_holds(
    conn: sa.Connection,
    *,
    tenant_id: str,
    state: str | None,
    expires_before: datetime | None,
    account_id: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[Hold]:
    query = sa.select(holds).where(holds.c.tenant_id == check_tenant_id(tenant_id))
    limit = check_limit(limit)
    if after is not None:
        if not isinstance(after, tuple) or len(after) != 2:
            raise InvalidEntry("after is (created_at, hold_id)", field="after")
        after_created_at, after_hold_id = after
        query = query.where(
            sa.tuple_(holds.c.created_at, holds.c.hold_id)
            > sa.tuple_(
                sa.literal(check_instant(after_created_at, "after"), holds.c.created_at.type),
                sa.literal(
                    check_identifier(after_hold_id, "after", length_max=limits.id_length_max)
                ),
            )
        )
    if state is not None:
        if not isinstance(state, str) or state not in {member.value for member in HoldState}:
            raise InvalidEntry(
                f"state is one of {', '.join(member.value for member in HoldState)}",
                field="state",
            )
        query = query.where(holds.c.state == state)
    if expires_before is not None:
        query = query.where(holds.c.expires_at < check_instant(expires_before, "expires_before"))
    if account_id is not None:
        query = query.where(holds.c.account_id == check_account_id(account_id))
    rows = conn.execute(query.order_by(holds.c.created_at, holds.c.hold_id).limit(limit)).all()
    return [hold_from_row(row) for row in rows]


# ---------------------------------------------------------------------------- the journal


def parse_cursor(cursor: object) -> tuple[int, int] | None:
    """``"<journal_sequence>.<entry_index>"`` of the last entry seen, both 64-bit."""
    if cursor is None:
        return None
    match = _CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None or max(int(part) for part in match.groups()) > limits.sequence_max:
        raise InvalidEntry(f"bad cursor {str(cursor)[:40]!r}", field="cursor")
    return int(match.group(1)), int(match.group(2))


def check_entries_query(
    tenant_id: str, account_id: str, time_field: str, limit: object, cursor: object
) -> tuple[int, tuple[int, int] | None]:
    """The arguments of :func:`list_ledger_entries` that need no database: the page size and
    the cursor's position."""
    check_tenant_id(tenant_id)
    check_account_id(account_id)
    if time_field not in ("occurred_at", "recorded_at"):
        raise InvalidEntry("time_field is occurred_at or recorded_at", field="time_field")
    if (
        isinstance(limit, bool)
        or not isinstance(limit, int)
        or not 1 <= limit <= limits.page_size_max
    ):
        raise InvalidEntry(f"limit must be 1..{limits.page_size_max}", field="limit")
    return limit, parse_cursor(cursor)


def list_ledger_entries(
    conn: sa.Connection,
    *,
    tenant_id: str,
    account_id: str,
    from_ts: datetime | None,
    to_ts: datetime | None,
    cursor: str | None,
    limit: int,
    time_field: str,
) -> EntriesPage:
    """The account's entries in journal order, ``from_ts <= t < to_ts``, keyset-paginated."""
    limit, after = check_entries_query(tenant_id, account_id, time_field, limit, cursor)
    column = journal_entries.c[time_field]
    query = sa.select(journal_entries).where(
        journal_entries.c.tenant_id == tenant_id, journal_entries.c.account_id == account_id
    )
    if from_ts is not None:
        query = query.where(column >= check_instant(from_ts, "from_ts"))
    if to_ts is not None:
        query = query.where(column < check_instant(to_ts, "to_ts"))
    if after is not None:
        query = query.where(
            sa.tuple_(journal_entries.c.journal_sequence, journal_entries.c.entry_index)
            > sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
        )
    account_row(conn, tenant_id, account_id)
    rows = conn.execute(
        query.order_by(journal_entries.c.journal_sequence, journal_entries.c.entry_index).limit(
            limit + 1
        )
    ).all()
    entries = [entry_from_row(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = entries[-1]
        next_cursor = f"{last.journal_sequence}.{last.entry_index}"
    return EntriesPage(entries=entries, next_cursor=next_cursor)


def list_transactions(
    conn: sa.Connection, *, tenant_id: str, hold_id: str | None, after_sequence: int, limit: int
) -> list[TransactionResult]:
    check_tenant_id(tenant_id)
    limit = check_limit(limit)
    query = sa.select(journal_transactions).where(
        journal_transactions.c.tenant_id == tenant_id,
        journal_transactions.c.sequence > check_sequence(after_sequence, "after_sequence"),
    )
    if hold_id is not None:
        check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)
        query = query.where(journal_transactions.c.hold_id == hold_id)
    rows = conn.execute(query.order_by(journal_transactions.c.sequence).limit(limit)).all()
    return with_entries(conn, rows)


# ---------------------------------------------------------------------------- outbox


def tenant_events_query(
    *,
    tenant_id: str,
    unsent_only: bool,
    transaction_id: str | None,
    hold_id: str | None,
) -> sa.Select[Any]:
    query = sa.select(outbox_events).where(outbox_events.c.tenant_id == check_tenant_id(tenant_id))
    if check_bool(unsent_only, "unsent_only"):
        query = query.where(outbox_events.c.sent_at.is_(None))
    if transaction_id is not None:
        check_identifier(transaction_id, "transaction_id", length_max=limits.id_length_max)
        query = query.where(outbox_events.c.transaction_id == transaction_id)
    if hold_id is not None:
        check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)
        query = query.where(outbox_events.c.hold_id == hold_id)
    return query


def unsent_events_query() -> sa.Select[Any]:
    return sa.select(outbox_events).where(outbox_events.c.sent_at.is_(None))


def check_events_page(after_sequence: object, limit: object) -> tuple[int, int]:
    return check_sequence(after_sequence, "after_sequence"), check_limit(limit)


def events(
    conn: sa.Connection, query: sa.Select[Any], after_sequence: int, page_size: int
) -> list[Event]:
    query = query.where(outbox_events.c.sequence > after_sequence)
    rows = conn.execute(query.order_by(outbox_events.c.sequence).limit(page_size)).all()
    return [
        Event(
            event_id=row.event_id,
            type=row.type,
            version=row.version,
            tenant_id=row.tenant_id,
            occurred_at=row.occurred_at,
            hold_id=row.hold_id,
            order_id=row.order_id,
            account_id=row.account_id,
            transaction_id=row.transaction_id,
            payload=row.payload,
            sequence=int(row.sequence),
            sent_at=row.sent_at,
        )
        for row in rows
    ]
