"""The rows that drive payouts, checked against the journal transactions that set them.

``holds`` and ``accounts`` are mutable tables: the ledger updates them as holds resolve and
balances move. CHECK constraints refuse rows that cannot be (a negative capture, a resolved hold
whose parts do not add up, an escrow account with an overdraft...); what a constraint cannot
see, such as a payee redirected to another agent of the same currency or a captured hold set back
to active, is found here by deriving each field from the journal, whose rows are append-only and
hash-chained:

hold field                  journal source
--------------------------  ---------------------------------------------------------------
account_id, currency,       the freeze transaction's OUT entry
amount_minor
payee_account_id            ``meta.payee_account_id`` of the capture (or freeze) transaction;
                            the payee's IN entry of the finalize transaction
state                       the kind of the hold's resolving transaction (none: active)
order_id                    ``meta.order_id`` of the capture transaction
captured_minor,             the capture's entries into escrow and back to the account; the
released_minor              release or expiry entry
finalized, fee_minor        the finalize transaction and its entry into revenue
*_transaction_id            the IDs of those transactions

account field               journal source
--------------------------  ---------------------------------------------------------------
kind, currency, name,       ``meta.accounts`` of the ``account_open`` control transaction
parent_account_id, status,  that opened the account, then ``meta.set`` of each later
overdraft_limit_minor       ``account_change`` transaction of the account

Transactions written before the journal recorded payees (hash version 1) do not name the
payee of an unfinalized capture: such a hold's payee is checked once it is finalized.
Every finding is a :class:`~ledger_db.models.Problem` naming the tenant, the hold or account,
the field, the journal transaction that says otherwise, and both values.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ledger_db.models import Direction, HoldState, Problem, TransactionKind
from ledger_db.schema import accounts, holds, journal_entries, journal_transactions

__all__ = [
    "ACCOUNT_JOURNALED_FIELDS",
    "HOLD_JOURNALED_FIELDS",
    "AccountJournal",
    "account_attributes",
    "verify_accounts",
    "verify_holds",
]

# The account columns an account_open transaction records (and account_change may set).
ACCOUNT_JOURNALED_FIELDS: tuple[str, ...] = (
    "kind",
    "currency",
    "name",
    "parent_account_id",
    "overdraft_limit_minor",
    "status",
)
HOLD_JOURNALED_FIELDS: tuple[str, ...] = (
    "account_id",
    "currency",
    "amount_minor",
    "payee_account_id",
    "state",
    "order_id",
    "captured_minor",
    "released_minor",
    "finalized",
    "fee_minor",
    "freeze_transaction_id",
    "resolve_transaction_id",
    "finalize_transaction_id",
)
_BATCH_ROWS = 500
_STATE_OF_KIND = {
    TransactionKind.CAPTURE.value: HoldState.CAPTURED.value,
    TransactionKind.RELEASE.value: HoldState.RELEASED.value,
    TransactionKind.EXPIRE.value: HoldState.EXPIRED.value,
}
_HOLD_KINDS = (
    TransactionKind.FREEZE.value,
    *_STATE_OF_KIND,
    TransactionKind.FINALIZE.value,
)
_UNKNOWN: Any = object()


def account_attributes(row: Mapping[str, Any]) -> dict[str, Any]:
    """What an account_open transaction records of an account row (or of the values to insert)."""
    attributes = {name: row[name] for name in ("account_id", *ACCOUNT_JOURNALED_FIELDS)}
    attributes["overdraft_limit_minor"] = int(attributes["overdraft_limit_minor"])
    return attributes


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# --------------------------------------------------------------------------------------------
# Accounts


@dataclass
class AccountJournal:
    """The account attributes the journal states, gathered while the journal is read in order."""

    attributes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    setters: dict[tuple[str, str], str] = field(default_factory=dict)

    def observe(self, transaction: Mapping[str, Any]) -> list[Problem]:
        """Takes in one journal transaction; returns what is wrong with it as an account record."""
        kind = transaction["kind"]
        if kind not in (TransactionKind.ACCOUNT_OPEN.value, TransactionKind.ACCOUNT_CHANGE.value):
            return []
        tenant_id, meta = transaction["tenant_id"], transaction["meta"] or {}
        where = {
            "journal_sequence": int(transaction["sequence"]),
            "transaction_id": transaction["transaction_id"],
            "tenant_id": tenant_id,
        }
        try:
            if kind == TransactionKind.ACCOUNT_OPEN.value:
                return self._opened(tenant_id, meta["accounts"], where)
            return self._changed(tenant_id, meta["account_id"], meta["set"], where)
        except (KeyError, TypeError, ValueError, AttributeError):
            return [
                Problem(
                    kind="malformed_account_record",
                    message=f"the {kind} transaction's meta is not an account record",
                    **where,
                )
            ]

    def _opened(
        self, tenant_id: str, opened: Sequence[Mapping[str, Any]], where: dict[str, Any]
    ) -> list[Problem]:
        problems: list[Problem] = []
        for attributes in opened:
            key = (tenant_id, str(attributes["account_id"]))
            if key in self.attributes:
                problems.append(
                    Problem(
                        kind="account_opened_twice",
                        message=f"account {key[1]} is opened by a second transaction",
                        account_id=key[1],
                        expected=self.setters[key],
                        **where,
                    )
                )
                continue
            self.attributes[key] = {name: attributes[name] for name in ACCOUNT_JOURNALED_FIELDS}
            self.setters[key] = where["transaction_id"]
        return problems

    def _changed(
        self, tenant_id: str, account_id: str, changes: Mapping[str, Any], where: dict[str, Any]
    ) -> list[Problem]:
        key = (tenant_id, account_id)
        unknown = set(changes) - set(ACCOUNT_JOURNALED_FIELDS)
        if key not in self.attributes or unknown:
            return [
                Problem(
                    kind="malformed_account_record",
                    message=f"account_change of {account_id} "
                    + ("before it was opened" if key not in self.attributes else f"sets {unknown}"),
                    account_id=account_id,
                    **where,
                )
            ]
        self.attributes[key].update(changes)
        self.setters[key] = where["transaction_id"]
        return []


def _rows_in_batches(connection: sa.Connection, table: sa.Table, key: str) -> Iterator[Any]:
    after = ("", "")
    while True:
        rows = connection.execute(
            sa.select(table)
            .where(
                sa.tuple_(table.c.tenant_id, table.c[key])
                > sa.tuple_(sa.literal(after[0]), sa.literal(after[1]))
            )
            .order_by(table.c.tenant_id, table.c[key])
            .limit(_BATCH_ROWS)
        ).all()
        yield from rows
        if len(rows) < _BATCH_ROWS:
            return
        after = (rows[-1].tenant_id, rows[-1]._mapping[key])


def verify_accounts(connection: sa.Connection, journal: AccountJournal) -> list[Problem]:
    """Every account row against what the journal says about it, and the reverse."""
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for row in _rows_in_batches(connection, accounts, "account_id"):
        key = (row.tenant_id, row.account_id)
        seen.add(key)
        expected = journal.attributes.get(key)
        where = {"tenant_id": row.tenant_id, "account_id": row.account_id}
        if expected is None:
            problems.append(
                Problem(
                    kind="account_not_journaled",
                    message=f"account {row.account_id} has no account_open transaction",
                    **where,
                )
            )
            continue
        actual = account_attributes(row._mapping)
        for name in ACCOUNT_JOURNALED_FIELDS:
            if actual[name] != expected[name]:
                problems.append(
                    Problem(
                        kind="account_mismatch",
                        message=f"account {row.account_id}: {name} differs from the journal",
                        field=name,
                        transaction_id=journal.setters[key],
                        expected=_text(expected[name]),
                        actual=_text(actual[name]),
                        **where,
                    )
                )
    for tenant_id, account_id in sorted(set(journal.attributes) - seen):
        problems.append(
            Problem(
                kind="account_missing",
                message=f"account {account_id} was opened in the journal but has no row",
                tenant_id=tenant_id,
                account_id=account_id,
                transaction_id=journal.setters[(tenant_id, account_id)],
            )
        )
    return problems


# --------------------------------------------------------------------------------------------
# Holds


@dataclass
class _HoldFacts:
    """What the journal says about one hold."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def state(self, name: str, value: Any, transaction_id: str) -> None:
        if value is _UNKNOWN:
            return
        self.values[name] = value
        self.sources[name] = transaction_id


