"""``compute-ledger demo`` end to end on a fresh working directory, as the README runs it.

It brings up its own dev server (on a non-default port, so as not to clash with anything on
7233), the SQLite ledger under ./.compute-ledger/ and an in-process worker, runs the three
negotiations and stops everything. Run twice in the same directory, it must work twice.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cli_helpers import Cli, clean_environment, free_port_pair

pytestmark = pytest.mark.temporal


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _check_report(report: dict[str, object], port: int) -> None:
    holds = report["holds"]
    assert isinstance(holds, list)
    assert [hold["state"] for hold in holds] == ["captured", "released", "expired"]
    captured, released, expired = holds
    assert (captured["amount"], captured["captured"], captured["released"]) == (
        "40.00",
        "25.50",
        "14.50",
    )
    assert captured["finalized"] is True
    assert captured["currency"] == "USD"
    assert released["released"] == "20.00"
    assert expired["released"] == "10.00"

    balances = {row["account"]["account_id"]: row["balance"] for row in report["balances"]}
    assert {"buyer", "seller"} <= set(balances)
    for balance in balances.values():
        assert balance["held"] == "0.00"
        assert balance["currency"] == "USD"

    entries = report["entries"]
    assert isinstance(entries, list) and entries
    sequences = [(entry["journal_sequence"], entry["entry_index"]) for entry in entries]
    assert sequences == sorted(sequences)
    assert all(isinstance(entry["amount"], str) for entry in entries)

    types = [event["type"] for event in report["events"]]
    for expected in (
        "INTENT_CREATED",
        "ORDER_CREATED",
        "PAYMENT_SUCCEEDED",
        "HOLD_RELEASED",
        "HOLD_EXPIRED",
    ):
        assert expected in types, types
    assert report["web_ui"] == f"http://127.0.0.1:{port + 1000}/namespaces/default/workflows"


def test_demo_runs_on_a_fresh_directory_and_again(tmp_path: Path) -> None:
    port = free_port_pair()
    cli = Cli(tmp_path, clean_environment(TEMPORAL_ADDRESS=f"127.0.0.1:{port}"))

    first = cli.run("demo", timeout=240).expect_ok()
    _check_report(first, port)
    assert (tmp_path / ".compute-ledger" / "ledger.db").exists()
    assert not _port_open(port), "the demo left the dev server running"
    buyer_first = next(
        row["balance"] for row in first["balances"] if row["account"]["account_id"] == "buyer"
    )
    # 100.00 deposited, 25.50 captured: the released and expired holds gave their money back.
    assert buyer_first["available"] == "74.50"

    second = cli.run("demo", "--expiry-ttl", "2s", timeout=240).expect_ok()
    _check_report(second, port)
    assert second["run_id"] != first["run_id"]
    buyer_second = next(
        row["balance"] for row in second["balances"] if row["account"]["account_id"] == "buyer"
    )
    assert buyer_second["available"] == "149.00"
    assert not _port_open(port)


def test_demo_human_output(tmp_path: Path) -> None:
    port = free_port_pair()
    cli = Cli(tmp_path, clean_environment(TEMPORAL_ADDRESS=f"127.0.0.1:{port}"))
    result = cli.run("demo", "--expiry-ttl", "1s", json_mode=False, timeout=240)
    assert result.status == 0, result.stdout + result.stderr
    for text in (
        "balances",
        "journal",
        "billing events",
        "25.50",
        "HOLD_EXPIRED",
        f"http://127.0.0.1:{port + 1000}/namespaces/default/workflows",
    ):
        assert text in result.stdout, text
    assert not _port_open(port)
