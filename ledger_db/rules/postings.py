"""The rules of postings: the entries a deposit, a LedgerEntry v1.0 record or a reversal posts,
the sign rule (IN +, OUT -, in :func:`ledger_db.money.signed_minor`) and the balance check.

A :class:`Posting` is an entry decided on but not written; the store gives it its position,
IDs and hash. Every list of postings a rule returns balances per currency (:func:`balanced`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from ledger_db import limits
from ledger_db.errors import InvalidEntry, LedgerError, TransactionAlreadyReversed
from ledger_db.ids import derive_entry_id
from ledger_db.models import (
    REVERSIBLE_KINDS,
    AccountKind,
    Direction,
    JournalEntry,
    LedgerEntryInput,
)
from ledger_db.money import CurrencyRegistry, signed_minor
from ledger_db.rules.accounts import (
    AccountRecord,
    check_agent,
    check_available,
    check_currency,
    check_record_target,
)
from ledger_db.validation import (
    check_account_id,
    check_identifier,
    check_instant,
    check_meta,
    check_optional_identifier,
    check_tags,
    check_text,
    iso,
)
from ledger_db.vocabulary import (
    LEDGER_ENTRY_FIELDS,
    LEDGER_ENTRY_REFERENCES,
    LEDGER_ENTRY_SUBJECTS,
    system_account_id,
)

__all__ = [
    "RECORD_POSTING_FIELDS",
    "Posting",
    "balanced",
    "check_debits",
    "check_deposit",
    "check_ledger_entry",
    "check_not_reversed",
    "check_record_batches",
    "check_reversible",
    "debits",
    "decide_records",
    "deposit_postings",
    "move",
    "opposite",
    "record_postings",
    "record_system_accounts",
    "record_target",
    "reversal_postings",
]

# The fields of a checked v1.0 record that its two postings carry as they are: the v1.0 list
# but for the record's identity, its direction and its instants (each posting has its own),
# with the amount in minor units.
RECORD_POSTING_FIELDS: tuple[str, ...] = tuple(
    "amount_minor" if name == "amount" else name
    for name in LEDGER_ENTRY_FIELDS
    if name not in {"ledger_entry_id", "tenant_id", "direction", "occurred_at", "recorded_at"}
)

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


@dataclass(frozen=True)
class Posting:
    """An entry decided on but not yet written (the fields of ``journal.EntryDraft``)."""

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

    @property
    def signed_minor(self) -> int:
        return signed_minor(self.direction, self.amount_minor)

    def as_fields(self) -> dict[str, Any]:
        """The posting's fields by name (shallow: ``meta`` and ``tags`` are shared)."""
        return {item.name: getattr(self, item.name) for item in fields(self)}


def opposite(direction: Direction) -> Direction:
    return Direction.IN if direction is Direction.OUT else Direction.OUT


def balanced(postings: Iterable[Posting]) -> bool:
    """Whether the postings sum to zero in every currency (IN +, OUT -)."""
    totals: dict[str, int] = {}
    for posting in postings:
        totals[posting.currency] = totals.get(posting.currency, 0) + posting.signed_minor
    return not any(totals.values())


def debits(postings: Iterable[Posting]) -> dict[str, int]:
    """Net money out of each account (OUT - IN): positive where the account's balance falls."""
    out: dict[str, int] = {}
    for posting in postings:
        out[posting.account_id] = out.get(posting.account_id, 0) - posting.signed_minor
    return out


def check_debits(
    postings: Iterable[Posting], accounts: Mapping[str, AccountRecord], registry: CurrencyRegistry
) -> None:
    """Every account the postings take money from (net) can afford it."""
    for account_id, debit_minor in debits(postings).items():
        if debit_minor > 0:
            check_available(accounts[account_id], debit_minor, registry)


