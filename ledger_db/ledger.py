"""The ledger's operations: each one database transaction, idempotent, deciding before doing.

Every mutating operation follows the same path (``Ledger._write``):

1. validate the request (typed errors, nothing read or written yet) and hash its canonical form;
2. open one write transaction; look up the tenant's idempotency key: a stored result with the
   same request hash is returned as a replay, a different hash is ``idempotency_key_reused``;
3. claim the key, load and lock every row the operation touches in a fixed order (hold, then
   accounts sorted by ID, then the tenant's journal chain row last), decide, write, store the
   result.

The write transaction is shared: concurrent callers' operations are applied by the batched
writer of the tenant's lane (``ledger_db.store.writer``), up to ``batch_max`` per database
transaction, a savepoint each, one commit; a rejected operation rolls back alone and every
caller gets its own answer. Lock order is what keeps PostgreSQL free of deadlocks within one
transaction; serialization failures, deadlocks and lock conflicts are retried, never reported as
insufficient funds. A unique violation is retried only when it is the idempotency-key claim race
(a concurrent duplicate committed first: the retry answers from its result); any other one is a
typed error at once. SQLite has one writer at a time (``BEGIN IMMEDIATE``). See
``docs/write-path.md``.

Accounts are journaled too: the operation that opens accounts appends an ``account_open``
control transaction (no entries) recording their attributes, and an overdraft limit changes only
through ``set_overdraft_limit`` (an ``account_change`` transaction), so ``verify_journal()`` can
check every account row against the journal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time  # noqa: F401  (tests patch ledger_module.time.sleep: the writer sleeps through it)
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from ledger_db import journal, limits
from ledger_db.database import create_engine, database_url_from_env, migrate
from ledger_db.errors import (
    AccountAlreadyExists,
    AccountClosed,
    AccountNotFound,
    CaptureExceedsHold,
    CurrencyMismatch,
    HoldAlreadyCaptured,
    HoldAlreadyFinalized,
    HoldAlreadyReleased,
    HoldExpired,
    HoldNotCaptured,
    HoldNotExpired,
    HoldNotFound,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidEntry,
    LedgerError,
    PayeeRequired,
    TransactionAlreadyReversed,
    TransactionNotFound,
)
from ledger_db.ids import (
    derive_account_open_transaction_id,
    derive_entry_id,
    derive_event_id,
    derive_hold_id,
    derive_transaction_id,
)
from ledger_db.journal import EntryDraft, TransactionDraft, entry_from_row, iso
from ledger_db.models import (
    REVERSIBLE_KINDS,
    Account,
    AccountKind,
    Balance,
    Direction,
    EntriesPage,
    Event,
    Hold,
    HoldState,
    JournalEntry,
    LedgerEntryInput,
    Problem,
    TransactionBatchResult,
    TransactionKind,
    TransactionResult,
)
from ledger_db.money import CurrencyRegistry, canonical_decimal, default_registry, parse_amount
from ledger_db.row_audit import account_attributes
from ledger_db.rules import holds as hold_rules
from ledger_db.schema import (
    accounts,
    holds,
    idempotency_keys,
    journal_entries,
    journal_transactions,
    outbox_events,
)
from ledger_db.store import BATCH_MAX_DEFAULT, BatchWriter, WriterStats, collision_error
from ledger_db.store.conflicts import is_retryable
from ledger_db.sums import amounts_in_out, exact_sum, exact_sum_columns
from ledger_db.validation import (
    check_account_id,
    check_bool,
    check_idempotency_key,
    check_identifier,
    check_instant,
    check_limit,
    check_meta,
    check_now,
    check_optional_identifier,
    check_optional_text,
    check_sequence,
    check_tags,
    check_tenant_id,
    check_text,
    check_ttl_seconds,
    instant_after,
)

__all__ = ["Ledger", "LedgerConfig", "RecordRequest"]

log = logging.getLogger(__name__)

ResultT = TypeVar("ResultT", bound=BaseModel)
T = TypeVar("T")

# Reasons and categories of the ledger's own movements. FinOps reports leave out the HOLD
# category by default: freezing and releasing moves no money out of the tenant.
CATEGORY_HOLD = "HOLD"
_RECORD_FIELDS = (
    "project_id",
    "env",
    "asset_id",
    "task_id",
    "external_ref",
    "amount_minor",
    "currency",
    "reason",
    "category",
    "tags",
    "meta",
)
EVENT_VERSION = "1.0"


@dataclass(frozen=True)
class LedgerConfig:
    """Settings that change what the ledger decides, read once."""

    platform_fee_bps: int = 100

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LedgerConfig:
        environ = os.environ if environ is None else environ
        fee = int(environ.get("LEDGER_PLATFORM_FEE_BPS", "100"))
        if not 0 <= fee <= limits.fee_basis_points_max:
            raise ValueError("LEDGER_PLATFORM_FEE_BPS must be between 0 and 10000")
        return cls(platform_fee_bps=fee)


# A keyset cursor of list_ledger_entries; 19 digits is more than 2^63 - 1 already.
_CURSOR = re.compile(r"([0-9]{1,19})\.([0-9]{1,19})", re.ASCII)
# Why a transaction of a kind outside REVERSIBLE_KINDS is not reversed.
_NOT_REVERSIBLE: dict[str, str] = {
    **dict.fromkeys(
        ("freeze", "capture", "release", "expire"),
        "a {kind} transaction is resolved by its hold, not reversed",
    ),
    "finalize": "a finalize paid the payee; taking money back is a refund, not a reversal",
    "reversal": "a reversal is not reversed; record a new entry",
    "": "a {kind} transaction moves no money and is not reversed",
}


def _append_control(
    conn: sa.Connection,
    tenant_id: str,
    transaction_id: str,
    kind: TransactionKind,
    idempotency_key: str,
    recorded_at: datetime,
    meta: dict[str, Any],
) -> None:
    """Appends a control transaction: no entries, the record it carries in its hashed meta."""
    journal.append(
        conn,
        TransactionDraft(
            tenant_id=tenant_id,
            transaction_id=transaction_id,
            kind=kind.value,
            idempotency_key=idempotency_key,
            occurred_at=recorded_at,
            recorded_at=recorded_at,
            entries=[],
            meta=meta,
        ),
    )


def _account_kind(kind: object) -> AccountKind:
    if isinstance(kind, str):
        try:
            return AccountKind(kind)
        except ValueError:
            pass
    raise InvalidEntry(f"unknown account kind {kind!r}", field="kind")


def _system_account_id(kind: AccountKind, currency: str) -> str:
    return f"@{kind.value}:{currency}"


def _platform_specs(currency: str) -> list[tuple[str, AccountKind, str]]:
    """The tenant's escrow, revenue and external accounts of a currency, as ensure-specs."""
    kinds = (AccountKind.ESCROW, AccountKind.REVENUE, AccountKind.EXTERNAL)
    return [(_system_account_id(kind, currency), kind, currency) for kind in kinds]


def _bucket_id(account_id: str) -> str:
    return f"@hold:{account_id}"


def _move(
    source: str,
    target: str,
    amount_minor: int,
    reason: str,
    category: str,
    common: Mapping[str, Any],
    *,
    meta: dict[str, Any] | None = None,
    counterpart: Literal["source", "target"] | None = None,
) -> list[EntryDraft]:
    """The two entries that move ``amount_minor`` from ``source`` to ``target``; the side named
    by ``counterpart`` is the platform's balancing side that tenant reports do not count."""
    return [
        EntryDraft(
            account_id=source,
            direction=Direction.OUT,
            amount_minor=amount_minor,
            reason=reason,
            category=category,
            meta=meta or {},
            counterpart=counterpart == "source",
            **common,
        ),
        EntryDraft(
            account_id=target,
            direction=Direction.IN,
            amount_minor=amount_minor,
            reason=reason,
            category=category,
            meta=meta or {},
            counterpart=counterpart == "target",
            **common,
        ),
    ]


def _get_transaction_row(conn: sa.Connection, tenant_id: str, transaction_id: str) -> Any:
    row = conn.execute(
        sa.select(journal_transactions).where(
            journal_transactions.c.tenant_id == tenant_id,
            journal_transactions.c.transaction_id == transaction_id,
        )
    ).first()
    if row is None:
        raise TransactionNotFound(f"transaction {transaction_id!r} not found")
    return row


def _with_entries(conn: sa.Connection, rows: Sequence[Any]) -> list[TransactionResult]:
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


@dataclass(frozen=True)
class RecordRequest:
    """One tenant's part of :meth:`Ledger.record_entries_atomically`: the arguments of a
    ``record_entries_many`` call."""

    tenant_id: str
    idempotency_key: str
    batches: Sequence[Sequence[LedgerEntryInput | Mapping[str, Any]]]
    account_id: str | None = None


def _is_list(value: object) -> bool:
    return isinstance(value, list | tuple)


def _record_batches(
    batches: object, *, single: bool
) -> Sequence[Sequence[LedgerEntryInput | Mapping[str, Any]]]:
    """The batches of a recording, checked for shape and size before any record is read."""
    per_batch = limits.entries_per_transaction_max // 2
    if not isinstance(batches, list | tuple) or not all(_is_list(batch) for batch in batches):
        raise InvalidEntry(
            "entries must be a list of records" if single else "batches must be lists of records",
            field="entries",
        )
    if not batches or any(not batch for batch in batches):
        raise InvalidEntry("no entries to record", field="entries")
    for batch in batches:
        if len(batch) > per_batch:
            raise InvalidEntry(
                f"at most {per_batch} records per {'transaction' if single else 'batch'}",
                field="entries",
            )
        for entry in batch:
            if not isinstance(entry, LedgerEntryInput | Mapping):
                raise InvalidEntry("each entry must be a record (an object)", field="entries")
    if sum(len(batch) for batch in batches) > limits.batch_size_max:
        raise InvalidEntry(f"at most {limits.batch_size_max} records per call", field="entries")
    return batches


