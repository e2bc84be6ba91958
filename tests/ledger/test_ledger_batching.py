"""The batched writer: many callers' operations in one transaction, a savepoint each.

A rejected operation rolls back alone and its caller gets its typed error, the others commit
together, every caller gets its own answer; a duplicate idempotency key inside one batch
replays; two ``Ledger`` objects (two engines, like two processes) writing one PostgreSQL
database stay consistent.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from ledger_db import Ledger
from ledger_db.errors import IdempotencyKeyReused, InsufficientFunds, LedgerError
from ledger_db.schema import idempotency_keys, journal_transactions

Outcome = tuple[str, Any]


def in_one_batch(ledger: Ledger, tenant: str, calls: list[Callable[[], Any]]) -> list[Outcome]:
    """Runs ``calls`` (writes of ``tenant``) on threads of their own, queued in this order
    behind a unit that holds the tenant's writer, so that they all run in the next batch;
    returns each call's answer or error."""
    writer = ledger._writer_for(tenant)
    release, started = threading.Event(), threading.Event()

    def hold(_conn: sa.Connection) -> None:
        started.set()
        release.wait(30)

    blocker = threading.Thread(target=writer.run, args=("hold", hold))
    blocker.start()
    assert started.wait(30)
    outcomes: list[Outcome] = [("none", None)] * len(calls)

    def call(index: int) -> None:
        try:
            outcomes[index] = ("ok", calls[index]())
        except LedgerError as error:
            outcomes[index] = ("error", error)

    threads = []
    for index in range(len(calls)):
        thread = threading.Thread(target=call, args=(index,))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 30
        while len(writer._queue) < index + 1:  # queued in order
            assert time.monotonic() < deadline
            time.sleep(0.001)
    before = dict(writer.stats.sizes)
    release.set()
    for thread in [blocker, *threads]:
        thread.join(60)
    grew = {size for size, count in writer.stats.sizes.items() if count > before.get(size, 0)}
    assert len(calls) in grew, writer.stats.sizes
    return outcomes


def test_a_rejected_operation_rolls_back_alone(tools: Any) -> None:
    ledger, tenant = tools.ledger, tools.tenant_id
    accounts = [tools.agent(balance="10.00") for _ in range(6)]
    poor = tools.agent(balance="1.00")
    keys = [tools.key("freeze") for _ in range(7)]
    calls: list[Callable[[], Any]] = [
        (
            lambda account=account, key=key: ledger.freeze(
                account, "2.00", "job", tenant_id=tenant, idempotency_key=key, ttl_seconds=600
            )
        )
        for account, key in zip(accounts, keys, strict=False)
    ]
    calls.insert(
        3,
        lambda: ledger.freeze(
            poor, "5.00", "job", tenant_id=tenant, idempotency_key=keys[6], ttl_seconds=600
        ),
    )
    outcomes = in_one_batch(ledger, tenant, calls)
    assert outcomes[3][0] == "error" and isinstance(outcomes[3][1], InsufficientFunds)
    answered = [outcome for index, outcome in enumerate(outcomes) if index != 3]
    assert [kind for kind, _ in answered] == ["ok"] * 6
    # Each caller got its own hold, on its own account.
    assert [hold.account_id for _, hold in answered] == accounts
    assert len({hold.hold_id for _, hold in answered}) == 6
    for account in accounts:
        assert tools.minor(account) == (1000, 200, 800)
    assert tools.minor(poor) == (100, 0, 100)
    # Nothing of the rejected request was written: no claim, no transaction.
    with ledger.engine.connect() as connection:
        claimed = connection.execute(
            sa.select(sa.func.count()).where(
                idempotency_keys.c.tenant_id == tenant,
                idempotency_keys.c.idempotency_key == keys[6],
            )
        ).scalar_one()
        assert claimed == 0
        # The tenant's chain stays gapless: the rejected freeze took no position in it.
        chain = list(
            connection.execute(
                sa.select(journal_transactions.c.chain_sequence)
                .where(journal_transactions.c.tenant_id == tenant)
                .order_by(journal_transactions.c.sequence)
            ).scalars()
        )
        assert chain == list(range(1, len(chain) + 1))
    assert ledger.verify_journal() == []