def _sum_in(entries: Sequence[Mapping[str, Any]], prefix: str | None, *, inside: bool) -> int:
    """IN amounts on accounts whose ID starts with ``prefix`` (``inside``) or does not."""
    return sum(
        int(entry["amount_minor"])
        for entry in entries
        if entry["direction"] == Direction.IN.value
        and (prefix is not None and str(entry["account_id"]).startswith(prefix)) == inside
    )


def _facts_of(
    transactions: Sequence[Mapping[str, Any]], entries: Mapping[int, list[dict[str, Any]]]
) -> _HoldFacts:
    """Folds a hold's journal transactions (in journal order) into the values of its row."""
    facts = _HoldFacts(
        values={
            "state": HoldState.ACTIVE.value,
            "order_id": None,
            "captured_minor": 0,
            "released_minor": 0,
            "finalized": False,
            "fee_minor": 0,
            "resolve_transaction_id": None,
            "finalize_transaction_id": None,
        }
    )
    seen_kinds: dict[str, str] = {}
    for transaction in transactions:
        kind, transaction_id = transaction["kind"], transaction["transaction_id"]
        meta = transaction["meta"] or {}
        posted = entries.get(int(transaction["sequence"]), [])
        group = "resolve" if kind in _STATE_OF_KIND else kind
        if group in seen_kinds:
            facts.problems.append(
                Problem(
                    kind="hold_journaled_twice",
                    message=f"a second {kind} transaction for hold {transaction['hold_id']}",
                    journal_sequence=int(transaction["sequence"]),
                    transaction_id=transaction_id,
                    tenant_id=transaction["tenant_id"],
                    hold_id=transaction["hold_id"],
                    expected=seen_kinds[group],
                )
            )
            continue
        seen_kinds[group] = transaction_id
        payee = meta.get("payee_account_id", _UNKNOWN) if isinstance(meta, Mapping) else _UNKNOWN
        if kind == TransactionKind.FREEZE.value:
            out = [entry for entry in posted if entry["direction"] == Direction.OUT.value]
            if out:
                facts.state("account_id", out[0]["account_id"], transaction_id)
                facts.state("currency", out[0]["currency"], transaction_id)
                facts.state("amount_minor", int(out[0]["amount_minor"]), transaction_id)
            facts.state("freeze_transaction_id", transaction_id, transaction_id)
            facts.state("payee_account_id", payee, transaction_id)
        elif kind in _STATE_OF_KIND:
            facts.state("state", _STATE_OF_KIND[kind], transaction_id)
            facts.state("resolve_transaction_id", transaction_id, transaction_id)
            facts.state("captured_minor", _sum_in(posted, "@escrow:", inside=True), transaction_id)
            facts.state("released_minor", _sum_in(posted, "@escrow:", inside=False), transaction_id)
            if kind == TransactionKind.CAPTURE.value:
                facts.state("order_id", meta.get("order_id"), transaction_id)
                facts.state("payee_account_id", payee, transaction_id)
        else:
            facts.state("finalized", True, transaction_id)
            facts.state("finalize_transaction_id", transaction_id, transaction_id)
            facts.state("fee_minor", _sum_in(posted, "@revenue:", inside=True), transaction_id)
            paid = [
                entry["account_id"]
                for entry in posted
                if entry["direction"] == Direction.IN.value
                and not str(entry["account_id"]).startswith("@revenue:")
            ]
            facts.state("payee_account_id", paid[0] if paid else payee, transaction_id)
    return facts


