"""The journal: balanced, hash-chained, append-only transactions, and their verification.

Appending is the last step of every write: the caller has already locked the rows it decided
on; ``append`` then locks ``journal_head`` (always last, so lock order stays fixed), takes the
next sequence, chains the hash, inserts the rows and moves the balance snapshots.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ledger_db import limits
from ledger_db.errors import InvalidAmount, UnbalancedTransaction
from ledger_db.ids import derive_entry_id
from ledger_db.models import Direction, JournalEntry, Problem
from ledger_db.schema import (
    accounts,
    holds,
    journal_entries,
    journal_head,
    journal_transactions,
)

__all__ = [
    "GENESIS_HASH",
    "ChainSegment",
    "EntryDraft",
    "TransactionDraft",
    "append",
    "entry_from_row",
    "iso",
    "transaction_hash",
    "verify",
    "verify_segment",
]

GENESIS_HASH = "0" * 64
_VERIFY_BATCH_TRANSACTIONS = 500


def iso(value: datetime | None) -> str | None:
    """The one text form of an instant used in hashes: UTC, microseconds, 'Z'."""
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
    """A balanced group of entries decided on but not yet written."""

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


def _hash_view_of_transaction(row: dict[str, Any]) -> dict[str, Any]:
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


_ENTRY_HASHED_COLUMNS = (
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


def _hash_view_of_entry(row: dict[str, Any]) -> dict[str, Any]:
    view = {column: row[column] for column in _ENTRY_HASHED_COLUMNS}
    view["counterpart"] = bool(view["counterpart"])
    view["occurred_at"] = iso(row["occurred_at"])
    view["recorded_at"] = iso(row["recorded_at"])
    return view


def transaction_hash(
    prev_hash: str, transaction_row: dict[str, Any], entry_rows: Iterable[dict[str, Any]]
) -> str:
    """SHA-256 over the previous hash and a canonical, key-ordered encoding of the transaction."""
    digest = hashlib.sha256()
    digest.update(prev_hash.encode())
    digest.update(
        _canonical(
            {
                "transaction": _hash_view_of_transaction(transaction_row),
                "entries": [
                    _hash_view_of_entry(entry)
                    for entry in sorted(entry_rows, key=lambda e: int(e["entry_index"]))
                ],
            }
        )
    )
    return digest.hexdigest()


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


def append(connection: sa.Connection, draft: TransactionDraft) -> tuple[int, list[JournalEntry]]:
    """Writes ``draft`` at the head of the chain and moves the balance snapshots.

    The caller holds locks on every account the draft touches; this locks the head last.
    """
    check_balanced(draft.entries)
    if len(draft.entries) > limits.entries_per_transaction_max:
        raise UnbalancedTransaction("too many entries in one transaction")
    head = connection.execute(
        sa.select(journal_head.c.last_sequence, journal_head.c.last_hash)
        .where(journal_head.c.id == 1)
        .with_for_update()
    ).one()
    sequence = int(head.last_sequence) + 1
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
    }
    entry_rows: list[dict[str, Any]] = []
    deltas: dict[str, int] = defaultdict(int)
    for index, entry in enumerate(draft.entries):
        signed = entry.amount_minor if entry.direction is Direction.IN else -entry.amount_minor
        deltas[entry.account_id] += signed
        entry_rows.append(
            {
                "journal_sequence": sequence,
                "entry_index": index,
                "ledger_entry_id": entry.ledger_entry_id
                or derive_entry_id(draft.transaction_id, index),
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
        )
    moved = sorted((account_id, delta) for account_id, delta in deltas.items() if delta)
    # The rows are locked by the caller; the new balances are computed here so that a balance
    # leaving the 64-bit range is refused the same way on both engines, before any write.
    current = {
        row.account_id: int(row.balance_minor)
        for row in connection.execute(
            sa.select(accounts.c.account_id, accounts.c.balance_minor).where(
                accounts.c.tenant_id == draft.tenant_id,
                accounts.c.account_id.in_([account_id for account_id, _ in moved]),
            )
        )
    }
    for account_id, delta in moved:
        if abs(current[account_id] + delta) > limits.amount_minor_max:
            raise InvalidAmount("balance would leave the 64-bit range", account_id=account_id)
    new_hash = transaction_hash(head.last_hash, transaction_row, entry_rows)
    connection.execute(
        journal_transactions.insert().values(
            **transaction_row, prev_hash=head.last_hash, hash=new_hash
        )
    )
    connection.execute(journal_entries.insert(), entry_rows)
    connection.execute(
        journal_head.update()
        .where(journal_head.c.id == 1)
        .values(last_sequence=sequence, last_hash=new_hash)
    )
    for account_id, delta in moved:
        connection.execute(
            accounts.update()
            .where(accounts.c.tenant_id == draft.tenant_id, accounts.c.account_id == account_id)
            .values(balance_minor=current[account_id] + delta, last_sequence=sequence)
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


def _transactions_in_batches(
    connection: sa.Connection, after_sequence: int = 0, transactions_max: int | None = None
) -> Iterator[Sequence[Any]]:
    after, left = after_sequence, transactions_max
    while left is None or left > 0:
        size = _VERIFY_BATCH_TRANSACTIONS if left is None else min(left, _VERIFY_BATCH_TRANSACTIONS)
        batch = connection.execute(
            sa.select(journal_transactions)
            .where(journal_transactions.c.sequence > after)
            .order_by(journal_transactions.c.sequence)
            .limit(size)
        ).all()
        if not batch:
            return
        yield batch
        after = int(batch[-1].sequence)
        if left is not None:
            left -= len(batch)


@dataclass(frozen=True)
class ChainSegment:
    """What verifying a stretch of the chain found, and where it ended."""

    problems: list[Problem]
    last_sequence: int
    last_hash: str
    reached_head: bool


def _walk(
    connection: sa.Connection,
    after_sequence: int,
    prev_hash: str,
    transactions_max: int | None,
    replayed: dict[tuple[str, str], int],
) -> ChainSegment:
    """Checks the transactions after ``after_sequence`` (all, or ``transactions_max``) against
    the chain ending in ``prev_hash``, adding each entry to ``replayed`` as it goes."""
    problems: list[Problem] = []
    expected_sequence = after_sequence + 1
    walked = 0
    for batch in _transactions_in_batches(connection, after_sequence, transactions_max):
        first, last = int(batch[0].sequence), int(batch[-1].sequence)
        entries_by_sequence: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for entry in connection.execute(
            sa.select(journal_entries)
            .where(journal_entries.c.journal_sequence.between(first, last))
            .order_by(journal_entries.c.journal_sequence, journal_entries.c.entry_index)
        ):
            entries_by_sequence[int(entry.journal_sequence)].append(dict(entry._mapping))
        for transaction in batch:
            problems.extend(
                _verify_transaction(
                    dict(transaction._mapping),
                    entries_by_sequence.get(int(transaction.sequence), []),
                    expected_sequence,
                    prev_hash,
                )
            )
            for posted in entries_by_sequence.get(int(transaction.sequence), []):
                signed = int(posted["amount_minor"]) * (1 if posted["direction"] == "IN" else -1)
                replayed[(posted["tenant_id"], posted["account_id"])] += signed
            expected_sequence = int(transaction.sequence) + 1
            prev_hash = transaction.hash
        walked += len(batch)
    reached_head = transactions_max is None or walked < transactions_max
    return ChainSegment(problems, expected_sequence - 1, prev_hash, reached_head)


def verify(connection: sa.Connection) -> list[Problem]:
    """Recomputes the chain, checks every transaction balances, and replays every balance.

    Returns every problem found, in journal order; an empty list means the books are intact.
    """
    replayed: dict[tuple[str, str], int] = defaultdict(int)
    segment = _walk(connection, 0, GENESIS_HASH, None, replayed)
    problems = list(segment.problems)
    head = connection.execute(sa.select(journal_head).where(journal_head.c.id == 1)).one()
    if int(head.last_sequence) != segment.last_sequence or head.last_hash != segment.last_hash:
        problems.append(
            Problem(
                kind="head_mismatch",
                message="journal head does not point at the last transaction",
                journal_sequence=int(head.last_sequence),
                expected=f"{segment.last_sequence}:{segment.last_hash}",
                actual=f"{head.last_sequence}:{head.last_hash}",
            )
        )
    problems.extend(_verify_balances(connection, replayed))
    problems.extend(_verify_holds(connection))
    return problems


def verify_segment(
    connection: sa.Connection, *, after_sequence: int, prev_hash: str, transactions_max: int
) -> ChainSegment:
    """Verifies the chain from a verified position on (``after_sequence`` whose hash was
    ``prev_hash``): at most ``transactions_max`` transactions, each checked as :func:`verify`
    checks it (sequence, link, hash, entries, balance). Balances and hold buckets are whole-book
    checks and stay :func:`verify`'s. A position whose transaction no longer has that hash is a
    ``chain_broken`` problem at it."""
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
    segment = _walk(connection, after_sequence, prev_hash, transactions_max, defaultdict(int))
    return ChainSegment(
        problems + segment.problems, segment.last_sequence, segment.last_hash, segment.reached_head
    )


def _verify_transaction(
    transaction: dict[str, Any],
    entries: list[dict[str, Any]],
    expected_sequence: int,
    prev_hash: str,
) -> list[Problem]:
    problems: list[Problem] = []
    sequence = int(transaction["sequence"])
    where = {
        "journal_sequence": sequence,
        "transaction_id": transaction["transaction_id"],
        "tenant_id": transaction["tenant_id"],
    }
    if sequence != expected_sequence:
        problems.append(
            Problem(
                kind="sequence_gap",
                message=f"expected sequence {expected_sequence}, found {sequence}",
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
    recomputed = transaction_hash(transaction["prev_hash"], transaction, entries)
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
