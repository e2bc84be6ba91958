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

Each public operation is a facade over that path: check the request
(``ledger_db.rules.requests``), load the rows it touches (``ledger_db.reads`` and the lock
helpers below), let the pure rules decide (``ledger_db.rules``: the entries to post, the hold's
new state, the event, or the typed refusal), then carry the decision out. The read methods
delegate to ``ledger_db.reads``.

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
import time  # noqa: F401  (tests patch ledger_module.time.sleep: the writer sleeps through it)
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel

from ledger_db import journal, limits, reads
from ledger_db.database import create_engine, database_url_from_env, migrate
from ledger_db.errors import (
    AccountNotFound,
    HoldNotFound,
    IdempotencyKeyReused,
    InvalidEntry,
    LedgerError,
)
from ledger_db.ids import (
    derive_account_open_transaction_id,
    derive_event_id,
    derive_transaction_id,
)
from ledger_db.journal import EntryDraft, TransactionDraft, iso
from ledger_db.models import (
    Account,
    AccountKind,
    Balance,
    EntriesPage,
    Event,
    Hold,
    LedgerEntryInput,
    Problem,
    TransactionBatchResult,
    TransactionKind,
    TransactionResult,
)
from ledger_db.money import CurrencyRegistry, canonical_decimal, default_registry
from ledger_db.row_audit import account_attributes
from ledger_db.rules import accounts as account_rules
from ledger_db.rules import holds as hold_rules
from ledger_db.rules import postings as posting_rules
from ledger_db.rules import requests as request_rules
from ledger_db.rules.accounts import AccountRecord
from ledger_db.rules.postings import Posting, balanced
from ledger_db.schema import (
    accounts,
    holds,
    idempotency_keys,
    outbox_events,
)
from ledger_db.store import BATCH_MAX_DEFAULT, BatchWriter, WriterStats, collision_error
from ledger_db.store.conflicts import is_retryable
from ledger_db.validation import (
    check_account_id,
    check_idempotency_key,
    check_identifier,
    check_instant,
    check_now,
    check_tenant_id,
    check_text,
    check_ttl_seconds,
)
from ledger_db.vocabulary import (
    CATEGORY_FUNDING,
    EVENT_VERSION,
    REASON_ADJUSTMENT,
    REASON_TOP_UP,
    Operation,
    TransactionStep,
    hold_bucket_id,
    platform_account_ids,
    system_account_id,
)

__all__ = ["Ledger", "LedgerConfig", "RecordRequest"]

log = logging.getLogger(__name__)

ResultT = TypeVar("ResultT", bound=BaseModel)
T = TypeVar("T")


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