def move(
    source: str,
    target: str,
    amount_minor: int,
    reason: str,
    category: str,
    common: Mapping[str, Any],
    *,
    meta: dict[str, Any] | None = None,
    counterpart: Literal["source", "target"] | None = None,
) -> list[Posting]:
    """The two postings that move ``amount_minor`` from ``source`` to ``target``; the side named
    by ``counterpart`` is the platform's balancing side that tenant reports do not count."""
    return [
        Posting(
            account_id=source,
            direction=Direction.OUT,
            amount_minor=amount_minor,
            reason=reason,
            category=category,
            meta=meta or {},
            counterpart=counterpart == "source",
            **common,
        ),
        Posting(
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


# ---------------------------------------------------------------------------- deposit


def check_deposit(
    account: AccountRecord, *, currency: str | None, amount: object, registry: CurrencyRegistry
) -> int:
    """A deposit tops up an open agent account in its currency; returns the amount in minor
    units (parsed with the account's exponent)."""
    check_agent(account)
    check_currency(currency, account.currency, registry)
    return registry.to_minor(amount, account.currency)


def deposit_postings(
    account: AccountRecord, amount_minor: int, common: Mapping[str, Any]
) -> list[Posting]:
    """The external account pays the agent account (the external side is the counterpart).
    ``common`` holds the deposit's labels: reason, category, env, project_id, external_ref
    and meta."""
    labels = dict(common)
    reason, category, meta = labels.pop("reason"), labels.pop("category"), labels.pop("meta")
    return move(
        system_account_id(AccountKind.EXTERNAL, account.currency),
        account.account_id,
        amount_minor,
        reason,
        category,
        {**labels, "currency": account.currency},
        meta=meta,
        counterpart="source",
    )


# ---------------------------------------------------------------------------- LedgerEntry v1.0


def _is_list(value: object) -> bool:
    return isinstance(value, list | tuple)


def check_record_batches(
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


def check_ledger_entry(
    entry: LedgerEntryInput | Mapping[str, Any],
    *,
    tenant_id: str,
    registry: CurrencyRegistry,
    index: int | None = None,
) -> dict[str, Any]:
    """One v1.0 record, checked, as the canonical mapping the request hash and the postings
    use. With ``index`` the error names the record's position in the call."""
    try:
        return _checked_ledger_entry(entry, tenant_id, registry)
    except LedgerError as error:
        if index is not None:
            error.details.setdefault("index", index)
            error.message = f"entry {index}: {error.message}"
            error.args = (error.message,)
        raise


def _checked_ledger_entry(
    entry: LedgerEntryInput | Mapping[str, Any], tenant_id: str, registry: CurrencyRegistry
) -> dict[str, Any]:
    try:
        # A LedgerEntryInput is validated again: one built with model_construct() is not.
        record = LedgerEntryInput.model_validate(dict(entry))
    except ValidationError as error:
        first = error.errors()[0]
        field_name = ".".join(str(part) for part in first["loc"]) or "entry"
        raise InvalidEntry(f"{field_name}: {first['msg']}", field=field_name) from error
    if record.tenant_id is not None and record.tenant_id != tenant_id:
        raise InvalidEntry("tenant_id differs from the call's tenant", field="tenant_id")
    entry_id = None
    if record.ledger_entry_id is not None:
        try:
            entry_id = str(uuid.UUID(record.ledger_entry_id))
        except ValueError as error:
            raise InvalidEntry("ledger_entry_id is not a UUID", field="ledger_entry_id") from error
    if record.account_id is not None:
        check_account_id(record.account_id)
    amount_minor = registry.to_minor(record.amount, record.currency)
    if not any(getattr(record, name) for name in LEDGER_ENTRY_SUBJECTS):
        raise InvalidEntry(
            f"at least one of {', '.join(LEDGER_ENTRY_SUBJECTS)} must be set", field="asset_id"
        )
    references = {
        name: check_optional_identifier(getattr(record, name), name)
        for name in LEDGER_ENTRY_REFERENCES
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


def record_postings(
    record: Mapping[str, Any],
    target: AccountRecord,
    *,
    external_account_id: str,
    transaction_id: str,
    position: int,
    at: datetime,
    registry: CurrencyRegistry,
) -> list[Posting]:
    """The primary posting of a checked v1.0 record on ``target`` and its counterpart on the
    tenant's external account (the other side the tenant does not see)."""
    check_record_target(target, record["currency"], registry)
    direction = Direction(record["direction"])
    carried = {key: record[key] for key in RECORD_POSTING_FIELDS}
    occurred = datetime.fromisoformat(record["occurred_at"]) if record["occurred_at"] else at
    primary_id = record["ledger_entry_id"] or derive_entry_id(transaction_id, 2 * position)
    return [
        Posting(
            account_id=target.account_id,
            direction=direction,
            occurred_at=occurred,
            ledger_entry_id=primary_id,
            **carried,
        ),
        Posting(
            account_id=external_account_id,
            direction=opposite(direction),
            occurred_at=occurred,
            counterpart=True,
            ledger_entry_id=str(uuid.uuid5(uuid.UUID(primary_id), "counterpart")),
            **carried,
        ),
    ]


def record_target(record: Mapping[str, Any], account_id: str | None) -> str:
    """Where a checked record posts: its own account, the call's, or the tenant's operating
    account of its currency."""
    target = record["account_id"] or account_id
    if target is None:
        return system_account_id(AccountKind.OPERATING, record["currency"])
    return str(target)


def record_system_accounts(
    batches: Iterable[Iterable[Mapping[str, Any]]], account_id: str | None
) -> list[tuple[str, AccountKind, str]]:
    """The ledger's own accounts a recording needs (as ensure-specs, sorted): the external
    account of each currency and, for records without an account, the operating account."""
    system: set[tuple[str, AccountKind, str]] = set()
    for batch in batches:
        for record in batch:
            currency = record["currency"]
            system.add(
                (system_account_id(AccountKind.EXTERNAL, currency), AccountKind.EXTERNAL, currency)
            )
            if record["account_id"] is None and account_id is None:
                kind = AccountKind.OPERATING
                system.add((system_account_id(kind, currency), kind, currency))
    return sorted(system)


def decide_records(
    batches: Sequence[Sequence[Mapping[str, Any]]],
    targets: Sequence[Sequence[str]],
    accounts: Mapping[str, AccountRecord],
    *,
    transaction_ids: Sequence[str],
    at: datetime,
    registry: CurrencyRegistry,
) -> list[list[Posting]]:
    """The postings of each batch, one journal transaction each. Available balances move batch
    by batch, so that no journal transaction leaves an agent below its overdraft even for an
    instant of the journal's history."""
    spent: dict[str, int] = {}
    decided: list[list[Posting]] = []
    for batch, batch_targets, transaction_id in zip(batches, targets, transaction_ids, strict=True):
        postings: list[Posting] = []
        for position, (record, target) in enumerate(zip(batch, batch_targets, strict=True)):
            postings += record_postings(
                record,
                accounts[target],
                external_account_id=system_account_id(AccountKind.EXTERNAL, record["currency"]),
                transaction_id=transaction_id,
                position=position,
                at=at,
                registry=registry,
            )
            debit = -signed_minor(record["direction"], record["amount_minor"])
            spent[target] = spent.get(target, 0) + debit
        for target in dict.fromkeys(batch_targets):
            if spent[target] > 0:
                check_available(accounts[target], spent[target], registry)
        decided.append(postings)
    return decided


# ---------------------------------------------------------------------------- reversal


def check_reversible(kind: str, reversed_by: str | None, *, transaction_id: str) -> None:
    """A deposit or record is reversed at most once; hold movements are resolved by the hold."""
    if kind not in REVERSIBLE_KINDS:
        raise InvalidEntry(
            _NOT_REVERSIBLE.get(kind, _NOT_REVERSIBLE[""]).format(kind=kind),
            field="transaction_id",
        )
    check_not_reversed(reversed_by, transaction_id=transaction_id)


def check_not_reversed(reversed_by: str | None, *, transaction_id: str) -> None:
    if reversed_by is not None:
        raise TransactionAlreadyReversed(
            f"transaction {transaction_id!r} was reversed by {reversed_by}",
            reversed_by=reversed_by,
        )


def reversal_postings(
    entries: Sequence[JournalEntry], *, transaction_id: str, reason: str, at: datetime
) -> list[Posting]:
    """Every entry of ``transaction_id`` again with its direction swapped (Formance's
    ``Reverse``): the reversal negates each entry, so it balances when the original did."""
    return [
        Posting(
            account_id=entry.account_id,
            direction=opposite(entry.direction),
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
        for entry in entries
    ]
