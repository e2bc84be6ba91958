"""Checkpoints catch what the hash chain alone cannot: a consistent rewrite, on both engines.

Someone with the owner's access disables the append-only triggers, changes an amount of one
tenant's deposit, recomputes every hash after it and moves the head and the balances, so that
``verify_journal()`` finds nothing. Checked against the checkpoint published before the rewrite,
the books fail at exactly that tenant's chain, at the checkpointed sequence; the other tenants'
chains agree. A checkpoint file altered by hand is reported too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from ledger_db import Ledger, journal
from ledger_db.checkpoint import (
    CHECKPOINT_EVENT_TYPE,
    CHECKPOINT_TENANT_ID,
    EMPTY_TREE_ROOT,
    Checkpoint,
    chain_leaf_data,
    checkpoint_problems,
    merkle_root,
    parse_checkpoint,
    take_checkpoint,
    verify_against_checkpoint,
)
from ledger_db.journal import transaction_hash
from ledger_db.migrations.append_only import (
    create_append_only_triggers,
    drop_append_only_triggers,
)
from ledger_db.models import Problem
from ledger_db.schema import (
    accounts,
    journal_chains,
    journal_entries,
    journal_transactions,
    ledger_checkpoints,
)


def _verify(ledger: Ledger, checkpoint: Checkpoint) -> list[Problem]:
    with ledger.engine.connect() as connection:
        return verify_against_checkpoint(connection, checkpoint)


def _published(ledger: Ledger, checkpoint_id: str) -> Checkpoint:
    """The checkpoint as the bus carries it: the LEDGER_CHECKPOINT event's JSON, re-read."""
    events = [
        event
        for event in ledger.list_unsent_events_all_tenants(after_sequence=0, limit=500)
        if event.type == CHECKPOINT_EVENT_TYPE and event.payload["checkpoint_id"] == checkpoint_id
    ]
    assert len(events) == 1
    return parse_checkpoint(json.dumps(events[0].model_dump(mode="json")))


@dataclass
class Books:
    ledger: Ledger
    tenants: list[str]  # the tampered tenant last: it wrote last
    deposits: dict[str, Any]  # each tenant's first deposit result

    @property
    def victim(self) -> str:
        return self.tenants[-1]


def _fill(ledger: Ledger, tenant: str) -> Any:
    key = lambda: uuid.uuid4().hex  # noqa: E731
    ledger.open_account(tenant_id=tenant, account_id="buyer", currency="USD", idempotency_key=key())
    ledger.open_account(
        tenant_id=tenant, account_id="seller", currency="USD", idempotency_key=key()
    )
    deposit = ledger.deposit("buyer", "100.00", tenant_id=tenant, idempotency_key=key())
    hold = ledger.freeze(
        "buyer", "30.00", "NEGOTIATION", tenant_id=tenant, idempotency_key=key(), ttl_seconds=600
    )
    ledger.capture_hold(
        hold.hold_id,
        "order-1",
        tenant_id=tenant,
        idempotency_key=key(),
        amount="20.00",
        payee_account_id="seller",
    )
    return deposit


@pytest.fixture
def books(ledger: Ledger) -> Books:
    # On the single global chain a rewrite also changes every later transaction of any tenant:
    # the other tenants write first, so their heads lie before the rewrite whatever the chain
    # layout, and the test asserts the same with a chain per tenant.
    tenants = [f"tenant-{name}-{uuid.uuid4().hex[:6]}" for name in ("b", "c", "a")]
    deposits = {tenant: _fill(ledger, tenant) for tenant in tenants}
    assert ledger.verify_journal() == []
    return Books(ledger, tenants, deposits)


# --------------------------------------------------------------------------------------------
# The attacker: the schema's owner, rewriting one tenant's deposit consistently.


