"""Hash chains per tenant: gapless per tenant, two tenants never wait on each other, a tampered
row is reported at its (tenant, position), and a journal written with the single global chain
(before migration 0004) stays verifiable after the upgrade and keeps growing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from ledger_data import FIXTURES, load_journal_fixture

from ledger_db import Ledger
from ledger_db.journal import GENESIS_HASH, chain_hash_at, chain_heads, last_position
from ledger_db.schema import journal_transactions

FIXTURE = FIXTURES / "journal_v2_single_chain.json"


def _chains(ledger: Ledger) -> dict[str, list[tuple[int, int, str, str]]]:
    """Each tenant's v3 rows in global order: (sequence, chain_sequence, prev_hash, hash)."""
    found: dict[str, list[tuple[int, int, str, str]]] = {}
    with ledger.engine.connect() as connection:
        for row in connection.execute(
            sa.select(journal_transactions)
            .where(journal_transactions.c.chain_sequence.is_not(None))
            .order_by(journal_transactions.c.sequence)
        ):
            found.setdefault(row.tenant_id, []).append(
                (int(row.sequence), int(row.chain_sequence), row.prev_hash, row.hash)
            )
    return found


def test_each_tenant_has_a_gapless_linked_chain(ledger: Ledger) -> None:
    tenants = [f"tenant-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    agents = {
        tenant: ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="open")
        for tenant in tenants
    }
    for index in range(5):  # interleaved: the global sequence mixes the tenants
        for tenant in tenants:
            ledger.deposit(
                agents[tenant].account_id, "1.00", tenant_id=tenant, idempotency_key=f"d-{index}"
            )
    chains = _chains(ledger)
    with ledger.engine.connect() as connection:
        heads = chain_heads(connection)
        assert [head.tenant_id for head in heads] == sorted(tenants)
        for head in heads:
            chain = chains[head.tenant_id]
            assert [position for _, position, _, _ in chain] == list(range(1, len(chain) + 1))
            assert chain[0][2] == GENESIS_HASH
            assert all(chain[i][2] == chain[i - 1][3] for i in range(1, len(chain)))
            assert (head.sequence, head.hash) == (len(chain), chain[-1][3])
            assert chain_hash_at(connection, head.tenant_id, 2) == chain[1][3]
            assert chain_hash_at(connection, head.tenant_id, len(chain) + 1) is None
        assert last_position(connection)[0] == max(s for c in chains.values() for s, *_ in c)
    assert ledger.verify_journal() == []


def _disable_triggers(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
    else:
        for table in ("journal_transactions", "journal_entries"):
            for operation in ("update", "delete"):
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")


def test_a_tampered_row_is_reported_at_its_tenant_and_position(ledger: Ledger) -> None:
    tenants = sorted(f"tenant-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for tenant in tenants:
        agent = ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="o")
        for index in range(4):
            ledger.deposit(agent.account_id, "2.00", tenant_id=tenant, idempotency_key=f"d{index}")
    target_tenant = tenants[1]
    sequence, position, _, _ = _chains(ledger)[target_tenant][3]
    with ledger.engine.connect() as connection, connection.begin():
        _disable_triggers(connection)
        connection.execute(
            sa.text(
                "UPDATE journal_entries SET amount_minor = amount_minor + 1 "
                "WHERE journal_sequence = :sequence"
            ),
            {"sequence": sequence},
        )
    problems = ledger.verify_journal()
    journal_problems = {
        (problem.kind, problem.tenant_id, problem.journal_sequence)
        for problem in problems
        if problem.journal_sequence is not None
    }
    assert ("hash_mismatch", target_tenant, sequence) in journal_problems
    assert ("chain_broken", target_tenant, sequence) in journal_problems
    assert {tenant for _, tenant, _ in journal_problems} == {target_tenant}
    assert {s for _, _, s in journal_problems} == {sequence}
    assert position == 4
    # The other tenant's chain is intact: nothing names it.
    assert all(problem.tenant_id != tenants[0] for problem in problems)


def test_a_deleted_row_is_a_gap_in_its_tenant_chain(ledger: Ledger) -> None:
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    other = f"tenant-{uuid.uuid4().hex[:8]}"
    for name in (tenant, other):
        agent = ledger.open_account(tenant_id=name, currency="USD", idempotency_key="o")
        for index in range(3):
            ledger.deposit(agent.account_id, "2.00", tenant_id=name, idempotency_key=f"d{index}")
    chain = _chains(ledger)[tenant]
    removed, after = chain[1][0], chain[2][0]
    with ledger.engine.connect() as connection, connection.begin():
        _disable_triggers(connection)
        connection.execute(
            sa.text("DELETE FROM journal_entries WHERE journal_sequence = :s"), {"s": removed}
        )
        connection.execute(
            sa.text("DELETE FROM journal_transactions WHERE sequence = :s"), {"s": removed}
        )
    found = {
        (problem.kind, problem.tenant_id, problem.journal_sequence)
        for problem in ledger.verify_journal()
    }
    assert ("sequence_gap", tenant, after) in found
    assert ("chain_broken", tenant, after) in found
    assert not any(t == other for _, t, _ in found)


@pytest.mark.postgres
def test_a_held_chain_of_one_tenant_does_not_block_another(pg_ledger: Ledger) -> None:
    """Another connection (another process) holds tenant A's chain row locked: a write of
    tenant B goes through at once, a write of tenant A waits until the lock is released."""
    a = f"tenant-{uuid.uuid4().hex[:8]}"
    # B on another writer lane of this Ledger (a lane runs one batch at a time).
    b = next(
        tenant
        for tenant in (f"tenant-{uuid.uuid4().hex[:8]}" for _ in range(100))
        if pg_ledger._writer_for(tenant) is not pg_ledger._writer_for(a)
    )
    agents = {
        tenant: pg_ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="o")
        for tenant in (a, b)
    }
    done = threading.Event()
    errors: list[BaseException] = []

    def deposit_a() -> None:
        try:
            pg_ledger.deposit(agents[a].account_id, "1.00", tenant_id=a, idempotency_key="held")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            done.set()

    holder = sa.create_engine(pg_ledger.engine.url)
    try:
        with holder.connect() as connection, connection.begin():
            connection.execute(
                sa.text("SELECT * FROM journal_chains WHERE tenant_id = :t FOR UPDATE"), {"t": a}
            )
            blocked = threading.Thread(target=deposit_a)
            blocked.start()
            assert not done.wait(1.0), "tenant A's write did not wait for its chain"
            started = time.monotonic()
            pg_ledger.deposit(agents[b].account_id, "1.00", tenant_id=b, idempotency_key="free")
            assert time.monotonic() - started < 5
            assert not done.is_set()
        blocked.join(30)
        assert done.is_set() and errors == []
    finally:
        holder.dispose()
    assert pg_ledger.get_balance(agents[a].account_id, tenant_id=a).posted_minor == 100
    assert pg_ledger.verify_journal() == []


