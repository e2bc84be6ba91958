"""Audit: tampering injected in PostgreSQL is found at its position; hold/workflow checks;
Beancount export accepted by bean-check with balances equal to ours."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from finops_data import generate_ledger

from ledger_db import Ledger
from ledger_db.finops import HoldRef, WorkflowView, expire_orphaned_holds, run_audit
from ledger_db.finops.beancount_export import account_names, write_beancount
from ledger_db.schema import accounts, journal_transactions

BEAN_CHECK = Path(sys.executable).with_name("bean-check")


def tamper(ledger: Ledger, *statements: str) -> None:
    """Runs SQL as the superuser with every trigger off (what an attacker with DB rights does)."""
    with ledger.engine.connect() as connection, connection.begin():
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for statement in statements:
            connection.exec_driver_sql(statement)


def money_sequences(ledger: Ledger) -> list[int]:
    """The journal positions of transactions that move money (control transactions, which
    journal account openings, carry no entries to tamper with)."""
    with ledger.engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(journal_transactions.c.sequence)
                .where(journal_transactions.c.entry_count > 0)
                .order_by(journal_transactions.c.sequence)
            ).scalars()
        )


def kinds_at(report: Any) -> set[tuple[str, int | None]]:
    return {
        (problem.kind, problem.journal_sequence)
        for problem in report.problems
        if problem.source == "journal"
    }


def test_a_clean_ledger_passes(ledger: Ledger, clock: Any) -> None:
    generate_ledger(ledger, clock, operations=40)
    report = run_audit(ledger, now=clock())
    assert report.problems == [], report.problems


def test_changed_amount_is_found_at_its_position(postgres_ledger: Ledger, clock: Any) -> None:
    generate_ledger(postgres_ledger, clock, operations=30)
    target = money_sequences(postgres_ledger)[15]
    tamper(
        postgres_ledger,
        "UPDATE journal_entries SET amount_minor = amount_minor + 1 "
        f"WHERE journal_sequence = {target} AND entry_index = 0",
    )
    report = run_audit(postgres_ledger, now=clock())
    assert ("hash_mismatch", target) in kinds_at(report)
    assert ("unbalanced", target) in kinds_at(report)
    sequences = {
        problem.journal_sequence
        for problem in report.problems
        if problem.journal_sequence is not None
    }
    assert sequences == {target}, report.problems
    assert any(problem.kind == "balance_mismatch" for problem in report.problems)


def test_deleted_row_is_found_at_its_position(postgres_ledger: Ledger, clock: Any) -> None:
    generate_ledger(postgres_ledger, clock, operations=30)
    money = money_sequences(postgres_ledger)
    first, second = money[10], money[20]
    tamper(
        postgres_ledger,
        f"DELETE FROM journal_entries WHERE journal_sequence = {first} AND entry_index = 1",
    )
    report = run_audit(postgres_ledger, now=clock())
    assert {("entries_missing", first), ("hash_mismatch", first)} <= kinds_at(report)
    tamper(
        postgres_ledger,
        f"DELETE FROM journal_entries WHERE journal_sequence = {second}",
        f"DELETE FROM journal_transactions WHERE sequence = {second}",
    )
    report = run_audit(postgres_ledger, now=clock())
    found = kinds_at(report)
    assert ("sequence_gap", second + 1) in found and ("chain_broken", second + 1) in found


def test_swapped_order_is_found_at_its_position(postgres_ledger: Ledger, clock: Any) -> None:
    generate_ledger(postgres_ledger, clock, operations=30)
    money = money_sequences(postgres_ledger)
    a, b, inside = money[5], money[5] + 1, money[12]
    # Swap the sequence numbers of two neighbouring transactions (entries follow them).
    tamper(
        postgres_ledger,
        "ALTER TABLE journal_entries DROP CONSTRAINT fk_journal_entries_journal_sequence",
        f"UPDATE journal_transactions SET sequence = -1 WHERE sequence = {a}",
        f"UPDATE journal_transactions SET sequence = {a} WHERE sequence = {b}",
        f"UPDATE journal_transactions SET sequence = {b} WHERE sequence = -1",
        f"UPDATE journal_entries SET journal_sequence = -1 WHERE journal_sequence = {a}",
        f"UPDATE journal_entries SET journal_sequence = {a} WHERE journal_sequence = {b}",
        f"UPDATE journal_entries SET journal_sequence = {b} WHERE journal_sequence = -1",
    )
    report = run_audit(postgres_ledger, now=clock())
    found = kinds_at(report)
    assert ("chain_broken", a) in found and ("hash_mismatch", a) in found
    assert min(sequence for _, sequence in found if sequence is not None) == a
    # Swapping two entries inside one transaction is found too.
    tamper(
        postgres_ledger,
        "UPDATE journal_entries SET entry_index = -1 "
        f"WHERE journal_sequence = {inside} AND entry_index = 0",
        "UPDATE journal_entries SET entry_index = 0 "
        f"WHERE journal_sequence = {inside} AND entry_index = 1",
        "UPDATE journal_entries SET entry_index = 1 "
        f"WHERE journal_sequence = {inside} AND entry_index = -1",
    )
    assert ("hash_mismatch", inside) in kinds_at(run_audit(postgres_ledger, now=clock()))


def test_hold_checks_against_workflow_states(ledger: Ledger, clock: Any) -> None:
    tenant = "tenant_h"
    ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="o1", account_id="p")
    ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="o2", account_id="q")
    ledger.deposit("p", "100", tenant_id=tenant, idempotency_key="d")
    running = ledger.freeze("p", "1", "N", tenant_id=tenant, idempotency_key="h1", ttl_seconds=3600)
    gone_fresh = ledger.freeze(
        "p", "2", "N", tenant_id=tenant, idempotency_key="h2", ttl_seconds=3600
    )
    orphan = ledger.freeze("p", "3", "N", tenant_id=tenant, idempotency_key="h3", ttl_seconds=60)
    overdue = ledger.freeze("p", "4", "N", tenant_id=tenant, idempotency_key="h4", ttl_seconds=60)
    confused = ledger.freeze(
        "p",
        "5",
        "N",
        tenant_id=tenant,
        idempotency_key="h5",
        ttl_seconds=3600,
        payee_account_id="q",
    )
    ledger.capture_hold(confused.hold_id, "o", tenant_id=tenant, idempotency_key="c5")
    clock.advance(minutes=10)
    views = {
        running.hold_id: WorkflowView(status="running", hold_state="active"),
        gone_fresh.hold_id: WorkflowView(status="completed"),
        overdue.hold_id: WorkflowView(status="running"),
        confused.hold_id: WorkflowView(status="terminated", hold_state="released"),
    }

    def lookup(hold: HoldRef) -> WorkflowView | None:
        return views.get(hold.hold_id, WorkflowView(status="not_found"))

    report = run_audit(ledger, workflow_lookup=lookup, now=clock() + timedelta(minutes=1))
    found = {(problem.kind, problem.hold_id) for problem in report.problems}
    assert found == {
        ("hold_workflow_gone", gone_fresh.hold_id),
        ("orphaned_expired_hold", orphan.hold_id),
        ("hold_expiry_overdue", overdue.hold_id),
        ("workflow_state_mismatch", confused.hold_id),
        ("hold_not_finalized", confused.hold_id),
    }
    assert [hold.hold_id for hold in report.orphaned_expired_holds] == [orphan.hold_id]
    assert expire_orphaned_holds(ledger, report.orphaned_expired_holds, now=clock()) == [
        orphan.hold_id
    ]
    assert ledger.get_hold(orphan.hold_id, tenant_id=tenant).state == "expired"
    # Idempotent: a second pass expires nothing new and the journal stays intact.
    assert expire_orphaned_holds(ledger, report.orphaned_expired_holds, now=clock()) == []
    assert ledger.verify_journal() == []


def beancount_balances(path: Path) -> dict[str, dict[str, str]]:
    from beancount import loader
    from beancount.core import data, realization

    entries, errors, _ = loader.load_file(str(path))
    assert errors == []
    real = realization.realize([entry for entry in entries if not isinstance(entry, data.Balance)])
    balances: dict[str, dict[str, str]] = {}
    for account in realization.iter_children(real):
        if account.balance.is_empty():
            continue
        balances[account.account] = {
            position.units.currency: str(position.units.number) for position in account.balance
        }
    return balances


def test_bean_check_accepts_generated_ledgers_and_balances_match(
    ledger: Ledger, clock: Any, tmp_path: Path
) -> None:
    for seed in (1, 2):
        generate_ledger(ledger, clock, seed=seed, operations=50)
        path = tmp_path / f"ledger-{seed}.beancount"
        with ledger.engine.connect() as connection, path.open("w") as output:
            write_beancount(connection, output)
        completed = subprocess.run(
            [str(BEAN_CHECK), str(path)], capture_output=True, text=True, check=False
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        with ledger.engine.connect() as connection:
            rows = connection.execute(sa.select(accounts)).all()
        names = account_names([(row.tenant_id, row.account_id, row.kind) for row in rows])
        ours = {
            names[(row.tenant_id, row.account_id)]: {
                row.currency: ledger.registry.to_text(int(row.balance_minor), row.currency)
            }
            for row in rows
            if int(row.balance_minor) != 0
        }
        assert beancount_balances(path) == ours
        # The agent's balance as the ledger reports it (own + hold bucket) is the sum of two
        # Beancount accounts.
        balance = ledger.get_balance("agent-usd-0", tenant_id="tenant_a")
        theirs = beancount_balances(path)
        own = theirs.get(names[("tenant_a", "agent-usd-0")], {}).get("USD", "0")
        bucket = theirs.get(names[("tenant_a", "@hold:agent-usd-0")], {}).get("USD", "0")
        from decimal import Decimal

        assert Decimal(own) + Decimal(bucket) == Decimal(balance.posted)


def test_bean_check_fails_on_a_tampered_export(ledger: Ledger, clock: Any, tmp_path: Path) -> None:
    generate_ledger(ledger, clock, operations=20)
    path = tmp_path / "ledger.beancount"
    with ledger.engine.connect() as connection, path.open("w") as output:
        write_beancount(connection, output)
    text = path.read_text()
    marker = " balance Assets:Tenant-a:Agent-usd-0 "
    start = text.index(marker) + len(marker)
    end = text.index(" USD", start)
    path.write_text(text[:start] + "123456.78" + text[end:])
    completed = subprocess.run(
        [str(BEAN_CHECK), str(path)], capture_output=True, text=True, check=False
    )
    assert completed.returncode != 0