@dataclass
class OwnerAccess:
    """Plain SQL as the database's owner, with the journal's append-only triggers off."""

    url: str

    def __post_init__(self) -> None:
        self.engine = sa.create_engine(self.url)

    def close(self) -> None:
        self.engine.dispose()

    def rewrite_deposit(self, tenant: str, sequence: int, new_amount_minor: int) -> None:
        """Sets both entries of the deposit at ``sequence`` to ``new_amount_minor``, then does
        everything ``verify_journal`` checks: rehashes that transaction and every later one
        (re-linking ``prev_hash``), moves the head and the two balance snapshots.

        The walk follows the tenant's chain (``chain_sequence`` order) and the head is that
        chain's ``journal_chains`` row.
        """
        with self.engine.begin() as connection:
            self._triggers(connection, enabled=False)
            entries = connection.execute(
                sa.select(journal_entries).where(journal_entries.c.journal_sequence == sequence)
            ).all()
            assert len(entries) == 2
            delta = new_amount_minor - int(entries[0].amount_minor)
            connection.execute(
                journal_entries.update()
                .where(journal_entries.c.journal_sequence == sequence)
                .values(amount_minor=new_amount_minor)
            )
            for entry in entries:
                signed = delta if entry.direction == "IN" else -delta
                connection.execute(
                    accounts.update()
                    .where(
                        accounts.c.tenant_id == tenant,
                        accounts.c.account_id == entry.account_id,
                    )
                    .values(balance_minor=accounts.c.balance_minor + signed)
                )
            rows = connection.execute(
                sa.select(journal_transactions)
                .where(
                    journal_transactions.c.tenant_id == tenant,
                    journal_transactions.c.sequence >= sequence,
                )
                .order_by(journal_transactions.c.sequence)
            ).all()
            previous = journal.chain_hash_at(connection, tenant, rows[0].chain_sequence - 1)
            for row in rows:
                transaction = {**row._mapping, "prev_hash": previous}
                stored_entries = [
                    dict(entry._mapping)
                    for entry in connection.execute(
                        sa.select(journal_entries).where(
                            journal_entries.c.journal_sequence == row.sequence
                        )
                    )
                ]
                previous = transaction_hash(transaction, stored_entries)
                connection.execute(
                    journal_transactions.update()
                    .where(journal_transactions.c.sequence == row.sequence)
                    .values(prev_hash=transaction["prev_hash"], hash=previous)
                )
            connection.execute(
                journal_chains.update()
                .where(journal_chains.c.tenant_id == tenant)
                .values(last_sequence=rows[-1].chain_sequence, last_hash=previous)
            )
            self._triggers(connection, enabled=True)

    def run(self, statement: str) -> None:
        with self.engine.begin() as connection:
            connection.exec_driver_sql(statement)

    def _triggers(self, connection: sa.Connection, *, enabled: bool) -> None:
        if connection.dialect.name == "postgresql":
            verb = "ENABLE" if enabled else "DISABLE"
            for table in ("journal_transactions", "journal_entries"):
                connection.exec_driver_sql(f"ALTER TABLE {table} {verb} TRIGGER USER")
        elif enabled:
            create_append_only_triggers(connection)
        else:
            drop_append_only_triggers(connection)


@pytest.fixture
def owner(database_url: str) -> Iterator[OwnerAccess]:
    access = OwnerAccess(database_url)
    try:
        yield access
    finally:
        access.close()


# --------------------------------------------------------------------------------------------


def test_a_fresh_ledger_checkpoints_the_empty_tree(ledger: Ledger) -> None:
    checkpoint, stored = take_checkpoint(ledger.engine, ledger.clock())
    assert stored
    assert (checkpoint.tree_size, checkpoint.chains, checkpoint.root) == (0, [], EMPTY_TREE_ROOT)
    assert _verify(ledger, checkpoint) == []
    published = _published(ledger, checkpoint.checkpoint_id)
    assert published == checkpoint
    with ledger.engine.connect() as connection:
        rows = connection.execute(sa.select(ledger_checkpoints)).all()
    assert [(row.checkpoint_id, row.root, row.tree_size) for row in rows] == [
        (checkpoint.checkpoint_id, EMPTY_TREE_ROOT, 0)
    ]