def _journal_of(
    connection: sa.Connection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], _HoldFacts]:
    """The journal facts of a batch of holds: their transactions and those transactions' entries."""
    found = connection.execute(
        sa.select(journal_transactions)
        .where(
            sa.tuple_(journal_transactions.c.tenant_id, journal_transactions.c.hold_id).in_(keys),
            journal_transactions.c.kind.in_(_HOLD_KINDS),
        )
        .order_by(journal_transactions.c.sequence)
    ).all()
    entries: dict[int, list[dict[str, Any]]] = defaultdict(list)
    sequences = [int(row.sequence) for row in found]
    for start in range(0, len(sequences), _BATCH_ROWS):
        for entry in connection.execute(
            sa.select(journal_entries).where(
                journal_entries.c.journal_sequence.in_(sequences[start : start + _BATCH_ROWS])
            )
        ):
            entries[int(entry.journal_sequence)].append(dict(entry._mapping))
    by_hold: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in found:
        by_hold[(row.tenant_id, row.hold_id)].append(dict(row._mapping))
    return {key: _facts_of(rows, entries) for key, rows in by_hold.items()}


def _compare_hold(row: Any, facts: _HoldFacts | None) -> list[Problem]:
    where = {"tenant_id": row.tenant_id, "hold_id": row.hold_id, "account_id": row.account_id}
    if facts is None or "freeze_transaction_id" not in facts.values:
        return [
            Problem(
                kind="hold_not_journaled",
                message=f"hold {row.hold_id} has no freeze transaction in the journal",
                field="freeze_transaction_id",
                actual=row.freeze_transaction_id,
                **where,
            )
        ]
    problems = list(facts.problems)
    for name in HOLD_JOURNALED_FIELDS:
        if name not in facts.values:
            continue
        expected, actual = facts.values[name], row._mapping[name]
        if name == "finalized":
            actual = bool(actual)
        elif name.endswith("_minor"):
            actual = int(actual)
        if actual != expected:
            problems.append(
                Problem(
                    kind="hold_mismatch",
                    message=f"hold {row.hold_id}: {name} differs from the journal",
                    field=name,
                    transaction_id=facts.sources.get(name),
                    expected=_text(expected),
                    actual=_text(actual),
                    **where,
                )
            )
    return problems


