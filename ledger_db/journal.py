"""The journal: balanced, hash-chained, append-only transactions, and their verification.

Chains
    Since migration 0004 the journal is one hash chain *per tenant* (``journal_chains`` holds each
    chain's head). A transaction carries two positions: ``chain_sequence``, gapless within its
    tenant's chain (1, 2, 3, ...), and ``sequence``, the global ordering key (unique, increasing
    within a tenant; from a database sequence on PostgreSQL, so not gapless across tenants when
    a write rolls back after taking one; ``max + 1`` under SQLite's single writer). Cursors and
    ``journal_sequence`` keep meaning the global key. Rows written before 0004 form the old
    single global chain (``chain_sequence`` NULL, versions 1 and 2), verified as they were
    written; ``journal_head`` is frozen at its head, and every tenant chain starts from that hash
    (``GENESIS_HASH`` on a database created after 0004).

Lock order (fixed, so PostgreSQL writers never deadlock within one transaction)
    the hold row (if any), then the accounts in ID order (``Ledger._lock_accounts``), then the
    tenant's ``journal_chains`` row last (:func:`append`). A write of tenant A never touches a
    row of tenant B, so two tenants never wait on each other. The global ``sequence`` is taken
    while the chain row is locked, so within a tenant it increases in commit order.

Appending is the last step of every write: the caller has already locked the rows it decided
on; :func:`append` then locks the tenant's chain row, takes the next positions, chains the hash,
inserts the rows (the entries in one statement) and moves the balance snapshots.

Hash formats are versioned (``journal_transactions.hash_version``) and each version is kept
forever, so a journal written by an older release stays verifiable:

- version 1: SHA-256 over ``prev_hash`` and the canonical JSON of the transaction's columns and
  of each entry's columns except its tenant, transaction ID and journal sequence (what the first
  release hashed);
- version 2: SHA-256 over the canonical JSON of *every* stored column of the transaction
  (``prev_hash`` and ``hash_version`` included) and of each of its entries, exactly as the
  database hands them back: fixed-width UTC instants, ints, booleans, and meta as stored;
- version 3 (written today): version 2's body plus the chain field ``chain_sequence`` and a
  ``format`` tag; ``prev_hash`` is the previous hash *in the tenant's chain*.

A new format is one more entry in :data:`HASH_VERSIONS` plus a new value of
:data:`HASH_VERSION_CURRENT`; verification dispatches on each row's own version.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ledger_db import limits, row_audit
from ledger_db.errors import InvalidAmount, InvalidEntry, UnbalancedTransaction
from ledger_db.ids import derive_entry_id
from ledger_db.models import CONTROL_KINDS, Direction, JournalEntry, Problem, TransactionKind
from ledger_db.schema import (
    accounts,
    holds,
    instant_text,
    journal_chains,
    journal_entries,
    journal_head,
    journal_transactions,
)

__all__ = [
    "GENESIS_HASH",
    "HASH_VERSIONS",
    "HASH_VERSION_CURRENT",
    "ChainHead",
    "ChainSegment",
    "EntryDraft",
    "TransactionDraft",
    "append",
    "chain_hash_at",
    "chain_heads",
    "entry_from_row",
    "iso",
    "last_position",
    "transaction_hash",
    "verify",
    "verify_segment",
]

GENESIS_HASH = "0" * 64
_VERIFY_BATCH_TRANSACTIONS = 500


def iso(value: datetime | None) -> str | None:
    """The text form of an instant used in version-1 hashes, requests and event payloads."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class EntryDraft:
    """An entry decided on but not yet written."""

    account_id: str
    direction: Direction
    amount_minor: int
    currency: str
    reason: str
    category: str
    env: str = "prod"
    project_id: str | None = None
    asset_id: str | None = None
    task_id: str | None = None
    external_ref: str | None = None
    tags: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    counterpart: bool = False
    hold_id: str | None = None
    ledger_entry_id: str | None = None


@dataclass(frozen=True)
class TransactionDraft:
    """A balanced group of entries (none for a control transaction) not yet written."""

    tenant_id: str
    transaction_id: str
    kind: str
    idempotency_key: str
    occurred_at: datetime
    recorded_at: datetime
    entries: Sequence[EntryDraft]
    hold_id: str | None = None
    reverses_transaction_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


# --------------------------------------------------------------------------------------------
# Version 1 (kept as it was written: verifiable forever)


def _hash_view_of_transaction_v1(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "sequence": row["sequence"],
        "transaction_id": row["transaction_id"],
        "tenant_id": row["tenant_id"],
        "kind": row["kind"],
        "idempotency_key": row["idempotency_key"],
        "hold_id": row["hold_id"],
        "reverses_transaction_id": row["reverses_transaction_id"],
        "entry_count": row["entry_count"],
        "occurred_at": iso(row["occurred_at"]),
        "recorded_at": iso(row["recorded_at"]),
        "meta": row["meta"],
    }


_ENTRY_HASHED_COLUMNS_V1 = (
    "entry_index",
    "ledger_entry_id",
    "account_id",
    "project_id",
    "env",
    "asset_id",
    "task_id",
    "external_ref",
    "direction",
    "amount_minor",
    "currency",
    "reason",
    "category",
    "tags",
    "meta",
    "counterpart",
    "hold_id",
)


