"""Migration 0002 keeps a journal written by the first release verifiable, on both engines.

``fixtures/journal_v1.json`` holds every row of a ledger built by the code of commit df1cae8
(schema 0001, hash version 1): two tenants, deposits, every hold outcome (active, partially
captured then finalized, captured and pending payout, released, expired), a recorded v1.0
entry with ``meta.fee_amount: 3.5``, a reversal. Loaded into a database at revision 0001 and
upgraded, the journal verifies clean, every account gets its ``account_open`` record, and the
ledger keeps writing (hash version 2) on top of the old chain.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from ledger_data import FIXTURES, load_journal_fixture

from ledger_db import Ledger
from ledger_db.models import TransactionKind

FIXTURE = FIXTURES / "journal_v1.json"


def load_v1_journal(url: str) -> None:
    """A database at revision 0001 holding the fixture's rows, exactly as the old code wrote them."""
    load_journal_fixture(url, FIXTURE, "0001")


@pytest.fixture
def migrated(database_url: str) -> Iterator[Ledger]:
    load_v1_journal(database_url)
    ledger = Ledger.from_url(database_url)
    try:
        yield ledger
    finally:
        ledger.close()


def test_a_v1_journal_verifies_after_the_upgrade(migrated: Ledger) -> None:
    assert migrated.verify_journal() == []
    with migrated.engine.connect() as connection:
        versions = dict(
            connection.execute(
                sa.text(
                    "SELECT hash_version, count(*) FROM journal_transactions GROUP BY hash_version"
                )
            ).all()
        )
    fixture = json.loads(FIXTURE.read_text())
    assert versions[1] == len(fixture["journal_transactions"])
    # Every existing account is journaled by the upgrade (version 2 control transactions).
    opened = {
        (transaction.tenant_id, record["account_id"])
        for tenant in ("tenant_one", "tenant_two")
        for transaction in migrated.list_transactions(tenant_id=tenant, limit=1000)
        if transaction.kind is TransactionKind.ACCOUNT_OPEN
        for record in _accounts_of(migrated, transaction.transaction_id)
    }
    assert opened == {(row["tenant_id"], row["account_id"]) for row in fixture["accounts"]}
    assert versions[2] == 2  # one per tenant: each has fewer than 100 accounts


def _accounts_of(ledger: Ledger, transaction_id: str) -> list[dict[str, Any]]:
    with ledger.engine.connect() as connection:
        meta = connection.execute(
            sa.text("SELECT meta FROM journal_transactions WHERE transaction_id = :id"),
            {"id": transaction_id},
        ).scalar_one()
    if isinstance(meta, str):
        meta = json.loads(meta)
    accounts: list[dict[str, Any]] = meta["accounts"]
    return accounts


def test_the_ledger_keeps_writing_on_the_old_chain(migrated: Ledger) -> None:
    tenant = "tenant_one"
    holds = {hold.order_id or hold.state: hold for hold in migrated.list_holds(tenant_id=tenant)}
    pending = holds["order-pending"]
    assert pending.state == "captured" and not pending.finalized
    migrated.finalize_hold(pending.hold_id, tenant_id=tenant, idempotency_key="z-pending")
    migrated.release_hold(holds["active"].hold_id, tenant_id=tenant, idempotency_key="r-active")
    migrated.deposit("buyer", "1.00", tenant_id=tenant, idempotency_key="deposit-after")
    migrated.set_overdraft_limit("buyer", "7.00", tenant_id=tenant, idempotency_key="limit")
    # A replay of a request the old code answered is still a replay.
    again = migrated.deposit(
        "buyer",
        "100.00",
        tenant_id=tenant,
        idempotency_key="deposit-1",
        external_ref="bank-1",
        meta={"note": "first"},
    )
    assert again.replayed
    assert migrated.verify_journal() == []
    # IDs are unique per tenant now: the other tenant may use tenant_one's entry ID.
    entry = {
        "ledger_entry_id": "7d0b6f0e-4c1e-4b8a-9a51-0c6f1e2a0001",
        "task_id": "task-1",
        "direction": "OUT",
        "amount": "1.00",
        "currency": "USD",
        "reason": "PROCUREMENT",
        "category": "NETWORK_COST",
    }
    migrated.record_entries([entry], tenant_id="tenant_two", idempotency_key=str(uuid.uuid4()))
    assert migrated.verify_journal() == []


def test_tampering_with_migrated_rows_is_found(migrated: Ledger) -> None:
    """The row checks cover rows the old code wrote: a finalized hold's payee (named by its
    finalize entries) and an account's overdraft limit (recorded by the upgrade)."""
    tenant = "tenant_one"
    finalized = next(
        hold for hold in migrated.list_holds(tenant_id=tenant) if hold.order_id == "order-partial"
    )
    with migrated.engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE holds SET payee_account_id = 'buyer' "
                "WHERE tenant_id = :tenant AND hold_id = :hold"
            ),
            {"tenant": tenant, "hold": finalized.hold_id},
        )
        connection.execute(
            sa.text(
                "UPDATE accounts SET overdraft_limit_minor = 999999 "
                "WHERE tenant_id = :tenant AND account_id = 'buyer'"
            ),
            {"tenant": tenant},
        )
    found = {
        (problem.kind, problem.field, problem.hold_id or problem.account_id)
        for problem in migrated.verify_journal()
    }
    assert found == {
        ("hold_mismatch", "payee_account_id", finalized.hold_id),
        ("account_mismatch", "overdraft_limit_minor", "buyer"),
    }
