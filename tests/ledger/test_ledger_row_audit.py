"""The audit matrix of the rows that drive payouts, on both engines.

``holds`` and ``accounts`` are mutable; a plain UPDATE (no trigger bypass, from a connection that
is not the ledger's) of any column that moves money is either refused by the database (CHECK
rules) or reported by ``verify_journal()`` at its position: the tenant, the hold or account, the
problem's kind and the field. Before, redirecting a payee, inflating a capture, re-activating a
released hold or raising an overdraft limit left ``verify_journal()`` at ``[]``.

Each case is applied, checked, and undone (the tables restored to their rows before the case),
and the journal verifies clean again before the next case.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from ledger_db import Ledger
from ledger_db.schema import accounts, holds, journal_head

REFUSED = "refused"


@dataclass(frozen=True)
class Case:
    name: str
    statement: str
    # REFUSED, or the (kind, field) problems verify_journal must report at the target.
    expected: str | set[tuple[str, str | None]]
    target: str  # the hold (by its letter) or account the problems are about
    # The database may refuse it instead (a foreign key SQLite enforces only on connections
    # that ask for it, as the ledger's own do).
    or_refused: bool = False


HOLD_CASES: list[Case] = [
    Case(
        "payee_redirected_active",
        "UPDATE holds SET payee_account_id = 'other' WHERE {A}",
        {("hold_mismatch", "payee_account_id")},
        "A",
    ),
    Case(
        "payee_removed_active",
        "UPDATE holds SET payee_account_id = NULL WHERE {A}",
        {("hold_mismatch", "payee_account_id")},
        "A",
    ),
    Case(
        "payee_redirected_captured",
        "UPDATE holds SET payee_account_id = 'other' WHERE {C}",
        {("hold_mismatch", "payee_account_id")},
        "C",
    ),
    Case(
        "payee_redirected_finalized",
        "UPDATE holds SET payee_account_id = 'other' WHERE {F}",
        {("hold_mismatch", "payee_account_id")},
        "F",
    ),
    Case(
        "capture_inflated",
        "UPDATE holds SET captured_minor = captured_minor + 1, released_minor = released_minor - 1 WHERE {C}",
        {("hold_mismatch", "captured_minor"), ("hold_mismatch", "released_minor")},
        "C",
    ),
    Case("capture_negative", "UPDATE holds SET captured_minor = -1 WHERE {C}", REFUSED, "C"),
    Case(
        "release_negative",
        "UPDATE holds SET released_minor = -5, captured_minor = captured_minor + 5 WHERE {C}",
        REFUSED,
        "C",
    ),
    Case(
        "parts_exceed_amount",
        "UPDATE holds SET released_minor = released_minor + 1 WHERE {C}",
        REFUSED,
        "C",
    ),
    Case(
        "captured_without_amount",
        "UPDATE holds SET captured_minor = 0, released_minor = amount_minor WHERE {C}",
        REFUSED,
        "C",
    ),
    Case("captured_without_order", "UPDATE holds SET order_id = NULL WHERE {C}", REFUSED, "C"),
    Case("active_with_capture", "UPDATE holds SET captured_minor = 1 WHERE {A}", REFUSED, "A"),
    Case("active_resolved_at", "UPDATE holds SET resolved_at = created_at WHERE {A}", REFUSED, "A"),
    Case("active_set_released_bare", "UPDATE holds SET state = 'released' WHERE {A}", REFUSED, "A"),
    Case(
        "active_set_released",
        "UPDATE holds SET state = 'released', released_minor = amount_minor, "
        "resolve_transaction_id = freeze_transaction_id, resolved_at = created_at WHERE {A}",
        {
            ("hold_mismatch", "state"),
            ("hold_mismatch", "released_minor"),
            ("hold_mismatch", "resolve_transaction_id"),
        },
        "A",
    ),
    Case(
        "released_reactivated",
        "UPDATE holds SET state = 'active', released_minor = 0, resolve_transaction_id = NULL, "
        "resolved_at = NULL WHERE {R}",
        {("hold_mismatch", "state"), ("hold_mismatch", "resolve_transaction_id")},
        "R",
    ),
    Case(
        "captured_reactivated",
        "UPDATE holds SET state = 'active', captured_minor = 0, released_minor = 0, "
        "resolve_transaction_id = NULL, resolved_at = NULL WHERE {C}",
        {("hold_mismatch", "state"), ("hold_mismatch", "captured_minor")},
        "C",
    ),
    Case("captured_set_released", "UPDATE holds SET state = 'released' WHERE {C}", REFUSED, "C"),
    Case(
        "released_set_expired",
        "UPDATE holds SET state = 'expired' WHERE {R}",
        {("hold_mismatch", "state")},
        "R",
    ),
    Case(
        "finalized_forged",
        "UPDATE holds SET finalized = true, finalize_transaction_id = 'forged' WHERE {C}",
        {("hold_mismatch", "finalized"), ("hold_mismatch", "finalize_transaction_id")},
        "C",
    ),
    Case(
        "finalized_without_transaction", "UPDATE holds SET finalized = true WHERE {C}", REFUSED, "C"
    ),
    Case(
        "active_finalized",
        "UPDATE holds SET finalized = true, finalize_transaction_id = 'x' WHERE {A}",
        REFUSED,
        "A",
    ),
    Case(
        "payout_undone",
        "UPDATE holds SET finalized = false, fee_minor = 0, finalize_transaction_id = NULL WHERE {F}",
        {("hold_mismatch", "finalized"), ("hold_mismatch", "fee_minor")},
        "F",
    ),
    Case(
        "fee_raised",
        "UPDATE holds SET fee_minor = fee_minor + 1 WHERE {F}",
        {("hold_mismatch", "fee_minor")},
        "F",
    ),
    Case(
        "fee_above_capture",
        "UPDATE holds SET fee_minor = captured_minor + 1 WHERE {F}",
        REFUSED,
        "F",
    ),
    Case("fee_negative", "UPDATE holds SET fee_minor = -1 WHERE {F}", REFUSED, "F"),
    Case("unfinalized_fee", "UPDATE holds SET fee_minor = 1 WHERE {C}", REFUSED, "C"),
    Case(
        "amount_inflated",
        "UPDATE holds SET amount_minor = amount_minor + 100 WHERE {A}",
        {("hold_mismatch", "amount_minor")},
        "A",
    ),
    Case("amount_zero", "UPDATE holds SET amount_minor = 0 WHERE {A}", REFUSED, "A"),
    Case(
        "account_moved",
        "UPDATE holds SET account_id = 'other' WHERE {A}",
        {("hold_mismatch", "account_id")},
        "A",
    ),
    Case(
        "account_missing",
        "UPDATE holds SET account_id = 'nobody' WHERE {A}",
        {("hold_mismatch", "account_id")},
        "A",
        or_refused=True,
    ),
    Case(
        "currency_changed",
        "UPDATE holds SET currency = 'EUR' WHERE {A}",
        {("hold_mismatch", "currency")},
        "A",
    ),
    Case(
        "order_changed",
        "UPDATE holds SET order_id = 'order-forged' WHERE {C}",
        {("hold_mismatch", "order_id")},
        "C",
    ),
    Case(
        "order_on_active",
        "UPDATE holds SET order_id = 'order-forged' WHERE {A}",
        {("hold_mismatch", "order_id")},
        "A",
    ),
    Case(
        "resolve_transaction_changed",
        "UPDATE holds SET resolve_transaction_id = freeze_transaction_id WHERE {F}",
        {("hold_mismatch", "resolve_transaction_id")},
        "F",
    ),
    Case(
        "freeze_transaction_changed",
        "UPDATE holds SET freeze_transaction_id = 'forged' WHERE {A}",
        {("hold_mismatch", "freeze_transaction_id")},
        "A",
    ),
    Case("state_bogus", "UPDATE holds SET state = 'paid' WHERE {A}", REFUSED, "A"),
    Case("hold_deleted", "DELETE FROM holds WHERE {A}", {("hold_missing", None)}, "A"),
    Case(
        "hold_forged",
        "INSERT INTO holds SELECT tenant_id, 'forged-hold', account_id, currency, amount_minor, state, "
        "reason, payee_account_id, order_id, captured_minor, released_minor, fee_minor, finalized, "
        "expires_at, created_at, resolved_at, 'forged-freeze', resolve_transaction_id, "
        "finalize_transaction_id, meta FROM holds WHERE {A}",
        {("hold_not_journaled", "freeze_transaction_id")},
        "forged-hold",
    ),
]

ACCOUNT_CASES: list[Case] = [
    Case(
        "overdraft_raised",
        "UPDATE accounts SET overdraft_limit_minor = 100000000 WHERE {buyer}",
        {("account_mismatch", "overdraft_limit_minor")},
        "buyer",
    ),
    Case(
        "overdraft_negative",
        "UPDATE accounts SET overdraft_limit_minor = -1 WHERE {buyer}",
        REFUSED,
        "buyer",
    ),
    Case(
        "overdraft_on_escrow",
        "UPDATE accounts SET overdraft_limit_minor = 500 WHERE {escrow}",
        REFUSED,
        "@escrow:USD",
    ),
    Case(
        "agent_made_external",
        "UPDATE accounts SET kind = 'external' WHERE {buyer}",
        REFUSED,
        "buyer",
    ),
    Case(
        "escrow_made_revenue",
        "UPDATE accounts SET kind = 'revenue' WHERE {escrow}",
        REFUSED,
        "@escrow:USD",
    ),
    Case(
        "bucket_made_agent",
        "UPDATE accounts SET kind = 'agent' WHERE {bucket}",
        REFUSED,
        "@hold:buyer",
    ),
    Case("kind_bogus", "UPDATE accounts SET kind = 'vault' WHERE {buyer}", REFUSED, "buyer"),
    Case(
        "agent_currency",
        "UPDATE accounts SET currency = 'EUR' WHERE {buyer}",
        {("account_mismatch", "currency")},
        "buyer",
    ),
    Case(
        "escrow_currency",
        "UPDATE accounts SET currency = 'EUR' WHERE {escrow}",
        REFUSED,
        "@escrow:USD",
    ),
    Case(
        "agent_closed",
        "UPDATE accounts SET status = 'closed' WHERE {buyer}",
        {("account_mismatch", "status")},
        "buyer",
    ),
    Case("status_bogus", "UPDATE accounts SET status = 'frozen' WHERE {buyer}", REFUSED, "buyer"),
    Case(
        "bucket_reparented",
        "UPDATE accounts SET parent_account_id = 'seller' WHERE {bucket}",
        REFUSED,
        "@hold:buyer",
    ),
    Case(
        "agent_parented",
        "UPDATE accounts SET parent_account_id = 'buyer' WHERE {seller}",
        REFUSED,
        "seller",
    ),
    Case(
        "agent_renamed",
        "UPDATE accounts SET name = 'Mallory' WHERE {buyer}",
        {("account_mismatch", "name")},
        "buyer",
    ),
    Case(
        "balance_inflated",
        "UPDATE accounts SET balance_minor = balance_minor + 1 WHERE {buyer}",
        {("balance_mismatch", None)},
        "buyer",
    ),
    Case(
        "account_deleted",
        "DELETE FROM accounts WHERE {other}",
        {("account_missing", None)},
        "other",
    ),
    Case(
        "account_forged",
        "INSERT INTO accounts SELECT tenant_id, 'mallory', kind, currency, name, NULL, 1000000000, "
        "status, 0, 0, created_at FROM accounts WHERE {seller}",
        {("account_not_journaled", None)},
        "mallory",
    ),
]


@dataclass
class Scene:
    ledger: Ledger
    tenant_id: str
    holds: dict[str, str]  # letter -> hold ID


@pytest.fixture
def scene(clocked_ledger: Ledger, clock: Any) -> Iterator[Scene]:
    ledger = clocked_ledger
    t = f"tenant-{uuid.uuid4().hex[:12]}"

    def key() -> str:
        return uuid.uuid4().hex

    ledger.open_account(
        tenant_id=t,
        currency="USD",
        idempotency_key=key(),
        account_id="buyer",
        overdraft_limit="5.00",
    )
    for account_id in ("seller", "other"):
        ledger.open_account(
            tenant_id=t, currency="USD", idempotency_key=key(), account_id=account_id
        )
    ledger.deposit("buyer", "100.00", tenant_id=t, idempotency_key=key())

    def freeze(amount: str, ttl: int = 600) -> str:
        return ledger.freeze(
            "buyer",
            amount,
            "N",
            tenant_id=t,
            idempotency_key=key(),
            ttl_seconds=ttl,
            payee_account_id="seller",
        ).hold_id

    letters = {
        "A": freeze("10.00"),
        "C": freeze("4.00"),
        "F": freeze("2.00"),
        "R": freeze("1.00"),
        "E": freeze("1.00", ttl=1),
    }
    ledger.capture_hold(letters["C"], "order-c", tenant_id=t, idempotency_key=key(), amount="3.00")
    ledger.capture_hold(letters["F"], "order-f", tenant_id=t, idempotency_key=key())
    ledger.finalize_hold(letters["F"], tenant_id=t, idempotency_key=key(), fee_bps=100)
    ledger.release_hold(letters["R"], tenant_id=t, idempotency_key=key())
    clock.advance(seconds=2)
    ledger.expire_hold(letters["E"], tenant_id=t, idempotency_key=key())
    assert ledger.verify_journal() == []
    yield Scene(ledger, t, letters)


def _rows(connection: sa.Connection, tenant_id: str) -> dict[str, list[dict[str, Any]]]:
    return {
        table.name: [
            dict(row._mapping)
            for row in connection.execute(sa.select(table).where(table.c.tenant_id == tenant_id))
        ]
        for table in (accounts, holds)
    }


def _restore(
    connection: sa.Connection, tenant_id: str, saved: dict[str, list[dict[str, Any]]]
) -> None:
    """Puts the tenant's holds and accounts back as they were (plain statements: both tables
    are mutable, and the saved rows pass every CHECK rule)."""
    connection.execute(holds.delete().where(holds.c.tenant_id == tenant_id))
    current = {row["account_id"] for row in _rows(connection, tenant_id)["accounts"]}
    for row in saved["accounts"]:
        if row["account_id"] in current:
            connection.execute(
                accounts.update()
                .where(
                    accounts.c.tenant_id == tenant_id, accounts.c.account_id == row["account_id"]
                )
                .values(**row)
            )
        else:
            connection.execute(accounts.insert().values(**row))
    known = [row["account_id"] for row in saved["accounts"]]
    connection.execute(
        accounts.delete().where(
            accounts.c.tenant_id == tenant_id, accounts.c.account_id.not_in(known)
        )
    )
    connection.execute(holds.insert(), saved["holds"])


def _where(scene: Scene) -> dict[str, str]:
    t = f"tenant_id = '{scene.tenant_id}'"
    where = {letter: f"{t} AND hold_id = '{hold_id}'" for letter, hold_id in scene.holds.items()}
    for name, account_id in (
        ("buyer", "buyer"),
        ("seller", "seller"),
        ("other", "other"),
        ("escrow", "@escrow:USD"),
        ("bucket", "@hold:buyer"),
    ):
        where[name] = f"{t} AND account_id = '{account_id}'"
    return where


@pytest.mark.parametrize("cases", ["holds", "accounts"])
def test_every_change_of_a_payout_row_is_refused_or_reported(
    scene: Scene, database_url: str, cases: str
) -> None:
    plain = sa.create_engine(database_url)
    where = _where(scene)
    failures: list[str] = []
    try:
        for case in HOLD_CASES if cases == "holds" else ACCOUNT_CASES:
            target = scene.holds.get(case.target, case.target)
            with plain.connect() as connection:
                saved = _rows(connection, scene.tenant_id)
            statement = case.statement.format(**where)
            try:
                with plain.begin() as connection:
                    connection.exec_driver_sql(statement)
            except sa.exc.DBAPIError as error:
                if case.expected != REFUSED and not case.or_refused:
                    failures.append(f"{case.name}: refused ({str(error.orig)[:80]})")
                with plain.connect() as connection:
                    if _rows(connection, scene.tenant_id) != saved:
                        failures.append(f"{case.name}: refused but changed")
                continue
            if case.expected == REFUSED:
                failures.append(f"{case.name}: accepted by the database")
            else:
                found = {
                    (problem.kind, problem.field)
                    for problem in scene.ledger.verify_journal()
                    if problem.tenant_id == scene.tenant_id
                    and target in (problem.hold_id, problem.account_id)
                }
                assert isinstance(case.expected, set)
                if not case.expected <= found:
                    failures.append(f"{case.name}: reported {sorted(found, key=str)}")
            with plain.begin() as connection:
                _restore(connection, scene.tenant_id, saved)
            leftover = scene.ledger.verify_journal()
            if leftover:
                failures.append(f"{case.name}: not clean after restore: {leftover[:2]}")
    finally:
        plain.dispose()
    assert failures == []


def test_a_missing_journal_head_is_a_problem_not_a_crash(scene: Scene, database_url: str) -> None:
    plain = sa.create_engine(database_url)
    try:
        with plain.begin() as connection:
            connection.execute(journal_head.delete())
    finally:
        plain.dispose()
    problems = scene.ledger.verify_journal()
    assert [problem.kind for problem in problems] == ["head_missing"]
    from ledger_db.finops import run_audit

    report = run_audit(scene.ledger, now=scene.ledger.clock() + timedelta(seconds=1))
    assert [problem.kind for problem in report.problems] == ["head_missing"]
