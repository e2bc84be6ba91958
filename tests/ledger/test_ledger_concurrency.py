"""Many writers at once on PostgreSQL: no overdraft, a hold captured once, a key applied once.

Every thread shares one ``Ledger`` (its engine has a connection pool) and starts at a barrier,
so the calls really race. A database error must never surface: conflicts are the ledger's to
retry, and business outcomes are typed ``LedgerError``s.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from ledger_db import Ledger, errors
from ledger_db.models import HoldState

pytestmark = pytest.mark.postgres

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def pg_ledger(postgres_url: str) -> Iterator[Ledger]:
    """The tests pass ``now=NOW``; the ledger's clock stands at NOW too (a caller's ``now`` must
    lie near the ledger's clock, and this module may run long after it was imported)."""
    ledger = Ledger.from_url(postgres_url, clock=lambda: NOW)
    try:
        yield ledger
    finally:
        ledger.close()


def _race(count: int, call: Callable[[int], Any]) -> list[Any]:
    """Runs ``call(i)`` for i in range(count) on ``count`` threads released together; returns
    each result or the exception it raised."""
    barrier = threading.Barrier(count, timeout=60)

    def run(index: int) -> Any:
        barrier.wait()
        try:
            return call(index)
        except Exception as error:  # the test inspects every outcome
            return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def _codes(outcomes: list[Any]) -> Counter[str]:
    counter: Counter[str] = Counter()
    for outcome in outcomes:
        if isinstance(outcome, errors.LedgerError):
            counter[outcome.code] += 1
        elif isinstance(outcome, Exception):
            counter[f"UNEXPECTED {type(outcome).__name__}: {outcome}"] += 1
        else:
            counter["ok"] += 1
    return counter


def _setup(ledger: Ledger, balance: str) -> tuple[str, str, str]:
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    account = ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="open-a")
    payee = ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="open-p")
    ledger.deposit(account.account_id, balance, tenant_id=tenant, idempotency_key="top-up")
    return tenant, account.account_id, payee.account_id


@pytest.mark.parametrize(("balance", "amount"), [("100.00", "7.00"), ("10.00", "0.25")])
def test_concurrent_freezes_never_overdraw(pg_ledger: Ledger, balance: str, amount: str) -> None:
    tenant, account, _ = _setup(pg_ledger, balance)
    balance_minor = int(balance.replace(".", ""))
    amount_minor = int(amount.replace(".", ""))
    expected = min(32, balance_minor // amount_minor)

    outcomes = _race(
        32,
        lambda i: pg_ledger.freeze(
            account,
            amount,
            "NEGOTIATION",
            tenant_id=tenant,
            idempotency_key=f"freeze-{i}",
            ttl_seconds=600,
            now=NOW,
        ),
    )
    codes = _codes(outcomes)
    assert codes == Counter({"ok": expected, "insufficient_funds": 32 - expected}) - Counter()
    held = expected * amount_minor
    snapshot = pg_ledger.get_balance(account, tenant_id=tenant)
    assert (snapshot.posted_minor, snapshot.held_minor, snapshot.available_minor) == (
        balance_minor,
        held,
        balance_minor - held,
    )
    assert len(pg_ledger.list_events(tenant_id=tenant, limit=100)) == expected
    assert pg_ledger.verify_journal() == []


def test_concurrent_freezes_on_many_accounts_do_not_deadlock(pg_ledger: Ledger) -> None:
    """Writers on different accounts (and on the shared platform accounts) all succeed."""
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    accounts = []
    for index in range(4):
        account = pg_ledger.open_account(
            tenant_id=tenant, currency="USD", idempotency_key=f"open-{index}"
        )
        pg_ledger.deposit(
            account.account_id, "10.00", tenant_id=tenant, idempotency_key=f"d-{index}"
        )
        accounts.append(account.account_id)
    payee = pg_ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="open-p")

    def flow(index: int) -> Any:
        account = accounts[index % 4]
        hold = pg_ledger.freeze(
            account,
            "1.00",
            "NEGOTIATION",
            tenant_id=tenant,
            idempotency_key=f"f-{index}",
            ttl_seconds=600,
            payee_account_id=payee.account_id,
            now=NOW,
        )
        pg_ledger.capture_hold(
            hold.hold_id, f"o-{index}", tenant_id=tenant, idempotency_key=f"c-{index}", now=NOW
        )
        return pg_ledger.finalize_hold(
            hold.hold_id, tenant_id=tenant, idempotency_key=f"z-{index}", fee_bps=100, now=NOW
        )

    outcomes = _race(16, flow)
    assert _codes(outcomes) == Counter({"ok": 16})
    assert pg_ledger.get_balance(payee.account_id, tenant_id=tenant).posted_minor == 16 * 99
    assert pg_ledger.get_balance("@revenue:USD", tenant_id=tenant).posted_minor == 16 * 1
    assert pg_ledger.verify_journal() == []