# --- migration from the single global chain ---------------------------------------------------


def load_single_chain_journal(url: str) -> dict[str, list[dict[str, Any]]]:
    """A database at revision 0003 holding the rows the 0003 code wrote (one global chain of
    version-2 hashes, two tenants interleaved), exactly as written."""
    return load_journal_fixture(url, FIXTURE, "0003")


@pytest.fixture
def upgraded(database_url: str) -> Iterator[tuple[Ledger, dict[str, list[dict[str, Any]]]]]:
    rows = load_single_chain_journal(database_url)
    ledger = Ledger.from_url(database_url)
    try:
        yield ledger, rows
    finally:
        ledger.close()


def test_a_single_chain_journal_verifies_after_the_upgrade_and_grows(
    upgraded: tuple[Ledger, dict[str, list[dict[str, Any]]]],
) -> None:
    ledger, rows = upgraded
    assert ledger.verify_journal() == []
    legacy_head = rows["journal_head"][0]["last_hash"]
    with ledger.engine.connect() as connection:
        versions = dict(
            connection.execute(
                sa.text(
                    "SELECT hash_version, count(*) FROM journal_transactions GROUP BY hash_version"
                )
            ).all()
        )
        assert versions == {2: len(rows["journal_transactions"])}
        assert chain_heads(connection) == []
    # Both tenants write on: each starts its own chain from the old global head.
    for tenant in ("tenant_a", "tenant_b"):
        ledger.deposit("buyer", "1.00", tenant_id=tenant, idempotency_key="after-1")
        ledger.freeze(
            "buyer", "2.00", "job", tenant_id=tenant, idempotency_key="after-2", ttl_seconds=600
        )
    hold = next(h for h in ledger.list_holds(tenant_id="tenant_b") if h.state == "captured")
    ledger.finalize_hold(hold.hold_id, tenant_id="tenant_b", idempotency_key="after-3")
    # A replay of a request the old code answered is still a replay.
    again = ledger.deposit("buyer", "100.00", tenant_id="tenant_a", idempotency_key="deposit-1")
    assert again.replayed
    chains = _chains(ledger)
    assert set(chains) == {"tenant_a", "tenant_b"}
    for chain in chains.values():
        assert chain[0][2] == legacy_head
        assert [position for _, position, _, _ in chain] == list(range(1, len(chain) + 1))
    old_max = max(int(row["sequence"]) for row in rows["journal_transactions"])
    assert min(s for chain in chains.values() for s, *_ in chain) == old_max + 1
    assert ledger.verify_journal() == []


def test_tampering_with_an_old_row_after_the_upgrade_is_found(
    upgraded: tuple[Ledger, dict[str, list[dict[str, Any]]]],
) -> None:
    ledger, rows = upgraded
    ledger.deposit("buyer", "1.00", tenant_id="tenant_a", idempotency_key="after-1")
    target = rows["journal_transactions"][4]["sequence"]
    with ledger.engine.connect() as connection, connection.begin():
        _disable_triggers(connection)
        connection.execute(
            sa.text(
                "UPDATE journal_entries SET amount_minor = amount_minor + 1 "
                "WHERE journal_sequence = :s AND entry_index = 0"
            ),
            {"s": target},
        )
    kinds = {(p.kind, p.journal_sequence) for p in ledger.verify_journal()}
    assert ("hash_mismatch", target) in kinds
