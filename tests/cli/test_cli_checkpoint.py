"""``compute-ledger checkpoint`` and ``audit --checkpoint FILE`` as processes, on both engines:
the file the one writes is what the other reads; agreement exits 0, a rewrite of the books or a
forged file exits 7 (``audit_failed``) with every problem in the JSON, a file that is no
checkpoint exits 2 (``usage_error``)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cli_helpers import Cli, clean_environment

from ledger_db.checkpoint import chain_leaf_data, merkle_root
from ledger_db.journal import transaction_hash
from ledger_db.migrations.append_only import (
    create_append_only_triggers,
    drop_append_only_triggers,
)
from ledger_db.schema import accounts, journal_chains, journal_entries, journal_transactions


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    cli = Cli(
        tmp_path,
        clean_environment(
            TEMPORAL_ADDRESS=f"127.0.0.1:{_closed_port()}", LEDGER_DATABASE_URL=database_url
        ),
    )
    cli.run("db", "upgrade").expect_ok()
    return cli


def _fund(cli: Cli, tenant: str, amount: str) -> None:
    cli.run(
        "account", "open", "--tenant", tenant, "--account", "buyer", "--currency", "USD",
        "--idempotency-key", f"open-{tenant}",
    ).expect_ok()  # fmt: skip
    cli.run(
        "account", "deposit", "--tenant", tenant, "--account", "buyer", "--amount", amount,
        "--idempotency-key", f"deposit-{tenant}",
    ).expect_ok()  # fmt: skip


def _rewrite_last_deposit(url: str, new_amount_minor: int) -> str:
    """As the owner, triggers off: the journal's last transaction (a deposit) gets a new amount,
    its hash, the head and the balances follow, so that the books verify. Returns its tenant.
    (The last transaction has no successor to rehash, on any chain layout.)"""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            postgres = connection.dialect.name == "postgresql"
            for table in ("journal_transactions", "journal_entries"):
                if postgres:
                    connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            if not postgres:
                drop_append_only_triggers(connection)
            last = connection.execute(
                sa.select(journal_transactions)
                .order_by(journal_transactions.c.sequence.desc())
                .limit(1)
            ).one()
            entries = connection.execute(
                sa.select(journal_entries).where(
                    journal_entries.c.journal_sequence == last.sequence
                )
            ).all()
            delta = new_amount_minor - int(entries[0].amount_minor)
            connection.execute(
                journal_entries.update()
                .where(journal_entries.c.journal_sequence == last.sequence)
                .values(amount_minor=new_amount_minor)
            )
            for entry in entries:
                connection.execute(
                    accounts.update()
                    .where(
                        accounts.c.tenant_id == last.tenant_id,
                        accounts.c.account_id == entry.account_id,
                    )
                    .values(
                        balance_minor=accounts.c.balance_minor
                        + (delta if entry.direction == "IN" else -delta)
                    )
                )
            rewritten = [
                dict(entry._mapping)
                for entry in connection.execute(
                    sa.select(journal_entries).where(
                        journal_entries.c.journal_sequence == last.sequence
                    )
                )
            ]
            new_hash = transaction_hash(dict(last._mapping), rewritten)
            connection.execute(
                journal_transactions.update()
                .where(journal_transactions.c.sequence == last.sequence)
                .values(hash=new_hash)
            )
            connection.execute(
                journal_chains.update()
                .where(journal_chains.c.tenant_id == last.tenant_id)
                .values(last_hash=new_hash)
            )
            for table in ("journal_transactions", "journal_entries"):
                if postgres:
                    connection.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
            if not postgres:
                create_append_only_triggers(connection)
        return str(last.tenant_id)
    finally:
        engine.dispose()


def _with_root(document: dict[str, Any], chains: list[dict[str, Any]]) -> dict[str, Any]:
    leaves = [chain_leaf_data(c["tenant_id"], c["sequence"], c["hash"]) for c in chains]
    root = merkle_root(leaves).hex()
    return {**document, "chains": chains, "tree_size": len(chains), "root": root}


def test_checkpoint_out_then_audit_against_it(cli: Cli, tmp_path: Path, database_url: str) -> None:
    _fund(cli, "acme", "10.00")
    _fund(cli, "globex", "20.00")
    path = tmp_path / "checkpoint.json"
    printed = cli.run("checkpoint", "--out", str(path)).expect_ok()
    written = json.loads(path.read_text())
    assert printed == written
    assert [chain["tenant_id"] for chain in written["chains"]] == ["acme", "globex"]
    assert written["tree_size"] == 2 and len(written["root"]) == 64
    human = cli.run("checkpoint", json_mode=False)
    assert human.status == 0 and "globex" in human.stdout and "root" in human.stdout

    agreed = cli.run("audit", "--checkpoint", str(path)).expect_ok()
    assert agreed["ok"] is True
    assert agreed["checkpoint"] == {
        "checkpoint_id": written["checkpoint_id"],
        "created_at": written["created_at"],
        "root": written["root"],
        "chains_checked": 2,
        "problems": 0,
    }

    # Appending after the checkpoint keeps the books in agreement with it.
    _fund(cli, "initech", "5.00")
    assert cli.run("audit", "--checkpoint", str(path)).expect_ok()["ok"] is True

    # A forged file: one chain's hash changed, root left alone.
    chains = [dict(chain) for chain in written["chains"]]
    chains[0]["hash"] = "f" * 64
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**written, "chains": chains}))
    error = cli.run("audit", "--checkpoint", str(forged)).expect_error("audit_failed", 7)
    assert [(p["kind"], p["source"], p.get("tenant_id")) for p in error["details"]["problems"]] == [
        ("checkpoint_root_mismatch", "checkpoint", None),
        ("checkpoint_hash_mismatch", "checkpoint", "acme"),
    ]

    # Not a checkpoint at all, or no file: usage errors.
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1}')
    cli.run("audit", "--checkpoint", str(bad)).expect_error("usage_error", 2)
    cli.run("audit", "--checkpoint", str(tmp_path / "missing.json")).expect_error("usage_error", 2)


def test_a_consistent_rewrite_passes_audit_and_fails_against_the_checkpoint(
    cli: Cli, tmp_path: Path, database_url: str
) -> None:
    _fund(cli, "acme", "10.00")
    _fund(cli, "globex", "20.00")
    path = tmp_path / "checkpoint.json"
    written = cli.run("checkpoint", "--out", str(path)).expect_ok()
    tenant = _rewrite_last_deposit(database_url, 2_000_000)
    assert tenant == "globex"

    assert cli.run("audit").expect_ok()["ok"] is True  # the rewrite is consistent
    error = cli.run("audit", "--checkpoint", str(path)).expect_error("audit_failed", 7)
    head = next(chain for chain in written["chains"] if chain["tenant_id"] == "globex")
    assert [
        (p["kind"], p["tenant_id"], p["journal_sequence"], p["expected"])
        for p in error["details"]["problems"]
    ] == [("checkpoint_hash_mismatch", "globex", head["sequence"], head["hash"])]
    assert error["details"]["checkpoint"]["problems"] == 1
    assert "1 against the checkpoint" in error["message"]

    # The same checkpoint without globex's chain (root recomputed) agrees: acme is intact.
    alone = tmp_path / "acme-only.json"
    acme = [chain for chain in written["chains"] if chain["tenant_id"] == "acme"]
    alone.write_text(json.dumps(_with_root(written, acme)))
    assert cli.run("audit", "--checkpoint", str(alone)).expect_ok()["ok"] is True