def test_concurrent_captures_capture_once(pg_ledger: Ledger) -> None:
    tenant, account, payee = _setup(pg_ledger, "10.00")
    hold = pg_ledger.freeze(
        account,
        "5.00",
        "NEGOTIATION",
        tenant_id=tenant,
        idempotency_key="hold",
        ttl_seconds=600,
        payee_account_id=payee,
        now=NOW,
    )
    # Sixteen distinct keys plus eight retries of each of two keys: one request wins; retries
    # of the winning key replay it; everything else sees a captured hold.
    keys = [f"capture-{i}" for i in range(16)] + ["capture-0"] * 8 + ["capture-1"] * 8
    outcomes = _race(
        len(keys),
        lambda i: pg_ledger.capture_hold(
            hold.hold_id, "order-1", tenant_id=tenant, idempotency_key=keys[i], now=NOW
        ),
    )
    codes = _codes(outcomes)
    assert set(codes) <= {"ok", "hold_already_captured"}, codes
    winners = [o for o in outcomes if not isinstance(o, Exception) and not o.replayed]
    assert len(winners) == 1
    winning_key = keys[outcomes.index(winners[0])]
    for key, outcome in zip(keys, outcomes, strict=True):
        if isinstance(outcome, Exception):
            assert key != winning_key
        else:
            assert key == winning_key
            assert outcome.resolve_transaction_id == winners[0].resolve_transaction_id
    final = pg_ledger.get_hold(hold.hold_id, tenant_id=tenant)
    assert final.state == HoldState.CAPTURED and final.captured_minor == 500
    assert pg_ledger.get_balance("@escrow:USD", tenant_id=tenant).posted_minor == 500
    assert pg_ledger.get_balance(account, tenant_id=tenant).posted_minor == 500
    assert [e.type for e in pg_ledger.list_events(tenant_id=tenant)] == [
        "INTENT_CREATED",
        "ORDER_CREATED",
    ]
    assert pg_ledger.verify_journal() == []


def test_concurrent_capture_and_release_resolve_once(pg_ledger: Ledger) -> None:
    tenant, account, payee = _setup(pg_ledger, "10.00")
    hold = pg_ledger.freeze(
        account,
        "5.00",
        "NEGOTIATION",
        tenant_id=tenant,
        idempotency_key="hold",
        ttl_seconds=600,
        payee_account_id=payee,
        now=NOW,
    )

    def call(i: int) -> Any:
        if i % 2:
            return pg_ledger.release_hold(
                hold.hold_id, tenant_id=tenant, idempotency_key=f"r-{i}", now=NOW
            )
        return pg_ledger.capture_hold(
            hold.hold_id, "o", tenant_id=tenant, idempotency_key=f"c-{i}", now=NOW
        )

    outcomes = _race(16, call)
    codes = _codes(outcomes)
    assert codes["ok"] == 1
    assert set(codes) <= {"ok", "hold_already_captured", "hold_already_released"}, codes
    final = pg_ledger.get_hold(hold.hold_id, tenant_id=tenant)
    assert final.captured_minor + final.released_minor == final.amount_minor
    assert pg_ledger.get_balance(account, tenant_id=tenant).held_minor == 0
    assert pg_ledger.verify_journal() == []