def test_a_checkpoint_lists_every_tenant_head_under_its_root(books: Books) -> None:
    ledger = books.ledger
    checkpoint, _ = take_checkpoint(ledger.engine, ledger.clock())
    assert [chain.tenant_id for chain in checkpoint.chains] == sorted(books.tenants)
    with ledger.engine.connect() as connection:
        for chain in checkpoint.chains:
            last = connection.execute(
                sa.select(journal_transactions.c.chain_sequence, journal_transactions.c.hash)
                .where(journal_transactions.c.tenant_id == chain.tenant_id)
                .order_by(journal_transactions.c.sequence.desc())
                .limit(1)
            ).one()
            assert (chain.sequence, chain.hash) == (last.chain_sequence, last.hash)
    leaves = [chain_leaf_data(c.tenant_id, c.sequence, c.hash) for c in checkpoint.chains]
    assert checkpoint.root == merkle_root(leaves).hex()
    event = next(
        event
        for event in ledger.list_unsent_events_all_tenants(after_sequence=0, limit=500)
        if event.type == CHECKPOINT_EVENT_TYPE
    )
    assert event.tenant_id == CHECKPOINT_TENANT_ID
    assert event.payload == checkpoint.document()


def test_appending_after_a_checkpoint_still_verifies(books: Books) -> None:
    ledger = books.ledger
    checkpoint, _ = take_checkpoint(ledger.engine, ledger.clock())
    for tenant in books.tenants[:2]:
        ledger.deposit("buyer", "1.00", tenant_id=tenant, idempotency_key=uuid.uuid4().hex)
    newcomer = f"tenant-new-{uuid.uuid4().hex[:6]}"
    _fill(ledger, newcomer)
    assert _verify(ledger, checkpoint) == []
    later, _ = take_checkpoint(ledger.engine, ledger.clock())
    assert later.tree_size == 4 and later.root != checkpoint.root
    assert _verify(ledger, later) == [] and _verify(ledger, checkpoint) == []


def test_a_consistent_rewrite_fails_at_that_tenant_chain(books: Books, owner: OwnerAccess) -> None:
    ledger = books.ledger
    taken, _ = take_checkpoint(ledger.engine, ledger.clock())
    published = _published(ledger, taken.checkpoint_id)
    victim = books.victim
    owner.rewrite_deposit(victim, books.deposits[victim].journal_sequence, 1_000_000)

    # The rewrite is consistent: the books on their own find nothing wrong.
    assert ledger.verify_journal() == []
    assert ledger.get_balance("buyer", tenant_id=victim).posted_minor == 1_000_000 - 3_000 + 1_000

    problems = _verify(ledger, published)
    head = next(chain for chain in published.chains if chain.tenant_id == victim)
    assert [(p.kind, p.tenant_id, p.journal_sequence) for p in problems] == [
        ("checkpoint_hash_mismatch", victim, head.sequence)
    ]
    assert problems[0].expected == head.hash and problems[0].actual != head.hash
    # Every other tenant's chain agrees with the checkpoint.
    others = [chain for chain in published.chains if chain.tenant_id != victim]
    assert len(others) == 2
    with ledger.engine.connect() as connection:
        alone = Checkpoint(
            **{
                **published.model_dump(),
                "chains": others,
                "tree_size": 2,
                "root": merkle_root(
                    [chain_leaf_data(c.tenant_id, c.sequence, c.hash) for c in others]
                ).hex(),
            }
        )
        assert checkpoint_problems(connection, alone) == []
    # A checkpoint taken after the rewrite agrees with the rewritten books: only a copy kept
    # outside the database from before the rewrite catches it.
    after, _ = take_checkpoint(ledger.engine, ledger.clock())
    assert _verify(ledger, after) == []


