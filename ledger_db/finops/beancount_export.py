"""Export of the journal in Beancount format, so that an independent tool checks our books.

Each journal transaction becomes one Beancount transaction (dated by its ``recorded_at`` day in
UTC) whose postings are its entries: IN is positive, OUT negative. Accounts are opened on the
first day of the export and, the day after the last transaction, a ``balance`` directive states
every account's balance snapshot as the ledger keeps it (``accounts.balance_minor``). Beancount
recomputes every balance from the postings alone, so ``bean-check`` passing means the ledger's
snapshots equal the journal replayed by another program, and that every transaction balances.

Account names: ``<Root>:<Tenant>:<Account>`` where the root follows the account kind (agent,
hold, escrow and operating accounts are Assets, revenue is Income, external is Equity) and each
component is made Beancount-safe; should two accounts map to the same name, a short hash of the
original IDs tells them apart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any, TextIO

import sqlalchemy as sa

from ledger_db.money import default_registry, signed_minor
from ledger_db.schema import accounts, journal_entries, journal_transactions

__all__ = ["account_names", "write_beancount"]

_ROOT_BY_KIND = {
    "agent": "Assets",
    "hold": "Assets",
    "escrow": "Assets",
    "operating": "Assets",
    "revenue": "Income",
    "external": "Equity",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
_BATCH_ENTRIES = 10_000


def _component(text: str) -> str:
    cleaned = _UNSAFE.sub("-", text.lstrip("@")).strip("-") or "X"
    if not cleaned[0].isalnum():
        cleaned = "X" + cleaned
    return cleaned[0].upper() + cleaned[1:]


def account_names(rows: list[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    """(tenant_id, account_id, kind) rows -> unique Beancount account names."""
    names: dict[tuple[str, str], str] = {}
    owners: dict[str, list[tuple[str, str]]] = {}
    for tenant_id, account_id, kind in rows:
        name = (
            f"{_ROOT_BY_KIND.get(kind, 'Assets')}:{_component(tenant_id)}:{_component(account_id)}"
        )
        names[(tenant_id, account_id)] = name
        owners.setdefault(name, []).append((tenant_id, account_id))
    for name, keys in owners.items():
        if len(keys) > 1:
            for key in keys:
                digest = hashlib.sha256("\x1f".join(key).encode()).hexdigest()[:8]
                names[key] = f"{name}-{digest}"
    return names


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _entries_in_order(
    connection: sa.Connection, tenant_id: str | None
) -> Iterator[list[dict[str, Any]]]:
    """Journal entries grouped by transaction, in journal order, read in batches."""
    table = journal_entries.c
    conditions = [] if tenant_id is None else [table.tenant_id == tenant_id]
    after = (0, -1)
    pending: list[dict[str, Any]] = []
    while True:
        rows = connection.execute(
            sa.select(
                table.journal_sequence,
                table.entry_index,
                table.transaction_id,
                table.tenant_id,
                table.account_id,
                table.direction,
                table.amount_minor,
                table.currency,
                table.recorded_at,
                journal_transactions.c.kind,
            )
            .join(
                journal_transactions,
                journal_transactions.c.sequence == table.journal_sequence,
            )
            .where(
                *conditions,
                sa.or_(
                    table.journal_sequence > after[0],
                    sa.and_(table.journal_sequence == after[0], table.entry_index > after[1]),
                ),
            )
            .order_by(table.journal_sequence, table.entry_index)
            .limit(_BATCH_ENTRIES)
        ).all()
        for row in rows:
            mapping = dict(row._mapping)
            if pending and pending[0]["journal_sequence"] != mapping["journal_sequence"]:
                yield pending
                pending = []
            pending.append(mapping)
        if len(rows) < _BATCH_ENTRIES:
            break
        after = (int(rows[-1].journal_sequence), int(rows[-1].entry_index))
    if pending:
        yield pending


def write_beancount(
    connection: sa.Connection, output: TextIO, *, tenant_id: str | None = None
) -> dict[str, int]:
    """Writes the journal (one tenant's, or all of it) to ``output``; returns counts."""
    registry = default_registry()
    account_query = sa.select(
        accounts.c.tenant_id,
        accounts.c.account_id,
        accounts.c.kind,
        accounts.c.currency,
        accounts.c.balance_minor,
    ).order_by(accounts.c.tenant_id, accounts.c.account_id)
    if tenant_id is not None:
        account_query = account_query.where(accounts.c.tenant_id == tenant_id)
    account_rows = connection.execute(account_query).all()
    names = account_names([(row.tenant_id, row.account_id, row.kind) for row in account_rows])
    table = journal_entries.c
    bounds = connection.execute(
        sa.select(sa.func.min(table.recorded_at), sa.func.max(table.recorded_at)).where(
            *([] if tenant_id is None else [table.tenant_id == tenant_id])
        )
    ).one()
    output.write('option "title" "Compute Ledger journal export"\n\n')
    if bounds[0] is None:
        return {"transactions": 0, "accounts": len(account_rows)}
    first_day: date = bounds[0].date()
    last_day: date = bounds[1].date()
    for row in account_rows:
        output.write(
            f"{first_day.isoformat()} open {names[(row.tenant_id, row.account_id)]} "
            f"{row.currency}\n"
        )
    output.write("\n")
    transactions = 0
    for group in _entries_in_order(connection, tenant_id):
        head = group[0]
        output.write(
            f"{head['recorded_at'].date().isoformat()} * {_quote(head['kind'])} "
            f"{_quote('journal #' + str(head['journal_sequence']))}\n"
            f"  transaction_id: {_quote(head['transaction_id'])}\n"
        )
        for entry in group:
            signed = signed_minor(entry["direction"], int(entry["amount_minor"]))
            amount = registry.to_text(signed, entry["currency"])
            output.write(
                f"  {names[(entry['tenant_id'], entry['account_id'])]}  "
                f"{amount} {entry['currency']}\n"
            )
        output.write("\n")
        transactions += 1
    check_day = last_day + timedelta(days=1)
    for row in account_rows:
        balance = registry.to_text(int(row.balance_minor), row.currency)
        output.write(
            f"{check_day.isoformat()} balance {names[(row.tenant_id, row.account_id)]} "
            f"{balance} {row.currency}\n"
        )
    return {"transactions": transactions, "accounts": len(account_rows)}