@dataclass(frozen=True)
class RecordRequest:
    """One tenant's part of :meth:`Ledger.record_entries_atomically`: the arguments of a
    ``record_entries_many`` call."""

    tenant_id: str
    idempotency_key: str
    batches: Sequence[Sequence[LedgerEntryInput | Mapping[str, Any]]]
    account_id: str | None = None


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

    def _draft(
        self,
        tenant_id: str,
        transaction_id: str,
        kind: TransactionKind,
        idempotency_key: str,
        occurred_at: datetime,
        recorded_at: datetime,
        postings: Sequence[Posting],
        **fields: Any,
    ) -> TransactionDraft:
        """A journal transaction of decided postings (``hold_id``, ``meta``, ``reverses_...``)."""
        assert balanced(postings), "a decision's postings balance in every currency"
        return TransactionDraft(
            tenant_id=tenant_id,
            transaction_id=transaction_id,
            kind=kind.value,
            idempotency_key=idempotency_key,
            occurred_at=occurred_at,
            recorded_at=recorded_at,
            entries=[EntryDraft(**posting.as_fields()) for posting in postings],
            **fields,
        )

    def _emit_decided(
        self,
        conn: sa.Connection,
        tenant_id: str,
        transaction_id: str,
        occurred_at: datetime,
        event: hold_rules.EventDraft,
    ) -> None:
        self._emit(
            conn,
            event_type=event.event_type.value,
            tenant_id=tenant_id,
            transaction_id=transaction_id,
            occurred_at=occurred_at,
            payload=event.payload,
            hold_id=event.hold_id,
            order_id=event.order_id,
            account_id=event.account_id,
        )

    def _locked(
        self, conn: sa.Connection, tenant_id: str, account_ids: Sequence[str]
    ) -> dict[str, AccountRecord]:
        """The accounts locked in ID order (:meth:`_lock_accounts`), as the rules see them."""
        locked = self._lock_accounts(conn, tenant_id, account_ids)
        return {account_id: reads.account_record(row) for account_id, row in locked.items()}

    def _locked_hold(self, conn: sa.Connection, tenant_id: str, hold_id: str) -> Hold:
        return reads.hold_from_row(self._lock_hold(conn, tenant_id, hold_id))

    def _resolve_hold(
        self,
        conn: sa.Connection,
        *,
        tenant_id: str,
        hold: Hold,
        kind: TransactionKind,
        transaction_id: str,
        idempotency_key: str,
        at: datetime,
        recorded_at: datetime,
        decision: hold_rules.HoldDecision,
    ) -> Hold:
        """Carries out a capture, finalize, release or expiry decided on: locks its accounts,
        appends its journal transaction, updates the hold and writes its event."""
        self._lock_accounts(conn, tenant_id, decision.locked_account_ids)
        journal.append(
            conn,
            self._draft(
                tenant_id,
                transaction_id,
                kind,
                idempotency_key,
                at,
                recorded_at,
                decision.postings,
                hold_id=hold.hold_id,
                meta=decision.journal_meta,
            ),
        )
        self._update_hold(conn, tenant_id, hold.hold_id, **decision.hold_update)
        self._emit_decided(conn, tenant_id, transaction_id, at, decision.event)
        return reads.hold_from_row(reads.hold_row(conn, tenant_id, hold.hold_id))

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
        opening = account_rules.check_open(
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            currency=currency,
            exponent=self.registry.exponent(currency),
            account_id=account_id,
            kind=kind,
            name=name,
            overdraft_limit=overdraft_limit,
        )
        request = {
            "currency": currency,
            "account_id": opening.account_id,
            "kind": opening.kind.value,
            "name": opening.name,
            "overdraft_limit_minor": opening.overdraft_limit_minor,
        }

        def write(conn: sa.Connection, recorded_at: datetime) -> Account:
            rows: list[dict[str, Any]] = []
            if opening.kind is AccountKind.AGENT:
                exists = reads.find_account(conn, tenant_id, opening.account_id) is not None
                rows = account_rules.decide_open_agent(
                    opening, exists=exists, tenant_id=tenant_id, recorded_at=recorded_at
                )
            platform = platform_account_ids(currency)
            opened = self._ensure_accounts(conn, tenant_id, platform, recorded_at)
            if rows:
                conn.execute(accounts.insert(), rows)
                opened += [account_attributes(row) for row in rows]
            self._journal_opened(conn, tenant_id, opened, idempotency_key, recorded_at)
            return reads.account_from_row(reads.account_row(conn, tenant_id, opening.account_id))

        return self._write(
            Operation.OPEN_ACCOUNT, tenant_id, idempotency_key, request, Account, write
        )

    def ensure_platform_accounts(self, *, tenant_id: str, currency: str) -> list[Account]:
        """The tenant's escrow, revenue and external accounts for ``currency`` (opened if missing)."""
        check_tenant_id(tenant_id)
        self.registry.exponent(currency)
        specs = platform_account_ids(currency)
        operation = Operation.ENSURE_PLATFORM_ACCOUNTS

        def ensure(conn: sa.Connection) -> list[Account]:
            recorded_at = self._clock_now("recorded_at")
            opened = self._ensure_accounts(conn, tenant_id, specs, recorded_at)
            # No idempotency key here: the call is idempotent by itself, and the control
            # transaction names the call that opened the accounts.
            self._journal_opened(conn, tenant_id, opened, operation.value, recorded_at)
            return [
                reads.account_from_row(reads.account_row(conn, tenant_id, spec[0]))
                for spec in specs
            ]

        return self._in_transaction(operation, ensure, tenant_id=tenant_id)

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
        step = TransactionStep.SET_OVERDRAFT_LIMIT
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, step)

        def write(conn: sa.Connection, recorded_at: datetime) -> Account:
            account = self._locked(conn, tenant_id, [account_id])[account_id]
            change = account_rules.check_overdraft_change(account, overdraft_limit, self.registry)
            _append_control(
                conn,
                tenant_id,
                transaction_id,
                TransactionKind.ACCOUNT_CHANGE,
                idempotency_key,
                recorded_at,
                change.journal_meta(),
            )
            conn.execute(
                accounts.update()
                .where(accounts.c.tenant_id == tenant_id, accounts.c.account_id == account_id)
                .values(overdraft_limit_minor=change.limit_minor)
            )
            return reads.account_from_row(reads.account_row(conn, tenant_id, account_id))

        return self._write(
            Operation.SET_OVERDRAFT_LIMIT, tenant_id, idempotency_key, request, Account, write
        )

    def get_account(self, *, tenant_id: str, account_id: str) -> Account:
        check_tenant_id(tenant_id)
        check_account_id(account_id)
        with self.engine.connect() as conn:
            return reads.account_from_row(reads.account_row(conn, tenant_id, account_id))

    def list_accounts(self, *, tenant_id: str, include_internal: bool = False) -> list[Account]:
        with self.engine.connect() as conn:
            return reads.list_accounts(conn, tenant_id, include_internal)

    def get_balance(
        self, account_id: str, *, tenant_id: str, as_of: datetime | None = None
    ) -> Balance:
        """The account's balance snapshot, or replayed from the journal up to ``as_of``.

        For an agent account, posted counts its hold bucket too: frozen money is still the
        agent's; held is what the bucket carries; available is what may be spent.
        """
        with self.engine.connect() as conn:
            return reads.balance(conn, self._dialect, tenant_id, account_id, as_of)

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
        reason: str = REASON_TOP_UP,
        category: str = CATEGORY_FUNDING,
        meta: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
        project_id: str | None = None,
        env: str = "prod",
    ) -> TransactionResult:
        """Tops up an agent account from the tenant's external account."""
        checked = request_rules.check_deposit_request(
            tenant_id=tenant_id,
            account_id=account_id,
            idempotency_key=idempotency_key,
            amount=amount,
            currency=currency,
            external_ref=external_ref,
            reason=reason,
            category=category,
            meta=meta,
            occurred_at=occurred_at,
            project_id=project_id,
            env=env,
            registry=self.registry,
        )
        request = checked.canonical()
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, TransactionStep.DEPOSIT)

        def write(conn: sa.Connection, recorded_at: datetime) -> TransactionResult:
            account = reads.account_record(reads.account_row(conn, tenant_id, account_id))
            amount_minor = posting_rules.check_deposit(
                account, currency=currency, amount=amount, registry=self.registry
            )
            external_id = system_account_id(AccountKind.EXTERNAL, account.currency)
            self._lock_accounts(conn, tenant_id, [account_id, external_id])
            postings = posting_rules.deposit_postings(account, amount_minor, checked.labels)
            occurred = checked.occurred_at or recorded_at
            return self._transaction_result(
                conn,
                self._draft(
                    tenant_id,
                    transaction_id,
                    TransactionKind.DEPOSIT,
                    idempotency_key,
                    occurred,
                    recorded_at,
                    postings,
                ),
            )

        return self._write(
            Operation.DEPOSIT, tenant_id, idempotency_key, request, TransactionResult, write
        )

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
        checked = request_rules.check_freeze_request(
            tenant_id=tenant_id,
            account_id=account_id,
            idempotency_key=idempotency_key,
            amount=amount,
            reason=reason,
            ttl_seconds=ttl_seconds,
            currency=currency,
            payee_account_id=payee_account_id,
            hold_id=hold_id,
            meta=meta,
            project_id=project_id,
            env=env,
            task_id=task_id,
            registry=self.registry,
        )
        now = self._check_now(now)
        request = checked.canonical()
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, TransactionStep.FREEZE)
        new_hold_id = checked.hold_id

        def write(conn: sa.Connection, recorded_at: datetime) -> Hold:
            at = now or recorded_at
            payee = None
            if payee_account_id is not None:
                payee = reads.find_account(conn, tenant_id, payee_account_id)
            amount_minor = hold_rules.check_freeze(
                checked,
                reads.find_account(conn, tenant_id, account_id),
                payee,
                hold_exists=reads.hold_exists(conn, tenant_id, new_hold_id),
                registry=self.registry,
            )
            locked = self._locked(conn, tenant_id, [account_id, hold_bucket_id(account_id)])
            decision = hold_rules.decide_freeze(
                checked,
                locked[account_id],
                amount_minor=amount_minor,
                transaction_id=transaction_id,
                now=at,
                registry=self.registry,
            )
            draft = self._draft(
                tenant_id,
                transaction_id,
                TransactionKind.FREEZE,
                idempotency_key,
                at,
                recorded_at,
                decision.postings,
                hold_id=new_hold_id,
                meta=decision.journal_meta,
            )
            journal.append(conn, draft)
            conn.execute(holds.insert().values(tenant_id=tenant_id, **decision.hold_row))
            self._emit_decided(conn, tenant_id, transaction_id, at, decision.event)
            return reads.hold_from_row(reads.hold_row(conn, tenant_id, new_hold_id))

        return self._write(Operation.FREEZE, tenant_id, idempotency_key, request, Hold, write, now)

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
        checked = request_rules.check_capture_request(
            tenant_id=tenant_id,
            hold_id=hold_id,
            order_id=order_id,
            idempotency_key=idempotency_key,
            amount=amount,
            currency=currency,
            payee_account_id=payee_account_id,
            registry=self.registry,
        )
        now = self._check_now(now)
        request = checked.canonical()
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, TransactionStep.CAPTURE)

        def write(conn: sa.Connection, recorded_at: datetime) -> Hold:
            at = now or recorded_at
            hold = self._locked_hold(conn, tenant_id, hold_id)
            capture = hold_rules.check_capture(
                hold,
                order_id=order_id,
                amount=amount,
                exponent=self.registry.exponent(hold.currency),
                payee_account_id=payee_account_id,
                now=at,
                currency=currency,
                registry=self.registry,
            )
            payee = reads.find_account(conn, tenant_id, capture.payee_account_id)
            decision = hold_rules.decide_capture(
                hold,
                capture,
                payee,
                order_id=order_id,
                transaction_id=transaction_id,
                now=at,
                registry=self.registry,
            )
            return self._resolve_hold(
                conn,
                tenant_id=tenant_id,
                hold=hold,
                kind=TransactionKind.CAPTURE,
                transaction_id=transaction_id,
                idempotency_key=idempotency_key,
                at=at,
                recorded_at=recorded_at,
                decision=decision,
            )

        return self._write(
            Operation.CAPTURE_HOLD, tenant_id, idempotency_key, request, Hold, write, now
        )

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
        bps = hold_rules.check_fee_bps(self.config.platform_fee_bps if fee_bps is None else fee_bps)
        now = self._check_now(now)
        request = {"hold_id": hold_id, "fee_bps": bps}
        step = TransactionStep.FINALIZE
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, step)

        def write(conn: sa.Connection, recorded_at: datetime) -> Hold:
            hold = self._locked_hold(conn, tenant_id, hold_id)
            locked = self._locked(conn, tenant_id, hold_rules.finalize_account_ids(hold))
            escrow = locked[system_account_id(AccountKind.ESCROW, hold.currency)]
            decision = hold_rules.decide_finalize(
                hold, escrow, fee_bps=bps, transaction_id=transaction_id, registry=self.registry
            )
            return self._resolve_hold(
                conn,
                tenant_id=tenant_id,
                hold=hold,
                kind=TransactionKind.FINALIZE,
                transaction_id=transaction_id,
                idempotency_key=idempotency_key,
                at=now or recorded_at,
                recorded_at=recorded_at,
                decision=decision,
            )

        return self._write(
            Operation.FINALIZE_HOLD, tenant_id, idempotency_key, request, Hold, write, now
        )

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
        operation = Operation.EXPIRE_HOLD if expire else Operation.RELEASE_HOLD
        step = TransactionStep.EXPIRE if expire else TransactionStep.RELEASE
        transaction_id = derive_transaction_id(tenant_id, idempotency_key, step)

        def write(conn: sa.Connection, recorded_at: datetime) -> Hold:
            at = now or recorded_at
            hold = self._locked_hold(conn, tenant_id, hold_id)
            decision = hold_rules.decide_release(
                hold, expire=expire, transaction_id=transaction_id, now=at, registry=self.registry
            )
            return self._resolve_hold(
                conn,
                tenant_id=tenant_id,
                hold=hold,
                kind=TransactionKind.EXPIRE if expire else TransactionKind.RELEASE,
                transaction_id=transaction_id,
                idempotency_key=idempotency_key,
                at=at,
                recorded_at=recorded_at,
                decision=decision,
            )

        request = {"hold_id": hold_id}
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
        operation_id = derive_transaction_id(tenant_id, idempotency_key, TransactionStep.EXTEND)

        def write(conn: sa.Connection, recorded_at: datetime) -> Hold:
            at = now or recorded_at
            hold = self._locked_hold(conn, tenant_id, hold_id)
            new_expires_at = hold_rules.check_extend(
                hold, ttl_seconds=ttl_seconds, expires_at=expires_at, now=at
            )
            event = hold_rules.extension_event(hold, new_expires_at, self.registry)
            self._update_hold(conn, tenant_id, hold_id, expires_at=new_expires_at)
            conn.execute(
                outbox_events.insert().values(
                    event_id=derive_event_id(operation_id, event.event_type.value),
                    type=event.event_type.value,
                    version=EVENT_VERSION,
                    tenant_id=tenant_id,
                    occurred_at=at,
                    hold_id=event.hold_id,
                    order_id=None,
                    account_id=event.account_id,
                    transaction_id=None,
                    payload=event.payload,
                    sent_at=None,
                )
            )
            return reads.hold_from_row(reads.hold_row(conn, tenant_id, hold_id))

        return self._write(
            Operation.EXTEND_HOLD, tenant_id, idempotency_key, request, Hold, write, now
        )

    @staticmethod
    def _update_hold(conn: sa.Connection, tenant_id: str, hold_id: str, **values: Any) -> None:
        conn.execute(
            holds.update()
            .where(holds.c.tenant_id == tenant_id, holds.c.hold_id == hold_id)
            .values(**values)
        )

    def get_hold(self, hold_id: str, *, tenant_id: str) -> Hold:
        check_tenant_id(tenant_id)
        check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)
        with self.engine.connect() as conn:
            return reads.hold_from_row(reads.hold_row(conn, tenant_id, hold_id))

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
        with self.engine.connect() as conn:
            return reads.list_holds(
                conn,
                tenant_id=tenant_id,
                state=state,
                expires_before=expires_before,
                account_id=account_id,
                limit=limit,
                after=after,
            )

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
                Operation.RECORD_ENTRIES, [entries], tenant_id, idempotency_key, account_id, now
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
        operation = Operation.RECORD_ENTRIES_MANY
        prepared = self._prepare_record(
            operation, batches, tenant_id, idempotency_key, account_id, now
        )
        return _replayed_batches(self._record(prepared))

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
                Operation.RECORD_ENTRIES_MANY,
                request.batches,
                request.tenant_id,
                request.idempotency_key,
                request.account_id,
                now,
            )
            for request in requests
        ]
        results = self._in_transaction(
            Operation.RECORD_ENTRIES_ATOMICALLY,
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
        single = operation == Operation.RECORD_ENTRIES
        batches = posting_rules.check_record_batches(batches, single=single)
        now = self._check_now(now)
        checked = self._checked_batches(batches, tenant_id)
        request = {"account_id": account_id, "batches": checked}

        def write(conn: sa.Connection, recorded_at: datetime) -> TransactionBatchResult:
            targets = [[posting_rules.record_target(r, account_id) for r in b] for b in checked]
            system = posting_rules.record_system_accounts(checked, account_id)
            opened = self._ensure_accounts(conn, tenant_id, system, recorded_at)
            wanted = [t for batch in targets for t in batch] + [spec[0] for spec in system]
            locked = self._locked(conn, tenant_id, wanted)
            self._journal_opened(conn, tenant_id, opened, idempotency_key, recorded_at)
            transaction_ids = [
                derive_transaction_id(
                    tenant_id, idempotency_key, TransactionStep.record(None if single else n)
                )
                for n in range(len(checked))
            ]
            decided = posting_rules.decide_records(
                checked,
                targets,
                locked,
                transaction_ids=transaction_ids,
                at=now or recorded_at,
                registry=self.registry,
            )
            results = [
                self._transaction_result(
                    conn,
                    self._draft(
                        tenant_id,
                        transaction_id,
                        TransactionKind.RECORD,
                        idempotency_key,
                        now or recorded_at,
                        recorded_at,
                        postings,
                    ),
                )
                for transaction_id, postings in zip(transaction_ids, decided, strict=True)
            ]
            return TransactionBatchResult(tenant_id=tenant_id, transactions=results)

        request_hash = _request_hash(operation, request)
        return (
            operation,
            tenant_id,
            idempotency_key,
            request_hash,
            TransactionBatchResult,
            write,
            now,
        )

    def _checked_batches(
        self, batches: Sequence[Sequence[LedgerEntryInput | Mapping[str, Any]]], tenant_id: str
    ) -> list[list[dict[str, Any]]]:
        """Every record checked (the error names its index in the call); no ledger_entry_id
        twice."""
        checked: list[list[dict[str, Any]]] = []
        index = 0
        for batch in batches:
            checked.append([])
            for entry in batch:
                checked[-1].append(
                    posting_rules.check_ledger_entry(
                        entry, tenant_id=tenant_id, registry=self.registry, index=index
                    )
                )
                index += 1
        ids = [r["ledger_entry_id"] for b in checked for r in b if r["ledger_entry_id"]]
        if len(ids) != len(set(ids)):
            raise InvalidEntry("a ledger_entry_id appears twice", field="ledger_entry_id")
        return checked

    def check_entry(self, entry: LedgerEntryInput | Mapping[str, Any], *, tenant_id: str) -> None:
        """Checks one LedgerEntry v1.0 record with exactly the rules ``record_entries`` applies
        to it (everything but the accounts it posts to), raising the error it would raise."""
        check_tenant_id(tenant_id)
        if not isinstance(entry, LedgerEntryInput | Mapping):
            raise InvalidEntry("each entry must be a record (an object)", field="entries")
        posting_rules.check_ledger_entry(entry, tenant_id=tenant_id, registry=self.registry)

    def reverse_transaction(
        self,
        transaction_id: str,
        *,
        tenant_id: str,
        idempotency_key: str,
        reason: str = REASON_ADJUSTMENT,
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
        step = TransactionStep.REVERSE
        new_transaction_id = derive_transaction_id(tenant_id, idempotency_key, step)

        def write(conn: sa.Connection, recorded_at: datetime) -> TransactionResult:
            at = now or recorded_at
            original = reads.transaction_row(conn, tenant_id, transaction_id)
            reversed_by = reads.reversed_by(conn, tenant_id, transaction_id)
            posting_rules.check_reversible(
                original.kind, reversed_by, transaction_id=transaction_id
            )
            entries = reads.with_entries(conn, [original])[0].entries
            locked = self._locked(conn, tenant_id, [entry.account_id for entry in entries])
            # Asked again under the account locks: a concurrent reversal of the same
            # transaction that committed meanwhile is "already reversed", not a lack of funds.
            reversed_by = reads.reversed_by(conn, tenant_id, transaction_id)
            posting_rules.check_not_reversed(reversed_by, transaction_id=transaction_id)
            postings = posting_rules.reversal_postings(
                entries, transaction_id=transaction_id, reason=reason, at=at
            )
            posting_rules.check_debits(postings, locked, self.registry)
            draft = self._draft(
                tenant_id,
                new_transaction_id,
                TransactionKind.REVERSAL,
                idempotency_key,
                at,
                recorded_at,
                postings,
                reverses_transaction_id=transaction_id,
                meta={"reverses": transaction_id, "reason": reason},
            )
            return self._transaction_result(conn, draft)

        return self._write(
            Operation.REVERSE_TRANSACTION,
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
        with self.engine.connect() as conn:
            return reads.list_ledger_entries(
                conn,
                tenant_id=tenant_id,
                account_id=account_id,
                from_ts=from_ts,
                to_ts=to_ts,
                cursor=cursor,
                limit=limit,
                time_field=time_field,
            )

    def get_transaction(self, transaction_id: str, *, tenant_id: str) -> TransactionResult:
        check_tenant_id(tenant_id)
        check_identifier(transaction_id, "transaction_id", length_max=limits.id_length_max)
        with self.engine.connect() as conn:
            row = reads.transaction_row(conn, tenant_id, transaction_id)
            return reads.with_entries(conn, [row])[0]

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
        with self.engine.connect() as conn:
            return reads.list_transactions(
                conn,
                tenant_id=tenant_id,
                hold_id=hold_id,
                after_sequence=after_sequence,
                limit=limit,
            )

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
        query = reads.tenant_events_query(
            tenant_id=tenant_id,
            unsent_only=unsent_only,
            transaction_id=transaction_id,
            hold_id=hold_id,
        )
        return self._events(query, after_sequence, limit)

    def list_unsent_events_all_tenants(
        self, *, after_sequence: int = 0, limit: int = limits.page_size_default
    ) -> list[Event]:
        """Every tenant's unsent outbox events, oldest first: what the outbox relay publishes.
        Not a tenant's read: tenant-facing callers use :meth:`list_events`."""
        return self._events(reads.unsent_events_query(), after_sequence, limit)

    def _events(self, query: sa.Select[Any], after_sequence: object, limit: object) -> list[Event]:
        after, page_size = reads.check_events_page(after_sequence, limit)
        with self.engine.connect() as conn:
            return reads.events(conn, query, after, page_size)

    def mark_events_sent(self, event_ids: Sequence[str], *, sent_at: datetime | None = None) -> int:
        """Marks events as published; events marked already keep their first time."""
        if not isinstance(event_ids, list | tuple) or not all(
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