def _hash_view_of_entry_v1(row: Mapping[str, Any]) -> dict[str, Any]:
    view = {column: row[column] for column in _ENTRY_HASHED_COLUMNS_V1}
    view["counterpart"] = bool(view["counterpart"])
    view["occurred_at"] = iso(row["occurred_at"])
    view["recorded_at"] = iso(row["recorded_at"])
    return view


def _hash_v1(transaction: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> str:
    digest = hashlib.sha256()
    digest.update(str(transaction["prev_hash"]).encode())
    digest.update(
        _canonical(
            {
                "transaction": _hash_view_of_transaction_v1(transaction),
                "entries": [_hash_view_of_entry_v1(entry) for entry in entries],
            }
        )
    )
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Version 2: every stored column, as stored

TRANSACTION_COLUMNS_V2: tuple[str, ...] = (
    "sequence",
    "transaction_id",
    "tenant_id",
    "kind",
    "idempotency_key",
    "hold_id",
    "reverses_transaction_id",
    "entry_count",
    "occurred_at",
    "recorded_at",
    "meta",
    "prev_hash",
    "hash_version",
)
ENTRY_COLUMNS_V2: tuple[str, ...] = (
    "journal_sequence",
    "entry_index",
    "ledger_entry_id",
    "transaction_id",
    "tenant_id",
    "account_id",
    "project_id",
    "env",
    "asset_id",
    "task_id",
    "external_ref",
    "direction",
    "amount_minor",
    "currency",
    "reason",
    "category",
    "tags",
    "meta",
    "occurred_at",
    "recorded_at",
    "counterpart",
    "hold_id",
)
_INTEGER_COLUMNS = frozenset(
    {
        "sequence",
        "chain_sequence",
        "entry_count",
        "hash_version",
        "journal_sequence",
        "entry_index",
        "amount_minor",
    }
)


def _stored_value(column: str, value: Any) -> Any:
    """A column's value in the one form both engines hand back."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return instant_text(value)
    if column in _INTEGER_COLUMNS:
        return int(value)
    if column == "counterpart":
        return bool(value)
    return value


def _hash_v2(transaction: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> str:
    body = {
        "transaction": {
            column: _stored_value(column, transaction[column]) for column in TRANSACTION_COLUMNS_V2
        },
        "entries": [
            {column: _stored_value(column, entry[column]) for column in ENTRY_COLUMNS_V2}
            for entry in entries
        ],
    }
    return hashlib.sha256(_canonical(body)).hexdigest()


# --------------------------------------------------------------------------------------------
# Version 3: every stored column with the chain fields; prev_hash links the tenant's chain

TRANSACTION_COLUMNS_V3: tuple[str, ...] = (*TRANSACTION_COLUMNS_V2, "chain_sequence")
ENTRY_COLUMNS_V3: tuple[str, ...] = ENTRY_COLUMNS_V2


def _hash_v3(transaction: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]) -> str:
    body = {
        "format": 3,
        "transaction": {
            column: _stored_value(column, transaction[column]) for column in TRANSACTION_COLUMNS_V3
        },
        "entries": [
            {column: _stored_value(column, entry[column]) for column in ENTRY_COLUMNS_V3}
            for entry in entries
        ],
    }
    return hashlib.sha256(_canonical(body)).hexdigest()


HashFunction = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]]], str]
HASH_VERSIONS: Mapping[int, HashFunction] = {1: _hash_v1, 2: _hash_v2, 3: _hash_v3}
HASH_VERSION_CURRENT = 3


def transaction_hash(
    transaction_row: Mapping[str, Any], entry_rows: Iterable[Mapping[str, Any]]
) -> str:
    """The hash of a transaction (with its ``prev_hash`` and ``hash_version``) and its entries,
    in the format its ``hash_version`` names. Raises ``KeyError`` for an unknown version."""
    hasher = HASH_VERSIONS[int(transaction_row["hash_version"])]
    return hasher(transaction_row, sorted(entry_rows, key=lambda e: int(e["entry_index"])))


def check_balanced(entries: Sequence[EntryDraft]) -> None:
    """Per currency, IN must equal OUT; a programmer error if not, reported with its code."""
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        totals[entry.currency] += (
            entry.amount_minor if entry.direction is Direction.IN else -entry.amount_minor
        )
    unbalanced = {currency: total for currency, total in totals.items() if total != 0}
    if unbalanced or not entries:
        raise UnbalancedTransaction(
            "transaction does not balance per currency", differences=unbalanced
        )


def _check_shape(draft: TransactionDraft) -> None:
    if draft.kind in CONTROL_KINDS:
        if draft.entries:
            raise UnbalancedTransaction("a control transaction carries no entries")
        return
    check_balanced(draft.entries)
    if len(draft.entries) > limits.entries_per_transaction_max:
        raise UnbalancedTransaction("too many entries in one transaction")


def _check_entry_ids_free(connection: sa.Connection, tenant_id: str, ids: Sequence[str]) -> None:
    """Every ledger_entry_id is unique per tenant: one taken already is a typed error, found
    before anything is written (a unique violation would otherwise end the transaction)."""
    if len(set(ids)) != len(ids):
        raise InvalidEntry("a ledger_entry_id appears twice", field="ledger_entry_id")
    for start in range(0, len(ids), limits.page_size_max):
        taken = connection.execute(
            sa.select(journal_entries.c.ledger_entry_id)
            .where(
                journal_entries.c.tenant_id == tenant_id,
                journal_entries.c.ledger_entry_id.in_(ids[start : start + limits.page_size_max]),
            )
            .limit(1)
        ).first()
        if taken is not None:
            raise InvalidEntry(
                f"ledger_entry_id {taken.ledger_entry_id} is recorded already",
                field="ledger_entry_id",
                ledger_entry_id=taken.ledger_entry_id,
            )


# The tenant's chain row, locked (the last lock of a write), with the next global sequence.
_LOCK_CHAIN = {
    "postgresql": sa.text(
        "SELECT last_sequence, last_hash, nextval('journal_transactions_sequence') AS next "
        "FROM journal_chains WHERE tenant_id = :tenant_id FOR UPDATE"
    ),
    # One writer at a time (BEGIN IMMEDIATE): the next global sequence is max + 1, gapless.
    "sqlite": sa.text(
        "SELECT last_sequence, last_hash, "
        "(SELECT coalesce(max(sequence), 0) + 1 FROM journal_transactions) AS next "
        "FROM journal_chains WHERE tenant_id = :tenant_id"
    ),
}
# A tenant's first write starts its chain at the frozen head of the pre-0004 global chain.
_START_CHAIN = sa.text(
    "INSERT INTO journal_chains (tenant_id, last_sequence, last_hash) "
    "SELECT :tenant_id, 0, last_hash FROM journal_head WHERE id = 1 "
    "ON CONFLICT (tenant_id) DO NOTHING"
)
_MOVE_CHAIN = sa.text(
    "UPDATE journal_chains SET last_sequence = :chain_sequence, last_hash = :hash "
    "WHERE tenant_id = :tenant_id"
)
_TRANSACTION_COLUMNS = ", ".join(column.name for column in journal_transactions.columns)
_ENTRY_COLUMNS = ", ".join(column.name for column in journal_entries.columns)
_APPEND_PG = sa.text(
    f"WITH t AS (INSERT INTO journal_transactions ({_TRANSACTION_COLUMNS}) "
    f"SELECT {_TRANSACTION_COLUMNS} FROM "
    "jsonb_populate_record(NULL::journal_transactions, CAST(:transaction AS jsonb))), "
    f"e AS (INSERT INTO journal_entries ({_ENTRY_COLUMNS}) SELECT {_ENTRY_COLUMNS} FROM "
    "jsonb_populate_recordset(NULL::journal_entries, CAST(:entries AS jsonb))), "
    "c AS (UPDATE journal_chains SET last_sequence = :chain_sequence, last_hash = :hash "
    "WHERE tenant_id = :tenant_id) "
    "UPDATE accounts SET balance_minor = b.balance_minor, last_sequence = :sequence "
    "FROM jsonb_to_recordset(CAST(:balances AS jsonb)) AS b(account_id text, balance_minor bigint) "
    "WHERE accounts.tenant_id = :tenant_id AND accounts.account_id = b.account_id"
)


def _json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as the JSON object ``jsonb_populate_record`` reads (instants as fixed-width UTC
    text, JSON columns as JSON values)."""
    return {
        column: instant_text(value) if isinstance(value, datetime) else value
        for column, value in row.items()
    }


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_INSERT_TRANSACTION = journal_transactions.insert()
_INSERT_ENTRIES = journal_entries.insert()
_MOVE_BALANCE = (
    accounts.update()
    .where(
        accounts.c.tenant_id == sa.bindparam("b_tenant_id"),
        accounts.c.account_id == sa.bindparam("b_account_id"),
    )
    .values(
        balance_minor=sa.bindparam("b_balance_minor"),
        last_sequence=sa.bindparam("b_last_sequence"),
    )
)


_BALANCES = "ledger_locked_balances"


def remember_balances(
    connection: sa.Connection, tenant_id: str, balances: Mapping[str, int]
) -> None:
    """Notes balances read under their row locks in this unit of work, so that :func:`append`
    moves them without reading them again."""
    known: dict[tuple[str, str], int] = connection.info.setdefault(_BALANCES, {})
    for account_id, balance in balances.items():
        known[(tenant_id, account_id)] = balance


def forget_balances(connection: sa.Connection) -> None:
    """Drops the noted balances (a new unit of work; a savepoint rolled back)."""
    connection.info.pop(_BALANCES, None)


def _lock_chain(connection: sa.Connection, tenant_id: str) -> tuple[int, str, int]:
    """Locks the tenant's chain row (creating it on the tenant's first write); returns its last
    chain sequence and hash and the next global sequence."""
    statement = _LOCK_CHAIN[connection.dialect.name]
    head = connection.execute(statement, {"tenant_id": tenant_id}).first()
    if head is None:
        connection.execute(_START_CHAIN, {"tenant_id": tenant_id})
        head = connection.execute(statement, {"tenant_id": tenant_id}).first()
        if head is None:
            raise RuntimeError("journal_head is missing: the database is damaged (verify_journal)")
    return int(head.last_sequence), str(head.last_hash), int(head.next)


def append(
    connection: sa.Connection,
    draft: TransactionDraft,
    *,
    balances: Mapping[str, int] | None = None,
) -> tuple[int, list[JournalEntry]]:
    """Writes ``draft`` at the head of its tenant's chain and moves the balance snapshots;
    returns the global sequence and the entries written.

    The caller holds locks on every account the draft touches; this locks the tenant's chain
    row last. ``balances`` (account ID to balance, read under those locks and not moved since)
    spares reading them again.
    """
    _check_shape(draft)
    entry_ids = [
        entry.ledger_entry_id or derive_entry_id(draft.transaction_id, index)
        for index, entry in enumerate(draft.entries)
    ]
    # Derived IDs are unique by construction (a unique key still guards them); IDs a caller
    # chose are checked first, for the typed error naming the one taken.
    if any(entry.ledger_entry_id for entry in draft.entries):
        _check_entry_ids_free(connection, draft.tenant_id, entry_ids)
    deltas: dict[str, int] = defaultdict(int)
    for entry in draft.entries:
        deltas[entry.account_id] += (
            entry.amount_minor if entry.direction is Direction.IN else -entry.amount_minor
        )
    moved = sorted((account_id, delta) for account_id, delta in deltas.items() if delta)
    # The rows are locked by the caller; the new balances are computed here so that a balance
    # leaving the 64-bit range is refused the same way on both engines, before any write.
    known: dict[tuple[str, str], int] = connection.info.get(_BALANCES, {})
    if balances is not None and all(account_id in balances for account_id, _ in moved):
        current = {account_id: int(balances[account_id]) for account_id, _ in moved}
    elif all((draft.tenant_id, account_id) in known for account_id, _ in moved):
        current = {account_id: known[(draft.tenant_id, account_id)] for account_id, _ in moved}
    elif moved:
        current = {
            row.account_id: int(row.balance_minor)
            for row in connection.execute(
                sa.select(accounts.c.account_id, accounts.c.balance_minor).where(
                    accounts.c.tenant_id == draft.tenant_id,
                    accounts.c.account_id.in_([account_id for account_id, _ in moved]),
                )
            )
        }
    else:
        current = {}
    for account_id, delta in moved:
        if abs(current[account_id] + delta) > limits.amount_minor_max:
            raise InvalidAmount("balance would leave the 64-bit range", account_id=account_id)
    chain_last, prev_hash, sequence = _lock_chain(connection, draft.tenant_id)
    transaction_row: dict[str, Any] = {
        "sequence": sequence,
        "transaction_id": draft.transaction_id,
        "tenant_id": draft.tenant_id,
        "kind": draft.kind,
        "idempotency_key": draft.idempotency_key,
        "hold_id": draft.hold_id,
        "reverses_transaction_id": draft.reverses_transaction_id,
        "entry_count": len(draft.entries),
        "occurred_at": draft.occurred_at,
        "recorded_at": draft.recorded_at,
        "meta": draft.meta,
        "prev_hash": prev_hash,
        "hash_version": HASH_VERSION_CURRENT,
        "chain_sequence": chain_last + 1,
    }
    entry_rows: list[dict[str, Any]] = [
        {
            "journal_sequence": sequence,
            "entry_index": index,
            "ledger_entry_id": entry_ids[index],
            "transaction_id": draft.transaction_id,
            "tenant_id": draft.tenant_id,
            "account_id": entry.account_id,
            "project_id": entry.project_id,
            "env": entry.env,
            "asset_id": entry.asset_id,
            "task_id": entry.task_id,
            "external_ref": entry.external_ref,
            "direction": entry.direction.value,
            "amount_minor": entry.amount_minor,
            "currency": entry.currency,
            "reason": entry.reason,
            "category": entry.category,
            "tags": entry.tags,
            "meta": entry.meta,
            "occurred_at": entry.occurred_at or draft.occurred_at,
            "recorded_at": draft.recorded_at,
            "counterpart": entry.counterpart,
            "hold_id": entry.hold_id,
        }
        for index, entry in enumerate(draft.entries)
    ]
    new_hash = transaction_hash(transaction_row, entry_rows)
    for account_id, delta in moved:
        if (draft.tenant_id, account_id) in known:
            known[(draft.tenant_id, account_id)] = current[account_id] + delta
    if connection.dialect.name == "postgresql":
        # One round trip: the transaction, its entries, the chain head and the balances in one
        # statement (data-modifying CTEs; the entries' foreign key is checked at its end).
        connection.execute(
            _APPEND_PG,
            {
                "transaction": _json(_json_row({**transaction_row, "hash": new_hash})),
                "entries": _json([_json_row(row) for row in entry_rows]),
                "tenant_id": draft.tenant_id,
                "chain_sequence": chain_last + 1,
                "hash": new_hash,
                "sequence": sequence,
                "balances": _json(
                    [
                        {"account_id": account_id, "balance_minor": current[account_id] + delta}
                        for account_id, delta in moved
                    ]
                ),
            },
        )
        return sequence, [entry_from_row(row) for row in entry_rows]
    # Constant statements with parameters: compiled once, cached (a ``.values(...)`` per call
    # is compiled again every time).
    connection.execute(_INSERT_TRANSACTION, {**transaction_row, "hash": new_hash})
    if entry_rows:
        # All entries in one executemany (one pipelined round trip on psycopg, one call on
        # SQLite).
        connection.execute(_INSERT_ENTRIES, entry_rows)
    connection.execute(
        _MOVE_CHAIN,
        {"tenant_id": draft.tenant_id, "chain_sequence": chain_last + 1, "hash": new_hash},
    )
    if moved:
        connection.execute(
            _MOVE_BALANCE,
            [
                {
                    "b_tenant_id": draft.tenant_id,
                    "b_account_id": account_id,
                    "b_balance_minor": current[account_id] + delta,
                    "b_last_sequence": sequence,
                }
                for account_id, delta in moved
            ],
        )
    return sequence, [entry_from_row(row) for row in entry_rows]


def entry_from_row(row: Any) -> JournalEntry:
    """A journal entry record from a row mapping (database row or freshly built dict)."""
    mapping: Mapping[str, Any] = row if isinstance(row, dict) else row._mapping
    return JournalEntry(
        ledger_entry_id=mapping["ledger_entry_id"],
        transaction_id=mapping["transaction_id"],
        journal_sequence=int(mapping["journal_sequence"]),
        entry_index=int(mapping["entry_index"]),
        tenant_id=mapping["tenant_id"],
        account_id=mapping["account_id"],
        project_id=mapping["project_id"],
        env=mapping["env"],
        asset_id=mapping["asset_id"],
        task_id=mapping["task_id"],
        external_ref=mapping["external_ref"],
        direction=Direction(mapping["direction"]),
        amount_minor=int(mapping["amount_minor"]),
        currency=mapping["currency"],
        reason=mapping["reason"],
        category=mapping["category"],
        tags=mapping["tags"],
        meta=mapping["meta"] or {},
        occurred_at=mapping["occurred_at"],
        recorded_at=mapping["recorded_at"],
        counterpart=bool(mapping["counterpart"]),
        hold_id=mapping["hold_id"],
    )


@dataclass(frozen=True)
class ChainSegment:
    """What verifying a stretch of the journal (in global order) found, and where it ended."""

    problems: list[Problem]
    last_sequence: int
    last_hash: str
    reached_head: bool


@dataclass(frozen=True)
class ChainHead:
    """The head of one tenant's chain: its last chain sequence and that transaction's hash."""

    tenant_id: str
    sequence: int
    hash: str


def chain_heads(connection: sa.Connection) -> list[ChainHead]:
    """The head of every tenant chain, as stored in ``journal_chains``, sorted by tenant."""
    return [
        ChainHead(row.tenant_id, int(row.last_sequence), str(row.last_hash))
        for row in connection.execute(
            sa.select(journal_chains).order_by(journal_chains.c.tenant_id)
        )
    ]


def chain_hash_at(connection: sa.Connection, tenant_id: str, sequence: int) -> str | None:
    """The stored hash of the transaction at ``sequence`` of ``tenant_id``'s chain (its
    ``chain_sequence``), or ``None`` if there is none; sequence 0 is the chain's start."""
    if sequence == 0:
        return _legacy_head_hash(connection)
    value = connection.execute(
        sa.select(journal_transactions.c.hash).where(
            journal_transactions.c.tenant_id == tenant_id,
            journal_transactions.c.chain_sequence == sequence,
        )
    ).scalar()
    return None if value is None else str(value)


def last_position(connection: sa.Connection) -> tuple[int, str]:
    """The global sequence and hash of the journal's last transaction (``(0, GENESIS_HASH)``
    when it is empty): where a verification in global order reaches the head."""
    row = connection.execute(
        sa.select(journal_transactions.c.sequence, journal_transactions.c.hash)
        .order_by(journal_transactions.c.sequence.desc())
        .limit(1)
    ).first()
    return (0, GENESIS_HASH) if row is None else (int(row.sequence), str(row.hash))


def _legacy_head_hash(connection: sa.Connection) -> str:
    """The hash every tenant chain starts from: the last transaction of the pre-0004 global
    chain (``GENESIS_HASH`` if it has none)."""
    value = connection.execute(
        sa.select(journal_transactions.c.hash)
        .where(journal_transactions.c.chain_sequence.is_(None))
        .order_by(journal_transactions.c.sequence.desc())
        .limit(1)
    ).scalar()
    return GENESIS_HASH if value is None else str(value)


def _entries_of(
    connection: sa.Connection, sequences: Sequence[int]
) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if sequences:
        for entry in connection.execute(
            sa.select(journal_entries)
            .where(journal_entries.c.journal_sequence.in_(list(sequences)))
            .order_by(journal_entries.c.journal_sequence, journal_entries.c.entry_index)
        ):
            found[int(entry.journal_sequence)].append(dict(entry._mapping))
    return found


def _legacy_batches(connection: sa.Connection) -> Iterator[Sequence[Any]]:
    """The pre-0004 global chain in sequence order, in batches."""
    after = 0
    while True:
        batch = connection.execute(
            sa.select(journal_transactions)
            .where(
                journal_transactions.c.chain_sequence.is_(None),
                journal_transactions.c.sequence > after,
            )
            .order_by(journal_transactions.c.sequence)
            .limit(_VERIFY_BATCH_TRANSACTIONS)
        ).all()
        if not batch:
            return
        yield batch
        after = int(batch[-1].sequence)


def _chain_batches(connection: sa.Connection) -> Iterator[Sequence[Any]]:
    """Every tenant chain's transactions, tenant by tenant, each in global sequence order (the
    order they were appended in), in batches."""
    tenant, after = "", -1
    table = journal_transactions.c
    while True:
        batch = connection.execute(
            sa.select(journal_transactions)
            .where(
                table.chain_sequence.is_not(None),
                sa.or_(
                    table.tenant_id > tenant,
                    sa.and_(table.tenant_id == tenant, table.sequence > after),
                ),
            )
            .order_by(table.tenant_id, table.sequence)
            .limit(_VERIFY_BATCH_TRANSACTIONS)
        ).all()
        if not batch:
            return
        yield batch
        tenant, after = batch[-1].tenant_id, int(batch[-1].sequence)


def _observe(
    row: dict[str, Any],
    entries: list[dict[str, Any]],
    replayed: dict[tuple[str, str], int],
    opened: row_audit.AccountJournal | None,
) -> list[Problem]:
    for posted in entries:
        signed = int(posted["amount_minor"]) * (1 if posted["direction"] == "IN" else -1)
        replayed[(posted["tenant_id"], posted["account_id"])] += signed
    return [] if opened is None else opened.observe(row)


def verify(connection: sa.Connection) -> list[Problem]:
    """Recomputes every chain (the pre-0004 global chain, then each tenant's chain), checks
    every transaction balances, replays every balance, and cross-checks the rows that drive
    payouts (holds, accounts) against the journal.

    Returns every problem found, chain by chain in journal order, then by row; an empty list
    means the books are intact. A problem in a tenant chain names its tenant and its global
    ``journal_sequence`` (its chain position is in the message). Never raises on damaged data:
    what cannot be read is a problem too.
    """
    replayed: dict[tuple[str, str], int] = defaultdict(int)
    opened = row_audit.AccountJournal()
    problems: list[Problem] = []
    # 1. The global chain written before migration 0004 (versions 1 and 2).
    last_sequence, last_hash = 0, GENESIS_HASH
    for batch in _legacy_batches(connection):
        entries = _entries_of(connection, [int(row.sequence) for row in batch])
        for transaction in batch:
            row = dict(transaction._mapping)
            posted = entries.get(int(row["sequence"]), [])
            problems.extend(_verify_transaction(row, posted, last_sequence + 1, last_hash))
            problems.extend(_observe(row, posted, replayed, opened))
            last_sequence, last_hash = int(row["sequence"]), str(row["hash"])
    head = connection.execute(sa.select(journal_head).where(journal_head.c.id == 1)).first()
    expected = f"{last_sequence}:{last_hash}"
    if head is None:
        problems.append(
            Problem(
                kind="head_missing",
                message="journal_head has no row: the ledger cannot append",
                expected=expected,
            )
        )
    elif int(head.last_sequence) != last_sequence or head.last_hash != last_hash:
        problems.append(
            Problem(
                kind="head_mismatch",
                message="journal head does not point at the last transaction",
                journal_sequence=int(head.last_sequence),
                expected=expected,
                actual=f"{head.last_sequence}:{head.last_hash}",
            )
        )
    # 2. Each tenant's chain, from the global chain's head on.
    genesis = last_hash
    walked: dict[str, tuple[int, str]] = {}
    for batch in _chain_batches(connection):
        entries = _entries_of(connection, [int(row.sequence) for row in batch])
        for transaction in batch:
            row = dict(transaction._mapping)
            tenant_id = str(row["tenant_id"])
            position, prev = walked.get(tenant_id, (0, genesis))
            posted = entries.get(int(row["sequence"]), [])
            problems.extend(_verify_transaction(row, posted, position + 1, prev, chain=True))
            problems.extend(_observe(row, posted, replayed, opened))
            walked[tenant_id] = (int(row["chain_sequence"]), str(row["hash"]))
    problems.extend(_verify_chain_heads(connection, walked, genesis))
    problems.extend(_verify_balances(connection, replayed))
    problems.extend(_verify_holds(connection))
    problems.extend(row_audit.verify_accounts(connection, opened))
    problems.extend(row_audit.verify_holds(connection))
    return problems


def _verify_chain_heads(
    connection: sa.Connection, walked: Mapping[str, tuple[int, str]], genesis: str
) -> list[Problem]:
    """Each tenant's ``journal_chains`` row must point at the last transaction of its chain."""
    problems: list[Problem] = []
    stored = {head.tenant_id: head for head in chain_heads(connection)}
    for tenant_id in sorted(set(stored) | set(walked)):
        position, last = walked.get(tenant_id, (0, genesis))
        head = stored.get(tenant_id)
        if head is None:
            problems.append(
                Problem(
                    kind="head_missing",
                    message=f"tenant {tenant_id!r} has a chain but no journal_chains row",
                    tenant_id=tenant_id,
                    expected=f"{position}:{last}",
                )
            )
        elif head.sequence != position or head.hash != last:
            problems.append(
                Problem(
                    kind="head_mismatch",
                    message=f"the head of tenant {tenant_id!r}'s chain does not point at its "
                    "last transaction",
                    tenant_id=tenant_id,
                    expected=f"{position}:{last}",
                    actual=f"{head.sequence}:{head.hash}",
                )
            )
    return problems


def _predecessor(
    connection: sa.Connection, row: Mapping[str, Any], legacy_head: Callable[[], str]
) -> tuple[int, str]:
    """The position and hash the transaction ``row`` must follow in its chain, read from the
    stored journal (for a segment that starts inside the chain)."""
    table = journal_transactions.c
    if row["chain_sequence"] is None:
        found = connection.execute(
            sa.select(table.sequence, table.hash)
            .where(table.chain_sequence.is_(None), table.sequence < row["sequence"])
            .order_by(table.sequence.desc())
            .limit(1)
        ).first()
        return (0, GENESIS_HASH) if found is None else (int(found.sequence), str(found.hash))
    found = connection.execute(
        sa.select(table.chain_sequence, table.hash)
        .where(
            table.tenant_id == row["tenant_id"],
            table.chain_sequence.is_not(None),
            table.sequence < row["sequence"],
        )
        .order_by(table.sequence.desc())
        .limit(1)
    ).first()
    if found is None:
        return 0, legacy_head()
    return int(found.chain_sequence), str(found.hash)


def verify_segment(
    connection: sa.Connection, *, after_sequence: int, prev_hash: str, transactions_max: int
) -> ChainSegment:
    """Verifies the journal from a verified position on, in global order (``after_sequence``,
    whose transaction's hash was ``prev_hash``): at most ``transactions_max`` transactions, each
    checked as :func:`verify` checks it (chain position, link to the previous transaction of its
    own chain, hash, entries, balance). Balances, hold buckets and the rows that drive payouts
    are whole-book checks and stay :func:`verify`'s. A position whose transaction no longer has
    that hash is a ``chain_broken`` problem at it.

    On PostgreSQL the global sequence is taken before commit, so a transaction of one tenant
    may commit after a later-numbered one of another: a segment verified up to the head may
    miss it; :func:`verify` (the full walk) does not."""
    problems: list[Problem] = []
    if after_sequence:
        stored = connection.execute(
            sa.select(journal_transactions.c.hash).where(
                journal_transactions.c.sequence == after_sequence
            )
        ).scalar()
        if stored != prev_hash:
            problems.append(
                Problem(
                    kind="chain_broken",
                    message="the verified position's transaction changed since it was verified",
                    journal_sequence=after_sequence,
                    expected=prev_hash,
                    actual=stored,
                )
            )
    legacy: list[str] = []

    def legacy_head() -> str:
        if not legacy:
            legacy.append(_legacy_head_hash(connection))
        return legacy[0]

    state: dict[str | None, tuple[int, str]] = {}
    last_sequence, last_hash, walked = after_sequence, prev_hash, 0
    while walked < transactions_max:
        batch = connection.execute(
            sa.select(journal_transactions)
            .where(journal_transactions.c.sequence > last_sequence)
            .order_by(journal_transactions.c.sequence)
            .limit(min(transactions_max - walked, _VERIFY_BATCH_TRANSACTIONS))
        ).all()
        if not batch:
            break
        entries = _entries_of(connection, [int(row.sequence) for row in batch])
        for transaction in batch:
            row = dict(transaction._mapping)
            chained = row["chain_sequence"] is not None
            key = str(row["tenant_id"]) if chained else None
            if key not in state:
                state[key] = _predecessor(connection, row, legacy_head)
            position, prev = state[key]
            posted = entries.get(int(row["sequence"]), [])
            problems.extend(_verify_transaction(row, posted, position + 1, prev, chain=chained))
            state[key] = (int(row["chain_sequence" if chained else "sequence"]), str(row["hash"]))
            last_sequence, last_hash = int(row["sequence"]), str(row["hash"])
        walked += len(batch)
    return ChainSegment(problems, last_sequence, last_hash, walked < transactions_max)


_KNOWN_KINDS = frozenset(kind.value for kind in TransactionKind)


def _verify_transaction(
    transaction: dict[str, Any],
    entries: list[dict[str, Any]],
    expected_sequence: int,
    prev_hash: str,
    *,
    chain: bool = False,
) -> list[Problem]:
    """The checks of one transaction; ``expected_sequence`` is its expected position: the
    global sequence in the pre-0004 chain, the chain sequence in a tenant chain (``chain``)."""
    problems: list[Problem] = []
    where = {
        "journal_sequence": int(transaction["sequence"]),
        "transaction_id": transaction["transaction_id"],
        "tenant_id": transaction["tenant_id"],
    }
    sequence = int(transaction["chain_sequence" if chain else "sequence"])
    if sequence != expected_sequence:
        label = f"chain sequence of tenant {transaction['tenant_id']!r}" if chain else "sequence"
        problems.append(
            Problem(
                kind="sequence_gap",
                message=f"expected {label} {expected_sequence}, found {sequence}",
                expected=str(expected_sequence),
                actual=str(sequence),
                **where,
            )
        )
    if transaction["prev_hash"] != prev_hash:
        problems.append(
            Problem(
                kind="chain_broken",
                message="prev_hash does not match the previous transaction's hash",
                expected=prev_hash,
                actual=transaction["prev_hash"],
                **where,
            )
        )
    version = transaction.get("hash_version", 1)
    if version not in HASH_VERSIONS:
        problems.append(
            Problem(
                kind="unknown_hash_version",
                message=f"hash_version {version} is not a known hash format",
                expected=" or ".join(str(known) for known in sorted(HASH_VERSIONS)),
                actual=str(version),
                **where,
            )
        )
    else:
        try:
            recomputed = transaction_hash({**transaction, "hash_version": version}, entries)
        except (TypeError, ValueError, KeyError) as error:
            recomputed = f"(cannot be hashed: {error})"
        if recomputed != transaction["hash"]:
            problems.append(
                Problem(
                    kind="hash_mismatch",
                    message="stored hash does not match the transaction's content",
                    expected=recomputed,
                    actual=transaction["hash"],
                    **where,
                )
            )
            if chain:
                # A tenant chain certifies a transaction's position (its global sequence
                # included) only through its own hash: a row edited or moved in the global
                # order (sequences swapped between two tenants) breaks the chain here.
                problems.append(
                    Problem(
                        kind="chain_broken",
                        message="the chain breaks here: the hash the next transaction links to "
                        "does not cover this transaction as stored",
                        expected=recomputed,
                        actual=transaction["hash"],
                        **where,
                    )
                )
    if transaction["kind"] not in _KNOWN_KINDS:
        problems.append(
            Problem(
                kind="unknown_kind",
                message=f"transaction kind {transaction['kind']!r} is not one the ledger writes",
                actual=str(transaction["kind"]),
                **where,
            )
        )
    indexes = [int(entry["entry_index"]) for entry in entries]
    if indexes != list(range(int(transaction["entry_count"]))):
        problems.append(
            Problem(
                kind="entries_missing",
                message="the transaction's entries are not exactly 0..entry_count-1",
                expected=str(transaction["entry_count"]),
                actual=str(len(entries)),
                **where,
            )
        )
    if not entries and transaction["kind"] not in CONTROL_KINDS:
        problems.append(
            Problem(
                kind="unbalanced",
                message="a transaction that moves money has no entries",
                expected=">= 2 entries",
                actual="0",
                **where,
            )
        )
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        amount = int(entry["amount_minor"])
        totals[entry["currency"]] += amount if entry["direction"] == "IN" else -amount
    for currency, total in sorted(totals.items()):
        if total != 0:
            problems.append(
                Problem(
                    kind="unbalanced",
                    message=f"{currency} entries do not balance (IN - OUT = {total})",
                    expected="0",
                    actual=str(total),
                    **where,
                )
            )
    return problems


def _verify_balances(
    connection: sa.Connection, replayed: dict[tuple[str, str], int]
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for account in connection.execute(
        sa.select(accounts.c.tenant_id, accounts.c.account_id, accounts.c.balance_minor).order_by(
            accounts.c.tenant_id, accounts.c.account_id
        )
    ):
        key = (account.tenant_id, account.account_id)
        seen.add(key)
        if int(account.balance_minor) != replayed.get(key, 0):
            problems.append(
                Problem(
                    kind="balance_mismatch",
                    message="balance snapshot differs from the journal replayed from zero",
                    tenant_id=account.tenant_id,
                    account_id=account.account_id,
                    expected=str(replayed.get(key, 0)),
                    actual=str(account.balance_minor),
                )
            )
    for tenant_id, account_id in sorted(set(replayed) - seen):
        problems.append(
            Problem(
                kind="unknown_account",
                message="journal entries on an account that does not exist",
                tenant_id=tenant_id,
                account_id=account_id,
            )
        )
    return problems


def _verify_holds(connection: sa.Connection) -> list[Problem]:
    """Each hold bucket must carry exactly its account's active holds; resolved holds add up."""
    problems: list[Problem] = []
    active: dict[tuple[str, str], int] = defaultdict(int)
    for hold in connection.execute(sa.select(holds)):
        if hold.state == "active":
            active[(hold.tenant_id, f"@hold:{hold.account_id}")] += int(hold.amount_minor)
        elif int(hold.captured_minor) + int(hold.released_minor) != int(hold.amount_minor):
            problems.append(
                Problem(
                    kind="hold_unbalanced",
                    message=f"hold {hold.hold_id}: captured + released != amount",
                    tenant_id=hold.tenant_id,
                    account_id=hold.account_id,
                    expected=str(hold.amount_minor),
                    actual=str(int(hold.captured_minor) + int(hold.released_minor)),
                )
            )
    for bucket in connection.execute(
        sa.select(accounts.c.tenant_id, accounts.c.account_id, accounts.c.balance_minor)
        .where(accounts.c.kind == "hold")
        .order_by(accounts.c.tenant_id, accounts.c.account_id)
    ):
        expected = active.get((bucket.tenant_id, bucket.account_id), 0)
        if int(bucket.balance_minor) != expected:
            problems.append(
                Problem(
                    kind="held_mismatch",
                    message="hold bucket balance differs from the sum of active holds",
                    tenant_id=bucket.tenant_id,
                    account_id=bucket.account_id,
                    expected=str(expected),
                    actual=str(bucket.balance_minor),
                )
            )
    return problems