@pytest.mark.parametrize("operation", ["freeze", "deposit"])
def test_one_idempotency_key_under_100_concurrent_calls_applies_once(
    pg_ledger: Ledger, operation: str
) -> None:
    tenant, account, _ = _setup(pg_ledger, "10.00")

    def call(_: int) -> Any:
        if operation == "freeze":
            return pg_ledger.freeze(
                account,
                "3.00",
                "NEGOTIATION",
                tenant_id=tenant,
                idempotency_key="the-key",
                ttl_seconds=600,
                now=NOW,
            )
        return pg_ledger.deposit(account, "3.00", tenant_id=tenant, idempotency_key="the-key")

    outcomes = _race(100, call)
    assert _codes(outcomes) == Counter({"ok": 100})
    assert sum(1 for o in outcomes if not o.replayed) == 1
    reference = outcomes[0].model_dump(exclude={"replayed"})
    assert all(o.model_dump(exclude={"replayed"}) == reference for o in outcomes)
    snapshot = pg_ledger.get_balance(account, tenant_id=tenant)
    if operation == "freeze":
        assert (snapshot.posted_minor, snapshot.held_minor) == (1000, 300)
        assert [e.type for e in pg_ledger.list_events(tenant_id=tenant)] == ["INTENT_CREATED"]
    else:
        assert (snapshot.posted_minor, snapshot.held_minor) == (1300, 0)
    assert pg_ledger.verify_journal() == []


def test_concurrent_reversals_reverse_once(pg_ledger: Ledger) -> None:
    tenant, account, _ = _setup(pg_ledger, "10.00")
    deposit = pg_ledger.deposit(account, "4.00", tenant_id=tenant, idempotency_key="to-reverse")
    outcomes = _race(
        12,
        lambda i: pg_ledger.reverse_transaction(
            deposit.transaction_id, tenant_id=tenant, idempotency_key=f"rev-{i}"
        ),
    )
    codes = _codes(outcomes)
    assert codes == Counter({"ok": 1, "transaction_already_reversed": 11}), codes
    assert pg_ledger.get_balance(account, tenant_id=tenant).posted_minor == 1000
    assert pg_ledger.verify_journal() == []


def test_concurrent_reversals_answer_already_reversed(pg_ledger: Ledger) -> None:
    """16 reversals of one deposit under 16 keys: one applies; the others wait on the account
    locks, then find the reversal under the lock and answer ``transaction_already_reversed``
    (they answered ``insufficient_funds`` when the deposit's money was gone)."""
    tenant, account, _ = _setup(pg_ledger, "10.00")
    deposit = pg_ledger.list_transactions(tenant_id=tenant, limit=100)[-1]
    assert deposit.kind == "deposit"
    outcomes = _race(
        16,
        lambda i: pg_ledger.reverse_transaction(
            deposit.transaction_id, tenant_id=tenant, idempotency_key=f"reverse-{i}", now=NOW
        ),
    )
    assert _codes(outcomes) == Counter({"ok": 1, "transaction_already_reversed": 15})
    assert pg_ledger.get_balance(account, tenant_id=tenant).posted_minor == 0
    assert pg_ledger.verify_journal() == []


def test_a_collision_on_a_chosen_id_is_a_typed_error_not_a_retry(pg_ledger: Ledger) -> None:
    """Writers choosing the same hold ID, or the same account ID, under different keys: one
    wins, the others get the typed error at once (a unique violation other than the
    idempotency-key claim is not transient), never a raw IntegrityError."""
    tenant, account, _ = _setup(pg_ledger, "100.00")
    holds = _race(
        8,
        lambda i: pg_ledger.freeze(
            account,
            "1.00",
            "N",
            tenant_id=tenant,
            idempotency_key=f"same-hold-{i}",
            ttl_seconds=600,
            hold_id="chosen-hold",
            now=NOW,
        ),
    )
    assert _codes(holds) == Counter({"ok": 1, "invalid_entry": 7})
    assert {o.details.get("field") for o in holds if isinstance(o, errors.LedgerError)} == {
        "hold_id"
    }
    opened = _race(
        8,
        lambda i: pg_ledger.open_account(
            tenant_id=tenant, currency="USD", idempotency_key=f"same-account-{i}", account_id="x"
        ),
    )
    assert _codes(opened) == Counter({"ok": 1, "account_already_exists": 7})
    assert pg_ledger.verify_journal() == []