def _unheld_freezes(connection: sa.Connection) -> list[Problem]:
    """Freeze transactions whose hold row is gone."""
    missing = connection.execute(
        sa.select(
            journal_transactions.c.sequence,
            journal_transactions.c.transaction_id,
            journal_transactions.c.tenant_id,
            journal_transactions.c.hold_id,
        )
        .where(
            journal_transactions.c.kind == TransactionKind.FREEZE.value,
            ~sa.exists().where(
                holds.c.tenant_id == journal_transactions.c.tenant_id,
                holds.c.hold_id == journal_transactions.c.hold_id,
            ),
        )
        .order_by(journal_transactions.c.sequence)
    ).all()
    return [
        Problem(
            kind="hold_missing",
            message=f"hold {row.hold_id} was frozen in the journal but has no row",
            journal_sequence=int(row.sequence),
            transaction_id=row.transaction_id,
            tenant_id=row.tenant_id,
            hold_id=row.hold_id,
        )
        for row in missing
    ]


def verify_holds(connection: sa.Connection) -> list[Problem]:
    """Every hold row against its journal transactions (read a batch of holds at a time), then
    the freezes whose row is missing."""
    problems: list[Problem] = []
    batch: list[Any] = []

    def flush() -> None:
        facts = _journal_of(connection, [(row.tenant_id, row.hold_id) for row in batch])
        for row in batch:
            problems.extend(_compare_hold(row, facts.get((row.tenant_id, row.hold_id))))
        batch.clear()

    for row in _rows_in_batches(connection, holds, "hold_id"):
        batch.append(row)
        if len(batch) == _BATCH_ROWS:
            flush()
    if batch:
        flush()
    problems.extend(_unheld_freezes(connection))
    return problems