def test_a_forged_checkpoint_file_is_reported(books: Books) -> None:
    ledger = books.ledger
    checkpoint, _ = take_checkpoint(ledger.engine, ledger.clock())
    document = checkpoint.document()
    target = document["chains"][1]

    # The root alone changed: the file contradicts itself.
    forged_root = parse_checkpoint(json.dumps({**document, "root": "0" * 64}))
    assert [(p.kind, p.field) for p in _verify(ledger, forged_root)] == [
        ("checkpoint_root_mismatch", "root")
    ]

    # A chain's hash changed but not the root: both the root and that chain disagree.
    chains = [dict(chain) for chain in document["chains"]]
    chains[1]["hash"] = "f" * 64
    forged_chain = parse_checkpoint(json.dumps({**document, "chains": chains}))
    assert [(p.kind, p.tenant_id) for p in _verify(ledger, forged_chain)] == [
        ("checkpoint_root_mismatch", None),
        ("checkpoint_hash_mismatch", target["tenant_id"]),
    ]

    # A tenant the books lack, and a position past a chain's end (root recomputed each time).
    def consistent(chains: list[dict[str, Any]]) -> Checkpoint:
        leaves = [chain_leaf_data(c["tenant_id"], c["sequence"], c["hash"]) for c in chains]
        root = merkle_root(leaves).hex()
        return parse_checkpoint(
            json.dumps({**document, "chains": chains, "tree_size": len(chains), "root": root})
        )

    extra = consistent(
        [*document["chains"], {"tenant_id": "zz-gone", "sequence": 1, "hash": "a" * 64}]
    )
    assert [(p.kind, p.tenant_id) for p in _verify(ledger, extra)] == [
        ("checkpoint_chain_missing", "zz-gone")
    ]
    longer = [dict(chain) for chain in document["chains"]]
    longer[0]["sequence"] += 1000
    assert [
        (p.kind, p.tenant_id, p.journal_sequence) for p in _verify(ledger, consistent(longer))
    ] == [("checkpoint_chain_shorter", longer[0]["tenant_id"], longer[0]["sequence"])]
    unsorted = consistent(document["chains"][::-1])
    assert [p.kind for p in _verify(ledger, unsorted)] == ["checkpoint_invalid"]
    wrong_size = parse_checkpoint(json.dumps({**document, "tree_size": 7}))
    assert [(p.kind, p.field) for p in _verify(ledger, wrong_size)] == [
        ("checkpoint_invalid", "tree_size")
    ]


def test_a_periodic_checkpoint_of_unchanged_books_is_not_stored_again(books: Books) -> None:
    ledger = books.ledger
    first, stored = take_checkpoint(ledger.engine, ledger.clock(), if_changed=True)
    again, stored_again = take_checkpoint(ledger.engine, ledger.clock(), if_changed=True)
    assert stored and not stored_again and again == first
    ledger.deposit("buyer", "1.00", tenant_id=books.victim, idempotency_key=uuid.uuid4().hex)
    changed, stored_changed = take_checkpoint(ledger.engine, ledger.clock(), if_changed=True)
    assert stored_changed and changed.root != first.root
    with ledger.engine.connect() as connection:
        count = connection.execute(sa.select(sa.func.count()).select_from(ledger_checkpoints))
        assert count.scalar_one() == 2


def test_stored_checkpoints_are_append_only(books: Books, owner: OwnerAccess) -> None:
    ledger = books.ledger
    take_checkpoint(ledger.engine, ledger.clock())
    statements = [
        "UPDATE ledger_checkpoints SET root = 'forged'",
        "DELETE FROM ledger_checkpoints",
    ]
    if owner.engine.dialect.name == "postgresql":
        statements.append("TRUNCATE ledger_checkpoints")
    else:
        statements.append(
            "INSERT OR REPLACE INTO ledger_checkpoints "
            "SELECT sequence, checkpoint_id, version, created_at, tree_size, 'forged', chains "
            "FROM ledger_checkpoints"
        )
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError) as caught:
            owner.run(statement)
        assert "journal_is_append_only" in str(caught.value.orig), statement
    with ledger.engine.connect() as connection:
        roots = connection.execute(sa.select(ledger_checkpoints.c.root)).scalars().all()
    assert len(roots) == 1 and roots[0] != "forged"