def test_a_duplicate_key_inside_one_batch_replays(tools: Any) -> None:
    ledger, tenant = tools.ledger, tools.tenant_id
    account = tools.agent()
    key, other = tools.key("deposit"), tools.key("deposit")

    def deposit(amount: str, idempotency_key: str) -> Callable[[], Any]:
        return lambda: ledger.deposit(
            account, amount, tenant_id=tenant, idempotency_key=idempotency_key
        )

    outcomes = in_one_batch(
        ledger,
        tenant,
        [
            deposit("3.00", key),
            deposit("3.00", key),
            lambda: ledger.deposit(account, "4.00", tenant_id=tenant, idempotency_key=key),
            lambda: ledger.deposit(account, "5.00", tenant_id=tenant, idempotency_key=other),
        ],
    )
    (first_kind, first), (second_kind, second) = outcomes[0], outcomes[1]
    assert (first_kind, second_kind) == ("ok", "ok")
    assert not first.replayed and second.replayed
    assert second.transaction_id == first.transaction_id
    assert second.journal_sequence == first.journal_sequence
    assert outcomes[2][0] == "error" and isinstance(outcomes[2][1], IdempotencyKeyReused)
    assert outcomes[3][0] == "ok" and not outcomes[3][1].replayed
    assert tools.minor(account) == (800, 0, 800)
    assert ledger.verify_journal() == []


def test_many_threads_each_get_their_own_answer(tools: Any) -> None:
    """Concurrent callers, no orchestration: every deposit is answered with its own result,
    and the journal holds each exactly once."""
    ledger, tenant = tools.ledger, tools.tenant_id
    accounts = [tools.agent() for _ in range(8)]
    poor = tools.agent(balance="0.01")
    keys = [f"dep-{index}-{uuid.uuid4().hex}" for index in range(80)]

    def work(index: int) -> Outcome:
        try:
            if index == 40:
                return "ok", ledger.freeze(
                    poor, "9.00", "x", tenant_id=tenant, idempotency_key=keys[index], ttl_seconds=60
                )
            account = accounts[index % 8]
            return "ok", ledger.deposit(
                account, f"{index + 1}.00", tenant_id=tenant, idempotency_key=keys[index]
            )
        except LedgerError as error:
            return "error", error

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(work, range(80)))
    assert outcomes[40][0] == "error" and outcomes[40][1].code == "insufficient_funds"
    for index, (kind, result) in enumerate(outcomes):
        if index == 40:
            continue
        assert kind == "ok"
        credit = next(e for e in result.entries if e.direction.value == "IN")
        assert credit.account_id == accounts[index % 8]
        assert credit.amount_minor == (index + 1) * 100
    for position, account in enumerate(accounts):
        expected = sum((i + 1) * 100 for i in range(80) if i % 8 == position and i != 40)
        assert tools.minor(account)[0] == expected
    assert ledger.verify_journal() == []


@pytest.mark.postgres
def test_two_ledgers_on_one_postgresql_database_stay_consistent(postgres_url: str) -> None:
    """Two engines (like two processes), each batching, on the same tenants and accounts:
    every operation is answered once, deadlocks between their batches are retried, and the
    books verify."""
    first, second = Ledger.from_url(postgres_url), Ledger.from_url(postgres_url, migrate=False)
    try:
        tenants = [f"tenant-{uuid.uuid4().hex[:8]}" for _ in range(2)]
        accounts: dict[str, list[str]] = {}
        for tenant in tenants:
            accounts[tenant] = []
            for index in range(3):
                account = first.open_account(
                    tenant_id=tenant, currency="USD", idempotency_key=f"open-{index}"
                ).account_id
                first.deposit(account, "1000.00", tenant_id=tenant, idempotency_key=f"f-{index}")
                accounts[tenant].append(account)

        def work(index: int) -> str:
            ledger = (first, second)[index % 2]
            tenant = tenants[(index // 2) % 2]
            payer = accounts[tenant][index % 3]
            hold = ledger.freeze(
                payer,
                "1.00",
                "job",
                tenant_id=tenant,
                idempotency_key=f"z-{index}",
                ttl_seconds=600,
                payee_account_id=accounts[tenant][(index + 1) % 3],
            )
            ledger.capture_hold(
                hold.hold_id, f"order-{index}", tenant_id=tenant, idempotency_key=f"c-{index}"
            )
            return hold.hold_id

        with ThreadPoolExecutor(max_workers=12) as pool:
            held = list(pool.map(work, range(96)))
        assert len(set(held)) == 96
        # Every freeze and capture happened once: 96 * (freeze + capture) journal transactions.
        with first.engine.connect() as connection:
            kinds = dict(
                connection.execute(
                    sa.select(journal_transactions.c.kind, sa.func.count()).group_by(
                        journal_transactions.c.kind
                    )
                ).all()
            )
        assert kinds["freeze"] == 96 and kinds["capture"] == 96
        assert first.verify_journal() == []
        assert second.verify_journal() == []
    finally:
        first.close()
        second.close()