# The arguments of Ledger._apply for one recording: operation, tenant, key, request hash,
# result type, the write, the caller's now.
_PreparedRecord = tuple[
    str,
    str,
    str,
    str,
    type[TransactionBatchResult],
    Callable[[sa.Connection, datetime], TransactionBatchResult],
    datetime | None,
]


def _replayed_batches(result: TransactionBatchResult) -> TransactionBatchResult:
    """A batch result whose transactions say they were replayed when the whole was."""
    if not result.replayed:
        return result
    replayed = [t.model_copy(update={"replayed": True}) for t in result.transactions]
    return result.model_copy(update={"transactions": replayed})


def _request_hash(operation: str, request: Mapping[str, Any]) -> str:
    encoded = json.dumps(
        {"operation": operation, "request": request},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(encoded.encode()).hexdigest()


# Statements of the write path built once (compiled once and cached, unlike a ``.values()``
# per call).
_STORE_RESULT = (
    idempotency_keys.update()
    .where(
        idempotency_keys.c.tenant_id == sa.bindparam("k_tenant_id"),
        idempotency_keys.c.idempotency_key == sa.bindparam("k_idempotency_key"),
    )
    .values(result=sa.bindparam("result"))
)
_INSERT_EVENT = outbox_events.insert()

# Which database errors are transient and which are typed collisions: ledger_db.store.conflicts.
_is_retryable = is_retryable
_collision_error = collision_error


class Ledger:
    """The compute ledger over one database (SQLite or PostgreSQL)."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        registry: CurrencyRegistry | None = None,
        clock: Callable[[], datetime] | None = None,
        config: LedgerConfig | None = None,
        batch_max: int | None = None,
        lanes: int | None = None,
    ) -> None:
        """``batch_max``: how many concurrent callers' operations may share one database
        transaction (default ``LEDGER_WRITE_BATCH_MAX`` or 64; 1 turns batching off).
        ``lanes``: how many batched writers run side by side, each tenant always on the same
        one (``hash(tenant) % lanes``), so that a batch waiting on one tenant's locks does not
        hold up the others (default ``LEDGER_WRITE_LANES`` or 4 on PostgreSQL; always 1 on
        SQLite, which has one writer at a time)."""
        self.engine = engine
        self.registry = registry or default_registry()
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.config = config or LedgerConfig.from_env()
        self._dialect = engine.dialect.name
        if batch_max is None:
            batch_max = int(os.environ.get("LEDGER_WRITE_BATCH_MAX", BATCH_MAX_DEFAULT))
        if self._dialect == "sqlite":
            lanes = 1
        elif lanes is None:
            lanes = int(os.environ.get("LEDGER_WRITE_LANES", "4"))
        self._writers = [BatchWriter(engine, batch_max=batch_max) for _ in range(max(1, lanes))]
        self._writer = self._writers[0]
        # The idempotency claim: INSERT ... ON CONFLICT DO NOTHING RETURNING, built once.
        self._claim = (
            self._insert(idempotency_keys)
            .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
            .returning(idempotency_keys.c.tenant_id)
        )

    @classmethod
    def from_url(cls, url: str | None = None, *, migrate: bool = True, **options: Any) -> Ledger:
        """A ledger on ``url`` (default: ``LEDGER_DATABASE_URL`` or the embedded SQLite file)."""
        ledger = cls(create_engine(url or database_url_from_env()), **options)
        if migrate:
            ledger.migrate()
        return ledger

    def migrate(self) -> None:
        """Brings the schema up to date (idempotent)."""
        migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def write_stats(self) -> WriterStats:
        """What the batched writers did so far: transactions, operations, batch sizes."""
        total = WriterStats()
        for writer in self._writers:
            total.batches += writer.stats.batches
            total.units += writer.stats.units
            total.retries += writer.stats.retries
            total.sizes.update(writer.stats.sizes)
        return total

    def _writer_for(self, tenant_id: str | None) -> BatchWriter:
        """The writer (lane) of a tenant: always the same one, so a tenant's writes of one
        ``Ledger`` never contend with each other across lanes."""
        if tenant_id is None or len(self._writers) == 1:
            return self._writers[0]
        digest = hashlib.blake2b(tenant_id.encode(), digest_size=4).digest()
        return self._writers[int.from_bytes(digest, "big") % len(self._writers)]

    # ------------------------------------------------------------------ the write path

    def _write(
        self,
        operation: str,
        tenant_id: str,
        idempotency_key: str,
        request: Mapping[str, Any],
        result_type: type[ResultT],
        decide_and_write: Callable[[sa.Connection, datetime], ResultT],
        now: datetime | None = None,
    ) -> ResultT:
        request_hash = _request_hash(operation, request)
        return self._in_transaction(
            operation,
            lambda conn: self._apply(
                conn,
                operation,
                tenant_id,
                idempotency_key,
                request_hash,
                result_type,
                decide_and_write,
                now,
            ),
            tenant_id=tenant_id,
        )

    def _in_transaction(
        self,
        operation: str,
        body: Callable[[sa.Connection], T],
        *,
        tenant_id: str | None = None,
    ) -> T:
        """Runs ``body`` in a write transaction, retrying transient conflicts: the batched
        writer of the tenant's lane may run it together with other callers' operations, each in
        a savepoint, and answers once the shared transaction committed
        (``ledger_db.store.writer``)."""
        return self._writer_for(tenant_id).run(operation, body)

    def _apply(
        self,
        conn: sa.Connection,
        operation: str,
        tenant_id: str,
        idempotency_key: str,
        request_hash: str,
        result_type: type[ResultT],
        decide_and_write: Callable[[sa.Connection, datetime], ResultT],
        now: datetime | None = None,
    ) -> ResultT:
        """One idempotent operation inside an open write transaction: replay, or claim the key,
        decide, write and store the result.

        A caller's ``now`` must lie in the window around the ledger's clock when the operation
        is applied; a replay answers whatever ``now`` the retry carries (it decides nothing).
        """
        try:
            recorded_at: datetime | None = self._clock_now("recorded_at")
        except LedgerError:
            recorded_at = None  # a replay decides nothing: it answers without the clock
        if recorded_at is not None:
            # Claiming the key first (one statement when it is new) makes a concurrent
            # duplicate wait on the claim; on PostgreSQL it then finds the key taken and answers
            # from the committed result. Inside one batch a duplicate sees the earlier claim.
            claimed = conn.execute(
                self._claim,
                {
                    "tenant_id": tenant_id,
                    "idempotency_key": idempotency_key,
                    "operation": operation,
                    "request_hash": request_hash,
                    "result": None,
                    "created_at": recorded_at,
                },
            ).first()
        if recorded_at is None or claimed is None:
            stored = conn.execute(
                sa.select(
                    idempotency_keys.c.operation,
                    idempotency_keys.c.request_hash,
                    idempotency_keys.c.result,
                ).where(
                    idempotency_keys.c.tenant_id == tenant_id,
                    idempotency_keys.c.idempotency_key == idempotency_key,
                )
            ).first()
            if stored is not None:
                if stored.request_hash != request_hash or stored.operation != operation:
                    raise IdempotencyKeyReused(
                        f"idempotency key {idempotency_key!r} was used for a different "
                        f"request ({stored.operation})",
                        idempotency_key=idempotency_key,
                    )
                replay = result_type.model_validate(stored.result)
                return replay.model_copy(update={"replayed": True})
            if recorded_at is None:
                recorded_at = self._clock_now("recorded_at")  # raises the clock's error
            raise AssertionError("the idempotency key is neither claimed nor stored")
        if now is not None:
            check_now(now, recorded_at)
        result = decide_and_write(conn, recorded_at)
        conn.execute(
            _STORE_RESULT,
            {
                "k_tenant_id": tenant_id,
                "k_idempotency_key": idempotency_key,
                "result": result.model_dump(mode="json"),
            },
        )
        return result

    def _clock_now(self, field: str = "now") -> datetime:
        """The ledger's clock, which must itself lie in the stored range."""
        return check_instant(self.clock(), field)

    @staticmethod
    def _check_now(now: object) -> datetime | None:
        """A caller's ``now`` (``None``: the ledger's clock at write time): an instant in range;
        :meth:`_apply` checks it against the ledger's clock."""
        return None if now is None else check_instant(now, "now")

    def _insert(self, table: sa.Table) -> Any:
        """An INSERT of the engine's dialect (for ON CONFLICT); the PostgreSQL dialect is
        imported only by a PostgreSQL ledger."""
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def _ensure_accounts(
        self,
        conn: sa.Connection,
        tenant_id: str,
        specs: Sequence[tuple[str, AccountKind, str]],
        recorded_at: datetime,
    ) -> list[dict[str, Any]]:
        """Opens the ledger's own accounts if missing, in ID order (part of the lock order);
        returns the attributes of those this call opened, for :meth:`_journal_opened`."""
        # Imported here: an SQLite ledger never pays for loading the PostgreSQL dialect.
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            insert: Callable[..., Any] = pg_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            insert = sqlite_insert
        opened: list[dict[str, Any]] = []
        for account_id, kind, currency in sorted(specs):
            values = {
                "tenant_id": tenant_id,
                "account_id": account_id,
                "kind": kind.value,
                "currency": currency,
                "name": None,
                "parent_account_id": None,
                "overdraft_limit_minor": 0,
                "status": "open",
                "balance_minor": 0,
                "last_sequence": 0,
                "created_at": recorded_at,
            }
            inserted = conn.execute(
                insert(accounts)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["tenant_id", "account_id"])
                .returning(accounts.c.account_id)
            ).first()
            if inserted is not None:
                opened.append(account_attributes(values))
        return opened

    @staticmethod
    def _journal_opened(
        conn: sa.Connection,
        tenant_id: str,
        opened: Sequence[Mapping[str, Any]],
        idempotency_key: str,
        recorded_at: datetime,
    ) -> None:
        """Appends the ``account_open`` control transaction of the accounts a write opened
        (after the write's account locks: the tenant's chain row is always locked last)."""
        if not opened:
            return
        records = sorted(opened, key=lambda attributes: str(attributes["account_id"]))
        _append_control(
            conn,
            tenant_id,
            derive_account_open_transaction_id(
                tenant_id, [str(record["account_id"]) for record in records]
            ),
            TransactionKind.ACCOUNT_OPEN,
            idempotency_key,
            recorded_at,
            {"accounts": [dict(record) for record in records]},
        )

    def _lock_accounts(
        self, conn: sa.Connection, tenant_id: str, account_ids: Sequence[str]
    ) -> dict[str, Any]:
        """Locks the rows in ID order; a missing one is ``account_not_found``."""
        wanted = sorted(set(account_ids))
        rows = conn.execute(
            sa.select(accounts)
            .where(accounts.c.tenant_id == tenant_id, accounts.c.account_id.in_(wanted))
            .order_by(accounts.c.account_id)
            .with_for_update()
        ).all()
        found = {row.account_id: row for row in rows}
        for account_id in wanted:
            if account_id not in found:
                raise AccountNotFound(f"account {account_id!r} not found", account_id=account_id)
        # The balances just read under the lock: journal.append moves them without reading
        # them again (the writer clears this at the start of every unit of work).
        journal.remember_balances(
            conn, tenant_id, {row.account_id: int(row.balance_minor) for row in rows}
        )
        return found

    def _lock_hold(self, conn: sa.Connection, tenant_id: str, hold_id: str) -> Any:
        row = conn.execute(
            sa.select(holds)
            .where(holds.c.tenant_id == tenant_id, holds.c.hold_id == hold_id)
            .with_for_update()
        ).first()
        if row is None:
            raise HoldNotFound(f"hold {hold_id!r} not found", hold_id=hold_id)
        return row

    def _emit(
        self,
        conn: sa.Connection,
        *,
        event_type: str,
        tenant_id: str,
        transaction_id: str,
        occurred_at: datetime,
        payload: dict[str, Any],
        hold_id: str | None = None,
        order_id: str | None = None,
        account_id: str | None = None,
    ) -> None:
        conn.execute(
            _INSERT_EVENT,
            {
                "event_id": derive_event_id(transaction_id, event_type),
                "type": event_type,
                "version": EVENT_VERSION,
                "tenant_id": tenant_id,
                "occurred_at": occurred_at,
                "hold_id": hold_id,
                "order_id": order_id,
                "account_id": account_id,
                "transaction_id": transaction_id,
                "payload": payload,
                "sent_at": None,
            },
        )

    def _money(self, amount_minor: int, currency: str) -> dict[str, Any]:
        return {
            "amount": self.registry.to_text(amount_minor, currency),
            "amount_minor": amount_minor,
            "currency": currency,
        }

    def _check_currency(self, given: str | None, expected: str) -> None:
        if given is None:
            return
        self.registry.exponent(given)
        if given != expected:
            raise CurrencyMismatch(
                f"currency {given} does not match the account's {expected}",
                given=given,
                expected=expected,
            )

    @staticmethod
    def _check_agent(row: Any, field: str = "account_id") -> None:
        if row.status != "open":
            raise AccountClosed(f"account {row.account_id!r} is closed")
        if row.kind != AccountKind.AGENT.value:
            raise InvalidEntry(
                f"account {row.account_id!r} is a {row.kind} account, not an agent account",
                field=field,
            )

    def _check_available(self, row: Any, debit_minor: int) -> None:
        """An agent's available balance may not go below minus its overdraft limit."""
        if row.kind in (AccountKind.EXTERNAL.value, AccountKind.OPERATING.value):
            return
        limit = int(row.overdraft_limit_minor) if row.kind == AccountKind.AGENT.value else 0
        if int(row.balance_minor) - debit_minor < -limit:
            raise InsufficientFunds(
                f"account {row.account_id!r} has {self.registry.to_text(int(row.balance_minor), row.currency)} "
                f"{row.currency} available (overdraft {self.registry.to_text(limit, row.currency)}), "
                f"needs {self.registry.to_text(debit_minor, row.currency)}",
                account_id=row.account_id,
            )

    # ------------------------------------------------------------------ accounts

    def open_account(
        self,
        *,
        tenant_id: str,
        currency: str,
        idempotency_key: str,
        account_id: str | None = None,
        kind: str = "agent",
        name: str | None = None,
        overdraft_limit: object = "0",
    ) -> Account:
        """Opens an agent account (with its hold bucket and the tenant's platform accounts).

        ``kind`` escrow, revenue or external returns the tenant's singleton of that kind for
        the currency, opening it if needed.
        """
        check_tenant_id(tenant_id)
        check_idempotency_key(idempotency_key)
        exponent = self.registry.exponent(currency)
        account_kind = _account_kind(kind)
        if account_kind in (AccountKind.HOLD, AccountKind.OPERATING):
            raise InvalidEntry(f"{kind} accounts are opened by the ledger itself", field="kind")
        name = check_optional_text(name, "name")
        overdraft_minor = parse_amount(overdraft_limit, exponent, allow_zero=True)
        if account_kind is AccountKind.AGENT:
            if account_id is None:
                account_id = (
                    "acct_"
                    + uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_id}\x1f{idempotency_key}").hex
                )
            if isinstance(account_id, str) and account_id.startswith("@"):
                raise InvalidEntry("account IDs starting with '@' are reserved", field="account_id")
            check_account_id(account_id)
        else:
            if account_id is not None:
                raise InvalidEntry(
                    "platform accounts have fixed IDs; leave account_id out", field="account_id"
                )
            if overdraft_minor:
                raise InvalidEntry("only agent accounts have an overdraft", field="overdraft_limit")
            account_id = _system_account_id(account_kind, currency)
        request = {
            "currency": currency,
            "account_id": account_id,
            "kind": account_kind.value,
            "name": name,
            "overdraft_limit_minor": overdraft_minor,
        }
        platform = _platform_specs(currency)
        final_account_id = account_id

        def write(conn: sa.Connection, recorded_at: datetime) -> Account:
            if account_kind is not AccountKind.AGENT:
                opened = self._ensure_accounts(conn, tenant_id, platform, recorded_at)
                self._journal_opened(conn, tenant_id, opened, idempotency_key, recorded_at)
                return self._account_from_row(
                    self._get_account_row(conn, tenant_id, final_account_id)
                )
            exists = conn.execute(
                sa.select(accounts.c.account_id).where(
                    accounts.c.tenant_id == tenant_id, accounts.c.account_id == final_account_id
                )
            ).first()
            if exists is not None:
                raise AccountAlreadyExists(
                    f"account {final_account_id!r} already exists", account_id=final_account_id
                )
            opened = self._ensure_accounts(conn, tenant_id, platform, recorded_at)
            base = {
                "tenant_id": tenant_id,
                "currency": currency,
                "status": "open",
                "balance_minor": 0,
                "last_sequence": 0,
                "created_at": recorded_at,
            }
            rows = [
                {
                    **base,
                    "account_id": final_account_id,
                    "kind": AccountKind.AGENT.value,
                    "name": name,
                    "parent_account_id": None,
                    "overdraft_limit_minor": overdraft_minor,
                },
                {
                    **base,
                    "account_id": _bucket_id(final_account_id),
                    "kind": AccountKind.HOLD.value,
                    "name": None,
                    "parent_account_id": final_account_id,
                    "overdraft_limit_minor": 0,
                },
            ]
            conn.execute(accounts.insert(), rows)
            opened += [account_attributes(row) for row in rows]
            self._journal_opened(conn, tenant_id, opened, idempotency_key, recorded_at)
            return self._account_from_row(self._get_account_row(conn, tenant_id, final_account_id))

        return self._write("open_account", tenant_id, idempotency_key, request, Account, write)

    def ensure_platform_accounts(self, *, tenant_id: str, currency: str) -> list[Account]:
        """The tenant's escrow, revenue and external accounts for ``currency`` (opened if missing)."""
        check_tenant_id(tenant_id)
        self.registry.exponent(currency)
        specs = _platform_specs(currency)

        def ensure(conn: sa.Connection) -> list[Account]:
            recorded_at = self._clock_now("recorded_at")
            opened = self._ensure_accounts(conn, tenant_id, specs, recorded_at)
            # No idempotency key here: the call is idempotent by itself, and the control
            # transaction names the call that opened the accounts.
            self._journal_opened(conn, tenant_id, opened, "ensure_platform_accounts", recorded_at)
            return [
                self._account_from_row(self._get_account_row(conn, tenant_id, spec[0]))
                for spec in specs
            ]

        return self._in_transaction("ensure_platform_accounts", ensure, tenant_id=tenant_id)

    def set_overdraft_limit(
        self,
        account_id: str,
        overdraft_limit: object,
        *,
        tenant_id: str,
        idempotency_key: str,
    ) -> Account:
        """Sets an agent account's overdraft limit (decimal text, ``"0"`` for none).

        The only way an overdraft limit changes: the new limit is journaled (an
        ``account_change`` control transaction) so that ``verify_journal()`` finds any other
        change of the column. A limit below what the account already overdraws is accepted:
        it only refuses further spending.
        """
        check_tenant_id(tenant_id)
        check_account_id(account_id)
        check_idempotency_key(idempotency_key)
        request = {
            "account_id": account_id,
            "overdraft_limit": canonical_decimal(overdraft_limit, allow_zero=True),
        }
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, "set_overdraft_limit")

        def write(conn: sa.Connection, recorded_at: datetime) -> Account:
            row = self._lock_accounts(conn, tenant_id, [account_id])[account_id]
            if row.kind != AccountKind.AGENT.value:
                raise InvalidEntry("only agent accounts have an overdraft", field="account_id")
            if row.status != "open":
                raise AccountClosed(f"account {account_id!r} is closed")
            limit_minor = parse_amount(
                overdraft_limit, self.registry.exponent(row.currency), allow_zero=True
            )
            _append_control(
                conn,
                tenant_id,
                transaction_id,
                TransactionKind.ACCOUNT_CHANGE,
                idempotency_key,
                recorded_at,
                {
                    "account_id": account_id,
                    "set": {"overdraft_limit_minor": limit_minor},
                    "previous": {"overdraft_limit_minor": int(row.overdraft_limit_minor)},
                },
            )
            conn.execute(
                accounts.update()
                .where(accounts.c.tenant_id == tenant_id, accounts.c.account_id == account_id)
                .values(overdraft_limit_minor=limit_minor)
            )
            return self._account_from_row(self._get_account_row(conn, tenant_id, account_id))

        return self._write(
            "set_overdraft_limit", tenant_id, idempotency_key, request, Account, write
        )

    def _get_account_row(self, conn: sa.Connection, tenant_id: str, account_id: str) -> Any:
        row = conn.execute(
            sa.select(accounts).where(
                accounts.c.tenant_id == tenant_id, accounts.c.account_id == account_id
            )
        ).first()
        if row is None:
            raise AccountNotFound(f"account {account_id!r} not found", account_id=account_id)
        return row

    @staticmethod
    def _account_from_row(row: Any) -> Account:
        # The accounts table's columns are the Account record's fields plus the snapshot.
        return Account.model_validate(dict(row._mapping))

    def get_account(self, *, tenant_id: str, account_id: str) -> Account:
        check_tenant_id(tenant_id)
        check_account_id(account_id)
        with self.engine.connect() as conn:
            return self._account_from_row(self._get_account_row(conn, tenant_id, account_id))

    def list_accounts(self, *, tenant_id: str, include_internal: bool = False) -> list[Account]:
        check_tenant_id(tenant_id)
        check_bool(include_internal, "include_internal")
        query = sa.select(accounts).where(accounts.c.tenant_id == tenant_id)
        if not include_internal:
            query = query.where(accounts.c.kind != AccountKind.HOLD.value)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(accounts.c.account_id)).all()
        return [self._account_from_row(row) for row in rows]

    def get_balance(
        self, account_id: str, *, tenant_id: str, as_of: datetime | None = None
    ) -> Balance:
        """The account's balance snapshot, or replayed from the journal up to ``as_of``.

        For an agent account, posted counts its hold bucket too: frozen money is still the
        agent's; held is what the bucket carries; available is what may be spent.
        """
        check_tenant_id(tenant_id)
        check_account_id(account_id)
        if as_of is not None:
            as_of = check_instant(as_of, "as_of")
        with self.engine.connect() as conn:
            row = self._get_account_row(conn, tenant_id, account_id)
            ids = [account_id]
            if row.kind == AccountKind.AGENT.value:
                ids.append(_bucket_id(account_id))
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
                bucket_row = rows.get(_bucket_id(account_id))
                held = int(bucket_row.balance_minor) if bucket_row is not None else 0
                sequence = max(int(r.last_sequence) for r in rows.values())
            else:
                # IN and OUT summed apart (each exact past 2^63 - 1, see ledger_db.sums).
                amount_in, amount_out = amounts_in_out()
                sums = {
                    r.account_id: (
                        exact_sum(r, self._dialect, "in") - exact_sum(r, self._dialect, "out"),
                        int(r.last or 0),
                    )
                    for r in conn.execute(
                        sa.select(
                            journal_entries.c.account_id,
                            *exact_sum_columns(amount_in, self._dialect, "in"),
                            *exact_sum_columns(amount_out, self._dialect, "out"),
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
                held = sums.get(_bucket_id(account_id), (0, 0))[0]
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

    # ------------------------------------------------------------------ deposits

    def deposit(
        self,
        account_id: str,
        amount: object,
        *,
        tenant_id: str,
        idempotency_key: str,
        currency: str | None = None,
        external_ref: str | None = None,
        reason: str = "TOP_UP",
        category: str = "FUNDING",
        meta: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
        project_id: str | None = None,
        env: str = "prod",
    ) -> TransactionResult:
        """Tops up an agent account from the tenant's external account."""
        check_tenant_id(tenant_id)
        check_account_id(account_id)
        check_idempotency_key(idempotency_key)
        if currency is not None:
            self.registry.exponent(currency)
        external_ref = check_optional_identifier(external_ref, "external_ref")
        check_text(reason, "reason")
        check_text(category, "category")
        check_identifier(env, "env", length_max=limits.env_length_max)
        project_id = check_optional_identifier(project_id, "project_id")
        meta_clean = check_meta(meta)
        if occurred_at is not None:
            occurred_at = check_instant(occurred_at, "occurred_at")
        # The exponent depends on the account, so the amount is parsed once it is known; the
        # request hash uses the amount's exact decimal value.
        request = {
            "account_id": account_id,
            "amount": canonical_decimal(amount),
            "currency": currency,
            "external_ref": external_ref,
            "reason": reason,
            "category": category,
            "meta": meta_clean,
            "occurred_at": iso(occurred_at),
            "project_id": project_id,
            "env": env,
        }
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, "deposit")

        def write(conn: sa.Connection, recorded_at: datetime) -> TransactionResult:
            row = self._get_account_row(conn, tenant_id, account_id)
            self._check_agent(row)
            self._check_currency(currency, row.currency)
            amount_minor = self.registry.to_minor(amount, row.currency)
            external_id = _system_account_id(AccountKind.EXTERNAL, row.currency)
            self._lock_accounts(conn, tenant_id, [account_id, external_id])
            common = {
                "amount_minor": amount_minor,
                "currency": row.currency,
                "reason": reason,
                "category": category,
                "env": env,
                "project_id": project_id,
                "external_ref": external_ref,
                "meta": meta_clean,
            }
            draft = TransactionDraft(
                tenant_id=tenant_id,
                transaction_id=transaction_id,
                kind=TransactionKind.DEPOSIT.value,
                idempotency_key=idempotency_key,
                occurred_at=occurred_at or recorded_at,
                recorded_at=recorded_at,
                entries=[
                    EntryDraft(
                        account_id=external_id, direction=Direction.OUT, counterpart=True, **common
                    ),
                    EntryDraft(account_id=account_id, direction=Direction.IN, **common),
                ],
            )
            return self._transaction_result(conn, draft)

        return self._write("deposit", tenant_id, idempotency_key, request, TransactionResult, write)

    def _transaction_result(
        self, conn: sa.Connection, draft: TransactionDraft, hold: Hold | None = None
    ) -> TransactionResult:
        sequence, entries = journal.append(conn, draft)
        return TransactionResult(
            tenant_id=draft.tenant_id,
            transaction_id=draft.transaction_id,
            kind=TransactionKind(draft.kind),
            journal_sequence=sequence,
            entries=entries,
            hold=hold,
            reverses_transaction_id=draft.reverses_transaction_id,
        )

    # ------------------------------------------------------------------ holds

    def freeze(
        self,
        account_id: str,
        amount: object,
        reason: str,
        *,
        tenant_id: str,
        idempotency_key: str,
        ttl_seconds: int,
        currency: str | None = None,
        payee_account_id: str | None = None,
        hold_id: str | None = None,
        now: datetime | None = None,
        meta: Mapping[str, Any] | None = None,
        project_id: str | None = None,
        env: str = "prod",
        task_id: str | None = None,
    ) -> Hold:
        """Freezes ``amount`` on an agent account; returns the hold (its ID and expiry)."""
        check_tenant_id(tenant_id)
        check_account_id(account_id)
        check_idempotency_key(idempotency_key)
        check_text(reason, "reason")
        check_ttl_seconds(ttl_seconds)
        if currency is not None:
            self.registry.exponent(currency)
        if payee_account_id is not None:
            check_account_id(payee_account_id, field="payee_account_id")
            if payee_account_id == account_id:
                raise InvalidEntry(
                    "the payee cannot be the paying account", field="payee_account_id"
                )
        hold_id = hold_id or derive_hold_id(tenant_id, idempotency_key)
        check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)
        meta_clean = check_meta(meta)
        project_id = check_optional_identifier(project_id, "project_id")
        task_id = check_optional_identifier(task_id, "task_id")
        check_identifier(env, "env", length_max=limits.env_length_max)
        now = self._check_now(now)
        request = {
            "account_id": account_id,
            "amount": canonical_decimal(amount),
            "reason": reason,
            "ttl_seconds": ttl_seconds,
            "currency": currency,
            "payee_account_id": payee_account_id,
            "hold_id": hold_id,
            "meta": meta_clean,
            "project_id": project_id,
            "env": env,
            "task_id": task_id,
        }
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, "freeze")
        final_hold_id = hold_id

        def write(conn: sa.Connection, recorded_at: datetime) -> Hold:
            at = now or recorded_at
            row = self._get_account_row(conn, tenant_id, account_id)
            self._check_agent(row)
            self._check_currency(currency, row.currency)
            amount_minor = self.registry.to_minor(amount, row.currency)
            if payee_account_id is not None:
                payee = self._get_account_row(conn, tenant_id, payee_account_id)
                self._check_agent(payee, "payee_account_id")
                self._check_currency(payee.currency, row.currency)
            taken = conn.execute(
                sa.select(holds.c.hold_id).where(
                    holds.c.tenant_id == tenant_id, holds.c.hold_id == final_hold_id
                )
            ).first()
            if taken is not None:
                raise InvalidEntry(f"hold {final_hold_id!r} exists already", field="hold_id")
            bucket = _bucket_id(account_id)
            locked = self._lock_accounts(conn, tenant_id, [account_id, bucket])
            self._check_available(locked[account_id], amount_minor)
            expires_at = instant_after(at, ttl_seconds, "expires_at")
            common = {
                "amount_minor": amount_minor,
                "currency": row.currency,
                "reason": "HOLD_FREEZE",
                "category": CATEGORY_HOLD,
                "env": env,
                "project_id": project_id,
                "task_id": task_id,
                "hold_id": final_hold_id,
                "meta": {"freeze_reason": reason},
            }
            draft = TransactionDraft(
                tenant_id=tenant_id,
                transaction_id=transaction_id,
                kind=TransactionKind.FREEZE.value,
                idempotency_key=idempotency_key,
                occurred_at=at,
                recorded_at=recorded_at,
                hold_id=final_hold_id,
                # Hashed with the journal, so that audit can check the hold row's payee.
                meta={"payee_account_id": payee_account_id, "expires_at": iso(expires_at)},
                entries=[
                    EntryDraft(account_id=account_id, direction=Direction.OUT, **common),
                    EntryDraft(account_id=bucket, direction=Direction.IN, **common),
                ],
            )
            journal.append(conn, draft)
            conn.execute(
                holds.insert().values(
                    tenant_id=tenant_id,
                    hold_id=final_hold_id,
                    account_id=account_id,
                    currency=row.currency,
                    amount_minor=amount_minor,
                    state=HoldState.ACTIVE.value,
                    reason=reason,
                    payee_account_id=payee_account_id,
                    order_id=None,
                    captured_minor=0,
                    released_minor=0,
                    fee_minor=0,
                    finalized=False,
                    expires_at=expires_at,
                    created_at=at,
                    resolved_at=None,
                    freeze_transaction_id=transaction_id,
                    meta={**meta_clean, "project_id": project_id, "env": env, "task_id": task_id},
                )
            )
            self._emit(
                conn,
                event_type="INTENT_CREATED",
                tenant_id=tenant_id,
                transaction_id=transaction_id,
                occurred_at=at,
                hold_id=final_hold_id,
                account_id=account_id,
                payload={
                    "billing": {
                        **self._money(amount_minor, row.currency),
                        "hold_id": final_hold_id,
                        "account_id": account_id,
                        "payee_account_id": payee_account_id,
                        "reason": reason,
                        "expires_at": iso(expires_at),
                    }
                },
            )
            return self._hold_from_row(self._get_hold_row(conn, tenant_id, final_hold_id))

        return self._write("freeze", tenant_id, idempotency_key, request, Hold, write, now)

    def capture_hold(
        self,
        hold_id: str,
        order_id: str,
        *,
        tenant_id: str,
        idempotency_key: str,
        amount: object | None = None,
        currency: str | None = None,
        payee_account_id: str | None = None,
        now: datetime | None = None,
    ) -> Hold:
        """Converts a hold into a settled charge for ``order_id``: in full, or in part with the
        remainder released in the same journal transaction."""
        check_tenant_id(tenant_id)
        check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)
        check_identifier(order_id, "order_id")
        check_idempotency_key(idempotency_key)
        if currency is not None:
            self.registry.exponent(currency)
        if payee_account_id is not None:
            check_account_id(payee_account_id, field="payee_account_id")
        now = self._check_now(now)
        request = {
            "hold_id": hold_id,
            "order_id": order_id,
            "amount": None if amount is None else canonical_decimal(amount),
            "currency": currency,
            "payee_account_id": payee_account_id,
        }
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, "capture")

        def write(conn: sa.Connection, recorded_at: datetime) -> Hold:
            at = now or recorded_at
            hold = self._lock_hold(conn, tenant_id, hold_id)
            self._check_unresolved(hold)
            if at >= hold.expires_at:
                raise HoldExpired(
                    f"hold {hold_id!r} expired at {iso(hold.expires_at)}", hold_id=hold_id
                )
            self._check_currency(currency, hold.currency)
            captured = (
                int(hold.amount_minor)
                if amount is None
                else self.registry.to_minor(amount, hold.currency)
            )
            if captured > int(hold.amount_minor):
                raise CaptureExceedsHold(
                    f"capture of {self.registry.to_text(captured, hold.currency)} exceeds the "
                    f"hold's {self.registry.to_text(int(hold.amount_minor), hold.currency)}",
                    hold_id=hold_id,
                )
            payee_id = hold.payee_account_id
            if payee_account_id is not None:
                if payee_id is not None and payee_id != payee_account_id:
                    raise InvalidEntry(
                        "the payee was set at freeze and cannot change at capture",
                        field="payee_account_id",
                    )
                payee_id = payee_account_id
            if payee_id is None:
                raise PayeeRequired("a payee is needed at freeze or at capture", hold_id=hold_id)
            if payee_id == hold.account_id:
                raise InvalidEntry(
                    "the payee cannot be the paying account", field="payee_account_id"
                )
            payee = self._get_account_row(conn, tenant_id, payee_id)
            self._check_agent(payee, "payee_account_id")
            self._check_currency(payee.currency, hold.currency)
            bucket = _bucket_id(hold.account_id)
            escrow = _system_account_id(AccountKind.ESCROW, hold.currency)
            self._lock_accounts(conn, tenant_id, [hold.account_id, bucket, escrow])
            remainder = int(hold.amount_minor) - captured
            common = self._hold_entry_fields(hold)
            entries = _move(
                bucket,
                escrow,
                captured,
                "ORDER_CAPTURE",
                "COMPUTE_COST",
                common,
                meta={"order_id": order_id},
                counterpart="target",
            )
            if remainder:
                entries += _move(
                    bucket, hold.account_id, remainder, "HOLD_RELEASE", CATEGORY_HOLD, common
                )
            draft = TransactionDraft(
                tenant_id=tenant_id,
                transaction_id=transaction_id,
                kind=TransactionKind.CAPTURE.value,
                idempotency_key=idempotency_key,
                occurred_at=at,
                recorded_at=recorded_at,
                hold_id=hold_id,
                # Hashed with the journal, so that audit can check the hold row's settlement.
                meta={
                    "order_id": order_id,
                    "payee_account_id": payee_id,
                    "captured_minor": captured,
                    "released_minor": remainder,
                },
                entries=entries,
            )
            journal.append(conn, draft)
            self._update_hold(
                conn,
                tenant_id,
                hold_id,
                state=HoldState.CAPTURED.value,
                captured_minor=captured,
                released_minor=remainder,
                order_id=order_id,
                payee_account_id=payee_id,
                resolved_at=at,
                resolve_transaction_id=transaction_id,
            )
            self._emit(
                conn,
                event_type="ORDER_CREATED",
                tenant_id=tenant_id,
                transaction_id=transaction_id,
                occurred_at=at,
                hold_id=hold_id,
                order_id=order_id,
                account_id=hold.account_id,
                payload={
                    "settlement": {
                        "order_id": order_id,
                        "hold_id": hold_id,
                        "payer_account_id": hold.account_id,
                        "payee_account_id": payee_id,
                        "escrow_account_id": escrow,
                        "captured": self._money(captured, hold.currency),
                        "released": self._money(remainder, hold.currency) if remainder else None,
                        "held": self._money(int(hold.amount_minor), hold.currency),
                    }
                },
            )
            return self._hold_from_row(self._get_hold_row(conn, tenant_id, hold_id))

        return self._write("capture_hold", tenant_id, idempotency_key, request, Hold, write, now)

    def finalize_hold(
        self,
        hold_id: str,
        *,
        tenant_id: str,
        idempotency_key: str,
        fee_bps: int | None = None,
        now: datetime | None = None,
    ) -> Hold:
        """Pays a captured hold out of escrow: the payee gets the amount net of the platform
        fee (rounded down in the payee's favour), revenue gets the fee."""
        check_tenant_id(tenant_id)
        check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)
        check_idempotency_key(idempotency_key)
        bps = self.config.platform_fee_bps if fee_bps is None else fee_bps
        if (
            isinstance(bps, bool)
            or not isinstance(bps, int)
            or not 0 <= bps <= limits.fee_basis_points_max
        ):
            raise InvalidEntry("fee_bps must be a whole number from 0 to 10000", field="fee_bps")
        now = self._check_now(now)
        request = {"hold_id": hold_id, "fee_bps": bps}
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, "finalize")

        def write(conn: sa.Connection, recorded_at: datetime) -> Hold:
            at = now or recorded_at
            hold = self._lock_hold(conn, tenant_id, hold_id)
            if hold.state != HoldState.CAPTURED.value:
                raise HoldNotCaptured(
                    f"hold {hold_id!r} is {hold.state}, not captured", hold_id=hold_id
                )
            if hold.finalized:
                raise HoldAlreadyFinalized(
                    f"hold {hold_id!r} was finalized already", hold_id=hold_id
                )
            captured = int(hold.captured_minor)
            fee = captured * bps // 10_000
            net = captured - fee
            escrow = _system_account_id(AccountKind.ESCROW, hold.currency)
            revenue = _system_account_id(AccountKind.REVENUE, hold.currency)
            payee_id = hold.payee_account_id
            locked = self._lock_accounts(conn, tenant_id, [escrow, revenue, payee_id])
            self._check_available(locked[escrow], captured)
            common = self._hold_entry_fields(hold)
            meta = {"order_id": hold.order_id, "fee_bps": bps}
            entries: list[EntryDraft] = []
            if net:
                entries += _move(
                    escrow,
                    payee_id,
                    net,
                    "SALE_REVENUE",
                    "PRODUCT_REVENUE",
                    common,
                    meta=meta,
                    counterpart="source",
                )
            if fee:
                entries += _move(
                    escrow,
                    revenue,
                    fee,
                    "PLATFORM_FEE",
                    "FEE",
                    common,
                    meta=meta,
                    counterpart="source",
                )
            draft = TransactionDraft(
                tenant_id=tenant_id,
                transaction_id=transaction_id,
                kind=TransactionKind.FINALIZE.value,
                idempotency_key=idempotency_key,
                occurred_at=at,
                recorded_at=recorded_at,
                hold_id=hold_id,
                meta={**meta, "payee_account_id": payee_id, "fee_minor": fee, "net_minor": net},
                entries=entries,
            )
            journal.append(conn, draft)
            self._update_hold(
                conn,
                tenant_id,
                hold_id,
                finalized=True,
                fee_minor=fee,
                finalize_transaction_id=transaction_id,
            )
            self._emit(
                conn,
                event_type="PAYMENT_SUCCEEDED",
                tenant_id=tenant_id,
                transaction_id=transaction_id,
                occurred_at=at,
                hold_id=hold_id,
                order_id=hold.order_id,
                account_id=payee_id,
                payload={
                    "payment": {
                        "order_id": hold.order_id,
                        "hold_id": hold_id,
                        "payer_account_id": hold.account_id,
                        "payee_account_id": payee_id,
                        "gross": self._money(captured, hold.currency),
                        "net": self._money(net, hold.currency),
                        "fee": self._money(fee, hold.currency),
                        "fee_bps": bps,
                        "revenue_account_id": revenue,
                    }
                },
            )
            return self._hold_from_row(self._get_hold_row(conn, tenant_id, hold_id))

        return self._write("finalize_hold", tenant_id, idempotency_key, request, Hold, write, now)

    def release_hold(
        self, hold_id: str, *, tenant_id: str, idempotency_key: str, now: datetime | None = None
    ) -> Hold:
        """Unlocks the whole of an active hold back to its account."""
        return self._release(hold_id, tenant_id, idempotency_key, now, expire=False)

    def expire_hold(
        self, hold_id: str, *, tenant_id: str, idempotency_key: str, now: datetime | None = None
    ) -> Hold:
        """Releases an active hold because its expiry time has come (``now >= expires_at``)."""
        return self._release(hold_id, tenant_id, idempotency_key, now, expire=True)

    def _release(
        self,
        hold_id: str,
        tenant_id: str,
        idempotency_key: str,
        now: datetime | None,
        *,
        expire: bool,
    ) -> Hold:
        check_tenant_id(tenant_id)
        check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)
        check_idempotency_key(idempotency_key)
        now = self._check_now(now)
        operation = "expire_hold" if expire else "release_hold"
        request = {"hold_id": hold_id}
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, operation)

        def write(conn: sa.Connection, recorded_at: datetime) -> Hold:
            at = now or recorded_at
            hold = self._lock_hold(conn, tenant_id, hold_id)
            self._check_unresolved(hold)
            if expire and at < hold.expires_at:
                raise HoldNotExpired(
                    f"hold {hold_id!r} expires at {iso(hold.expires_at)}", hold_id=hold_id
                )
            bucket = _bucket_id(hold.account_id)
            self._lock_accounts(conn, tenant_id, [hold.account_id, bucket])
            amount_minor = int(hold.amount_minor)
            reason = "HOLD_EXPIRE" if expire else "HOLD_RELEASE"
            draft = TransactionDraft(
                tenant_id=tenant_id,
                transaction_id=transaction_id,
                kind=(TransactionKind.EXPIRE if expire else TransactionKind.RELEASE).value,
                idempotency_key=idempotency_key,
                occurred_at=at,
                recorded_at=recorded_at,
                hold_id=hold_id,
                entries=_move(
                    bucket,
                    hold.account_id,
                    amount_minor,
                    reason,
                    CATEGORY_HOLD,
                    self._hold_entry_fields(hold),
                ),
            )
            journal.append(conn, draft)
            state = HoldState.EXPIRED if expire else HoldState.RELEASED
            self._update_hold(
                conn,
                tenant_id,
                hold_id,
                state=state.value,
                released_minor=amount_minor,
                resolved_at=at,
                resolve_transaction_id=transaction_id,
            )
            self._emit(
                conn,
                event_type="HOLD_EXPIRED" if expire else "HOLD_RELEASED",
                tenant_id=tenant_id,
                transaction_id=transaction_id,
                occurred_at=at,
                hold_id=hold_id,
                account_id=hold.account_id,
                payload={
                    "hold_id": hold_id,
                    "account_id": hold.account_id,
                    "released": self._money(amount_minor, hold.currency),
                    "expires_at": iso(hold.expires_at),
                },
            )
            return self._hold_from_row(self._get_hold_row(conn, tenant_id, hold_id))

        return self._write(operation, tenant_id, idempotency_key, request, Hold, write, now)

    def extend_hold(
        self,
        hold_id: str,
        *,
        tenant_id: str,
        idempotency_key: str,
        ttl_seconds: int | None = None,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> Hold:
        """Moves an active hold's expiry later: ``ttl_seconds`` from ``now`` (as at freeze) or
        to ``expires_at``; exactly one of them. Writes a ``HOLD_EXTENDED`` event.

        No money moves, so there is no journal transaction: the extension is recorded by its
        idempotency key (the request and the resulting hold) and by its outbox event.
        """
        check_tenant_id(tenant_id)
        check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)
        check_idempotency_key(idempotency_key)
        if ttl_seconds is not None:
            check_ttl_seconds(ttl_seconds)
        if expires_at is not None:
            check_instant(expires_at, "expires_at")
        now = self._check_now(now)
        request = {"hold_id": hold_id, "ttl_seconds": ttl_seconds, "expires_at": iso(expires_at)}
        # The event's identity: what a transaction ID is to the other operations' events.
        operation_id = derive_transaction_id(tenant_id, idempotency_key, "extend_hold")

        def write(conn: sa.Connection, recorded_at: datetime) -> Hold:
            at = now or recorded_at
            hold = self._hold_from_row(self._lock_hold(conn, tenant_id, hold_id))
            new_expires_at = hold_rules.check_extend(
                hold, ttl_seconds=ttl_seconds, expires_at=expires_at, now=at
            )
            self._update_hold(conn, tenant_id, hold_id, expires_at=new_expires_at)
            conn.execute(
                outbox_events.insert().values(
                    event_id=derive_event_id(operation_id, "HOLD_EXTENDED"),
                    type="HOLD_EXTENDED",
                    version=EVENT_VERSION,
                    tenant_id=tenant_id,
                    occurred_at=at,
                    hold_id=hold_id,
                    order_id=None,
                    account_id=hold.account_id,
                    transaction_id=None,
                    payload={
                        "hold_id": hold_id,
                        "account_id": hold.account_id,
                        "held": self._money(hold.amount_minor, hold.currency),
                        "previous_expires_at": iso(hold.expires_at),
                        "expires_at": iso(new_expires_at),
                    },
                    sent_at=None,
                )
            )
            return self._hold_from_row(self._get_hold_row(conn, tenant_id, hold_id))

        return self._write("extend_hold", tenant_id, idempotency_key, request, Hold, write, now)

    @staticmethod
    def _check_unresolved(hold: Any) -> None:
        if hold.state == HoldState.CAPTURED.value:
            raise HoldAlreadyCaptured(
                f"hold {hold.hold_id!r} was captured already", hold_id=hold.hold_id
            )
        if hold.state == HoldState.RELEASED.value:
            raise HoldAlreadyReleased(
                f"hold {hold.hold_id!r} was released already", hold_id=hold.hold_id
            )
        if hold.state == HoldState.EXPIRED.value:
            raise HoldExpired(f"hold {hold.hold_id!r} expired", hold_id=hold.hold_id)

    @staticmethod
    def _hold_entry_fields(hold: Any) -> dict[str, Any]:
        meta = hold.meta or {}
        return {
            "currency": hold.currency,
            "env": meta.get("env") or "prod",
            "project_id": meta.get("project_id"),
            "task_id": meta.get("task_id"),
            "hold_id": hold.hold_id,
        }

    @staticmethod
    def _update_hold(conn: sa.Connection, tenant_id: str, hold_id: str, **values: Any) -> None:
        conn.execute(
            holds.update()
            .where(holds.c.tenant_id == tenant_id, holds.c.hold_id == hold_id)
            .values(**values)
        )

    def _get_hold_row(self, conn: sa.Connection, tenant_id: str, hold_id: str) -> Any:
        row = conn.execute(
            sa.select(holds).where(holds.c.tenant_id == tenant_id, holds.c.hold_id == hold_id)
        ).first()
        if row is None:
            raise HoldNotFound(f"hold {hold_id!r} not found", hold_id=hold_id)
        return row

    @staticmethod
    def _hold_from_row(row: Any) -> Hold:
        # The holds table's columns are the Hold record's fields (extra ones are ignored).
        return Hold.model_validate({**row._mapping, "meta": dict(row.meta or {})})

    def get_hold(self, hold_id: str, *, tenant_id: str) -> Hold:
        check_tenant_id(tenant_id)
        check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)
        with self.engine.connect() as conn:
            return self._hold_from_row(self._get_hold_row(conn, tenant_id, hold_id))

    def list_holds(
        self,
        *,
        tenant_id: str,
        state: str | None = None,
        expires_before: datetime | None = None,
        account_id: str | None = None,
        limit: int = limits.page_size_default,
        after: tuple[datetime, str] | None = None,
    ) -> list[Hold]:
        """A tenant's holds in creation order, filtered; bounded by ``limit`` (at most
        page_size_max).

        ``after`` is the keyset of the last hold of the previous page: its
        ``(created_at, hold_id)``.
        """
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
            query = query.where(
                holds.c.expires_at < check_instant(expires_before, "expires_before")
            )
        if account_id is not None:
            query = query.where(holds.c.account_id == check_account_id(account_id))
        with self.engine.connect() as conn:
            rows = conn.execute(
                query.order_by(holds.c.created_at, holds.c.hold_id).limit(limit)
            ).all()
        return [self._hold_from_row(row) for row in rows]

    # ------------------------------------------------------------------ FinOps records

    def record_entries(
        self,
        entries: Sequence[LedgerEntryInput | Mapping[str, Any]],
        *,
        tenant_id: str,
        idempotency_key: str,
        account_id: str | None = None,
        now: datetime | None = None,
    ) -> TransactionResult:
        """Records LedgerEntry v1.0 records as one balanced journal transaction.

        Each record posts to ``account_id`` (or the record's own ``account_id``, or the tenant's
        operating account for its currency), balanced by a counterpart entry on the tenant's
        external account: the tenant's view of the transaction is exactly the records.
        """
        result = self._record(
            self._prepare_record(
                "record_entries", [entries], tenant_id, idempotency_key, account_id, now
            )
        )
        return result.transactions[0].model_copy(update={"replayed": result.replayed})

    def record_entries_many(
        self,
        batches: Sequence[Sequence[LedgerEntryInput | Mapping[str, Any]]],
        *,
        tenant_id: str,
        idempotency_key: str,
        account_id: str | None = None,
        now: datetime | None = None,
    ) -> TransactionBatchResult:
        """Records several batches, one journal transaction each, all in one DB transaction:
        a whole import applies completely or not at all. At most ``batch_size_max`` records."""
        return _replayed_batches(
            self._record(
                self._prepare_record(
                    "record_entries_many", batches, tenant_id, idempotency_key, account_id, now
                )
            )
        )

    def record_entries_atomically(
        self, requests: Sequence[RecordRequest], *, now: datetime | None = None
    ) -> list[TransactionBatchResult]:
        """Several tenants' ``record_entries_many`` calls in ONE database transaction: every
        part applies or none does (a file import with several tenants). Each part is
        idempotent on its own ``(tenant_id, idempotency_key)``; at most
        ``limits.import_records_max`` records in all."""
        if not isinstance(requests, list | tuple) or not all(
            isinstance(request, RecordRequest) for request in requests
        ):
            raise InvalidEntry("requests must be a list of RecordRequest", field="requests")
        if not requests:
            raise InvalidEntry("no entries to record", field="entries")
        if sum(len(batch) for r in requests for batch in r.batches) > limits.import_records_max:
            raise InvalidEntry(
                f"at most {limits.import_records_max} records in one call", field="entries"
            )
        prepared = [
            self._prepare_record(
                "record_entries_many",
                request.batches,
                request.tenant_id,
                request.idempotency_key,
                request.account_id,
                now,
            )
            for request in requests
        ]
        results = self._in_transaction(
            "record_entries_atomically",
            lambda conn: [self._apply(conn, *arguments) for arguments in prepared],
        )
        return [_replayed_batches(result) for result in results]

    def _record(self, prepared: _PreparedRecord) -> TransactionBatchResult:
        return self._in_transaction(
            prepared[0], lambda conn: self._apply(conn, *prepared), tenant_id=prepared[1]
        )

    def _prepare_record(
        self,
        operation: str,
        batches: object,
        tenant_id: str,
        idempotency_key: str,
        account_id: str | None,
        now: datetime | None,
    ) -> _PreparedRecord:
        """Validates a recording and returns the arguments of :meth:`_apply` that write it."""
        check_tenant_id(tenant_id)
        check_idempotency_key(idempotency_key)
        if account_id is not None:
            check_account_id(account_id)
        batches = _record_batches(batches, single=operation == "record_entries")
        now = self._check_now(now)
        checked: list[list[dict[str, Any]]] = []
        index = 0
        for batch in batches:
            checked.append([])
            for entry in batch:
                checked[-1].append(self._check_record(entry, index, tenant_id))
                index += 1
        ids = [r["ledger_entry_id"] for b in checked for r in b if r["ledger_entry_id"]]
        if len(ids) != len(set(ids)):
            raise InvalidEntry("a ledger_entry_id appears twice", field="ledger_entry_id")
        request = {"account_id": account_id, "batches": checked}
        single = operation == "record_entries"

        def write(conn: sa.Connection, recorded_at: datetime) -> TransactionBatchResult:
            at = now or recorded_at
            targets = [[self._record_target(r, account_id) for r in batch] for batch in checked]
            system: set[tuple[str, AccountKind, str]] = set()
            for batch in checked:
                for record in batch:
                    currency = record["currency"]
                    system.add(
                        (
                            _system_account_id(AccountKind.EXTERNAL, currency),
                            AccountKind.EXTERNAL,
                            currency,
                        )
                    )
                    if record["account_id"] is None and account_id is None:
                        system.add(
                            (
                                _system_account_id(AccountKind.OPERATING, currency),
                                AccountKind.OPERATING,
                                currency,
                            )
                        )
            opened = self._ensure_accounts(conn, tenant_id, sorted(system), recorded_at)
            locked = self._lock_accounts(
                conn, tenant_id, [t for batch in targets for t in batch] + [s[0] for s in system]
            )
            self._journal_opened(conn, tenant_id, opened, idempotency_key, recorded_at)
            # Available balances move batch by batch, so that no journal transaction leaves an
            # agent below its overdraft even for an instant of the journal's history.
            spent: dict[str, int] = {}
            results: list[TransactionResult] = []
            for number, (batch, batch_targets) in enumerate(zip(checked, targets, strict=True)):
                transaction_id = derive_transaction_id(
                    tenant_id, idempotency_key, "record" if single else f"record:{number}"
                )
                drafts: list[EntryDraft] = []
                for position, (record, target) in enumerate(zip(batch, batch_targets, strict=True)):
                    drafts += self._record_drafts(
                        record, target, locked[target], transaction_id, position, at
                    )
                    signed = (
                        record["amount_minor"]
                        if record["direction"] == "OUT"
                        else -record["amount_minor"]
                    )
                    spent[target] = spent.get(target, 0) + signed
                for target in set(batch_targets):
                    if spent[target] > 0:
                        self._check_available(locked[target], spent[target])
                draft = TransactionDraft(
                    tenant_id=tenant_id,
                    transaction_id=transaction_id,
                    kind=TransactionKind.RECORD.value,
                    idempotency_key=idempotency_key,
                    occurred_at=at,
                    recorded_at=recorded_at,
                    entries=drafts,
                )
                results.append(self._transaction_result(conn, draft))
            return TransactionBatchResult(tenant_id=tenant_id, transactions=results)

        return (
            operation,
            tenant_id,
            idempotency_key,
            _request_hash(operation, request),
            TransactionBatchResult,
            write,
            now,
        )

    @staticmethod
    def _record_target(record: Mapping[str, Any], account_id: str | None) -> str:
        target = record["account_id"] or account_id
        if target is None:
            return _system_account_id(AccountKind.OPERATING, record["currency"])
        return str(target)

    def _record_drafts(
        self,
        record: Mapping[str, Any],
        target: str,
        row: Any,
        transaction_id: str,
        position: int,
        at: datetime,
    ) -> list[EntryDraft]:
        """The primary entry of a v1.0 record and its counterpart on the external account."""
        if row.kind not in (AccountKind.AGENT.value, AccountKind.OPERATING.value):
            raise InvalidEntry(
                f"records post to agent or operating accounts, not {row.kind}",
                field="account_id",
            )
        if row.status != "open":
            raise AccountClosed(f"account {target!r} is closed")
        self._check_currency(record["currency"], row.currency)
        direction = Direction(record["direction"])
        fields = {key: record[key] for key in _RECORD_FIELDS}
        occurred = datetime.fromisoformat(record["occurred_at"]) if record["occurred_at"] else at
        primary_id = record["ledger_entry_id"] or derive_entry_id(transaction_id, 2 * position)
        return [
            EntryDraft(
                account_id=target,
                direction=direction,
                occurred_at=occurred,
                ledger_entry_id=primary_id,
                **fields,
            ),
            EntryDraft(
                account_id=_system_account_id(AccountKind.EXTERNAL, record["currency"]),
                direction=Direction.IN if direction is Direction.OUT else Direction.OUT,
                occurred_at=occurred,
                counterpart=True,
                ledger_entry_id=str(uuid.uuid5(uuid.UUID(primary_id), "counterpart")),
                **fields,
            ),
        ]

    def check_entry(self, entry: LedgerEntryInput | Mapping[str, Any], *, tenant_id: str) -> None:
        """Checks one LedgerEntry v1.0 record with exactly the rules ``record_entries`` applies
        to it (everything but the accounts it posts to), raising the error it would raise."""
        check_tenant_id(tenant_id)
        if not isinstance(entry, LedgerEntryInput | Mapping):
            raise InvalidEntry("each entry must be a record (an object)", field="entries")
        self._checked_record(entry, tenant_id)

    def _check_record(
        self, entry: LedgerEntryInput | Mapping[str, Any], index: int, tenant_id: str
    ) -> dict[str, Any]:
        """Validates one v1.0 record; the error names the record's index and field."""
        try:
            return self._checked_record(entry, tenant_id)
        except LedgerError as error:
            error.details.setdefault("index", index)
            error.message = f"entry {index}: {error.message}"
            error.args = (error.message,)
            raise

    def _checked_record(
        self, entry: LedgerEntryInput | Mapping[str, Any], tenant_id: str
    ) -> dict[str, Any]:
        try:
            # A LedgerEntryInput is validated again: one built with model_construct() is not.
            record = LedgerEntryInput.model_validate(dict(entry))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "entry"
            raise InvalidEntry(f"{field}: {first['msg']}", field=field) from error
        if record.tenant_id is not None and record.tenant_id != tenant_id:
            raise InvalidEntry("tenant_id differs from the call's tenant", field="tenant_id")
        entry_id = None
        if record.ledger_entry_id is not None:
            try:
                entry_id = str(uuid.UUID(record.ledger_entry_id))
            except ValueError as error:
                raise InvalidEntry(
                    "ledger_entry_id is not a UUID", field="ledger_entry_id"
                ) from error
        if record.account_id is not None:
            check_account_id(record.account_id)
        amount_minor = self.registry.to_minor(record.amount, record.currency)
        if not (record.asset_id or record.task_id or record.external_ref):
            raise InvalidEntry(
                "at least one of asset_id, task_id, external_ref must be set", field="asset_id"
            )
        references = {
            name: check_optional_identifier(getattr(record, name), name)
            for name in ("project_id", "asset_id", "task_id", "external_ref")
        }
        occurred_at = (
            None if record.occurred_at is None else check_instant(record.occurred_at, "occurred_at")
        )
        return {
            "ledger_entry_id": entry_id,
            "account_id": record.account_id,
            **references,
            "env": check_identifier(record.env, "env", length_max=limits.env_length_max),
            "direction": record.direction.value,
            "amount_minor": amount_minor,
            "currency": record.currency,
            "reason": check_text(record.reason, "reason"),
            "category": check_text(record.category, "category"),
            "tags": check_tags(record.tags),
            "meta": check_meta(record.meta),
            "occurred_at": iso(occurred_at),
        }

    def reverse_transaction(
        self,
        transaction_id: str,
        *,
        tenant_id: str,
        idempotency_key: str,
        reason: str = "ADJUSTMENT",
        now: datetime | None = None,
    ) -> TransactionResult:
        """A new transaction with every entry of the original, direction swapped.

        Hold movements (freeze, capture, release, expire) are resolved by the hold's own
        operations, not reversed; a transaction is reversed at most once.
        """
        check_tenant_id(tenant_id)
        check_identifier(transaction_id, "transaction_id", length_max=limits.id_length_max)
        check_idempotency_key(idempotency_key)
        check_text(reason, "reason")
        now = self._check_now(now)
        request = {"transaction_id": transaction_id, "reason": reason}
        new_transaction_id = derive_transaction_id(tenant_id, idempotency_key, "reverse")

        def refuse_if_reversed(conn: sa.Connection) -> None:
            reversed_already = conn.execute(
                sa.select(journal_transactions.c.transaction_id).where(
                    journal_transactions.c.tenant_id == tenant_id,
                    journal_transactions.c.reverses_transaction_id == transaction_id,
                )
            ).first()
            if reversed_already is not None:
                raise TransactionAlreadyReversed(
                    f"transaction {transaction_id!r} was reversed by "
                    f"{reversed_already.transaction_id}",
                    reversed_by=reversed_already.transaction_id,
                )

        def write(conn: sa.Connection, recorded_at: datetime) -> TransactionResult:
            at = now or recorded_at
            original = _get_transaction_row(conn, tenant_id, transaction_id)
            if original.kind not in REVERSIBLE_KINDS:
                raise InvalidEntry(
                    _NOT_REVERSIBLE.get(original.kind, _NOT_REVERSIBLE[""]).format(
                        kind=original.kind
                    ),
                    field="transaction_id",
                )
            refuse_if_reversed(conn)
            originals = _with_entries(conn, [original])[0].entries
            locked = self._lock_accounts(conn, tenant_id, [e.account_id for e in originals])
            # Asked again under the account locks: a concurrent reversal of the same
            # transaction that committed meanwhile is "already reversed", not a lack of funds.
            refuse_if_reversed(conn)
            outflow: dict[str, int] = {}
            drafts = []
            for entry in originals:
                direction = Direction.OUT if entry.direction is Direction.IN else Direction.IN
                if direction is Direction.OUT:
                    outflow[entry.account_id] = (
                        outflow.get(entry.account_id, 0) + entry.amount_minor
                    )
                else:
                    outflow[entry.account_id] = (
                        outflow.get(entry.account_id, 0) - entry.amount_minor
                    )
                drafts.append(
                    EntryDraft(
                        account_id=entry.account_id,
                        direction=direction,
                        amount_minor=entry.amount_minor,
                        currency=entry.currency,
                        reason=entry.reason,
                        category=entry.category,
                        env=entry.env,
                        project_id=entry.project_id,
                        asset_id=entry.asset_id,
                        task_id=entry.task_id,
                        external_ref=entry.external_ref,
                        tags=entry.tags,
                        meta={
                            **entry.meta,
                            "reverses": transaction_id,
                            "reverses_ledger_entry_id": entry.ledger_entry_id,
                            "reversal_reason": reason,
                        },
                        occurred_at=at,
                        counterpart=entry.counterpart,
                        hold_id=entry.hold_id,
                    )
                )
            for account, debit in outflow.items():
                if debit > 0:
                    self._check_available(locked[account], debit)
            draft = TransactionDraft(
                tenant_id=tenant_id,
                transaction_id=new_transaction_id,
                kind=TransactionKind.REVERSAL.value,
                idempotency_key=idempotency_key,
                occurred_at=at,
                recorded_at=recorded_at,
                reverses_transaction_id=transaction_id,
                meta={"reverses": transaction_id, "reason": reason},
                entries=drafts,
            )
            return self._transaction_result(conn, draft)

        return self._write(
            "reverse_transaction",
            tenant_id,
            idempotency_key,
            request,
            TransactionResult,
            write,
            now,
        )

    # ------------------------------------------------------------------ reading the journal

    def list_ledger_entries(
        self,
        account_id: str,
        from_ts: datetime | None = None,
        to_ts: datetime | None = None,
        *,
        tenant_id: str,
        cursor: str | None = None,
        limit: int = limits.page_size_default,
        time_field: str = "occurred_at",
    ) -> EntriesPage:
        """The account's entries in journal order, ``from_ts <= t < to_ts``, keyset-paginated."""
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
        after = self._parse_cursor(cursor)
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
        with self.engine.connect() as conn:
            self._get_account_row(conn, tenant_id, account_id)
            rows = conn.execute(
                query.order_by(
                    journal_entries.c.journal_sequence, journal_entries.c.entry_index
                ).limit(limit + 1)
            ).all()
        entries = [entry_from_row(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = entries[-1]
            next_cursor = f"{last.journal_sequence}.{last.entry_index}"
        return EntriesPage(entries=entries, next_cursor=next_cursor)

    @staticmethod
    def _parse_cursor(cursor: object) -> tuple[int, int] | None:
        """``"<journal_sequence>.<entry_index>"`` of the last entry seen, both 64-bit."""
        if cursor is None:
            return None
        match = _CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
        if match is None or max(int(part) for part in match.groups()) > limits.sequence_max:
            raise InvalidEntry(f"bad cursor {str(cursor)[:40]!r}", field="cursor")
        return int(match.group(1)), int(match.group(2))

    def get_transaction(self, transaction_id: str, *, tenant_id: str) -> TransactionResult:
        check_tenant_id(tenant_id)
        check_identifier(transaction_id, "transaction_id", length_max=limits.id_length_max)
        with self.engine.connect() as conn:
            return _with_entries(conn, [_get_transaction_row(conn, tenant_id, transaction_id)])[0]

    def list_transactions(
        self,
        *,
        tenant_id: str,
        hold_id: str | None = None,
        after_sequence: int = 0,
        limit: int = limits.page_size_default,
    ) -> list[TransactionResult]:
        """The tenant's journal transactions (with their entries) in journal order, optionally
        those of one hold; page with ``after_sequence`` = the last ``journal_sequence`` seen.
        Control transactions (``account_open``, ``account_change``) carry no entries."""
        check_tenant_id(tenant_id)
        limit = check_limit(limit)
        query = sa.select(journal_transactions).where(
            journal_transactions.c.tenant_id == tenant_id,
            journal_transactions.c.sequence > check_sequence(after_sequence, "after_sequence"),
        )
        if hold_id is not None:
            check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)
            query = query.where(journal_transactions.c.hold_id == hold_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(journal_transactions.c.sequence).limit(limit)).all()
            return _with_entries(conn, rows)

    # ------------------------------------------------------------------ outbox

    def list_events(
        self,
        *,
        tenant_id: str,
        after_sequence: int = 0,
        limit: int = limits.page_size_default,
        unsent_only: bool = False,
        transaction_id: str | None = None,
        hold_id: str | None = None,
    ) -> list[Event]:
        """A tenant's outbox events in the order they were written (the event log without a
        bus). The relay, which serves every tenant, reads :meth:`list_unsent_events_all_tenants`."""
        query = sa.select(outbox_events).where(
            outbox_events.c.tenant_id == check_tenant_id(tenant_id)
        )
        if check_bool(unsent_only, "unsent_only"):
            query = query.where(outbox_events.c.sent_at.is_(None))
        if transaction_id is not None:
            check_identifier(transaction_id, "transaction_id", length_max=limits.id_length_max)
            query = query.where(outbox_events.c.transaction_id == transaction_id)
        if hold_id is not None:
            check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)
            query = query.where(outbox_events.c.hold_id == hold_id)
        return self._events(query, after_sequence, limit)

    def list_unsent_events_all_tenants(
        self, *, after_sequence: int = 0, limit: int = limits.page_size_default
    ) -> list[Event]:
        """Every tenant's unsent outbox events, oldest first: what the outbox relay publishes.
        Not a tenant's read: tenant-facing callers use :meth:`list_events`."""
        return self._events(
            sa.select(outbox_events).where(outbox_events.c.sent_at.is_(None)),
            after_sequence,
            limit,
        )

    def _events(self, query: sa.Select[Any], after_sequence: object, limit: object) -> list[Event]:
        query = query.where(
            outbox_events.c.sequence > check_sequence(after_sequence, "after_sequence")
        )
        page_size = check_limit(limit)
        with self.engine.connect() as conn:
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

    def mark_events_sent(self, event_ids: Sequence[str], *, sent_at: datetime | None = None) -> int:
        """Marks events as published; events marked already keep their first time."""
        if not _is_list(event_ids) or not all(
            isinstance(event_id, str) and len(event_id) <= limits.id_length_max
            for event_id in event_ids
        ):
            raise InvalidEntry("event_ids must be a list of event IDs", field="event_ids")
        stamp = self._clock_now("sent_at") if sent_at is None else check_instant(sent_at, "sent_at")
        if not event_ids:
            return 0
        with self.engine.connect() as conn, conn.begin():
            result = conn.execute(
                outbox_events.update()
                .where(
                    outbox_events.c.event_id.in_(list(event_ids)), outbox_events.c.sent_at.is_(None)
                )
                .values(sent_at=stamp)
            )
            return int(result.rowcount)

    # ------------------------------------------------------------------ audit

    def verify_journal(self) -> list[Problem]:
        """Every problem with the books, as data; an empty list means they are intact."""
        with self.engine.connect() as conn:
            if self._dialect == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return journal.verify(conn)
