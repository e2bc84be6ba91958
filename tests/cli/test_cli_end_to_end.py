"""End to end through the command line: a real dev server, a ``compute-ledger worker`` process
and one ``compute-ledger`` process per command, as a user (or a script) would run them.

The binaries are required: a missing ``temporal`` fails these tests, it never skips them.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import Cli, clean_environment, stop

from ledger_db import Ledger
from ledger_db.ids import derive_hold_id
from starter.cli import hold_search_attributes
from starter.dev import DevServer, free_port, start_dev_server, wait_until_ready

pytestmark = pytest.mark.temporal


@dataclass
class Stack:
    cli: Cli
    server: DevServer
    directory: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A dev server and a worker process, on a free port, a fresh SQLite file, a fresh queue."""
    directory = tmp_path_factory.mktemp("cli-e2e")
    address = f"127.0.0.1:{free_port()}"
    server = start_dev_server(
        address,
        ui=False,
        log_path=directory / "temporal.log",
        search_attributes=hold_search_attributes(),
    )
    worker = None
    try:
        asyncio.run(wait_until_ready(address, server=server, timeout_seconds=60))
        database_url = f"sqlite:///{directory}/ledger.db"
        # Migrate once before two processes open the fresh file: SQLite migrations racing from
        # two processes fail with "database is locked" (see docs/notes/cli-findings.md).
        Ledger.from_url(database_url).close()
        environment = clean_environment(
            TEMPORAL_ADDRESS=address,
            LEDGER_DATABASE_URL=database_url,
            LEDGER_TASK_QUEUE=f"cli-e2e-{uuid.uuid4().hex[:8]}",
        )
        cli = Cli(directory, environment)
        worker = cli.start("worker", log_path=directory / "worker.log")
        yield Stack(cli=cli, server=server, directory=directory)
    finally:
        if worker is not None:
            status, _, _ = stop(worker)
            log = (directory / "worker.log").read_text(errors="replace")
            assert status == 0, f"the worker did not stop cleanly ({status}):\n{log[-3000:]}"
        server.stop()


def _tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _open_buyer_and_seller(cli: Cli, tenant: str, deposit: str = "100.00") -> None:
    for account in ("buyer", "seller"):
        opened = cli.run(
            "account",
            "open",
            "--tenant",
            tenant,
            "--account",
            account,
            "--currency",
            "usd",
            "--idempotency-key",
            f"open-{account}",
        ).expect_ok()
        assert opened["account_id"] == account
        assert opened["currency"] == "USD"
        assert opened["kind"] == "agent"
    cli.run(
        "account",
        "deposit",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        deposit,
        "--currency",
        "USD",
        "--idempotency-key",
        "deposit-1",
    ).expect_ok()


def _balance(cli: Cli, tenant: str, account: str) -> dict[str, str]:
    shown = cli.run("account", "show", "--tenant", tenant, "--account", account).expect_ok()
    assert shown["account"]["account_id"] == account
    return dict(shown["balance"])


def test_freeze_capture_finalize_through_the_cli(stack: Stack) -> None:
    cli = stack.cli
    tenant = _tenant()
    _open_buyer_and_seller(cli, tenant)

    # The same open again under the same key is a replay, not a second account.
    replay = cli.run(
        "account",
        "open",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--currency",
        "USD",
        "--idempotency-key",
        "open-buyer",
    ).expect_ok()
    assert replay["replayed"] is True

    balance = _balance(cli, tenant, "buyer")
    assert (balance["posted"], balance["held"], balance["available"]) == (
        "100.00",
        "0.00",
        "100.00",
    )
    assert balance["currency"] == "USD"

    frozen = cli.run(
        "freeze",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        "30.00",
        "--currency",
        "USD",
        "--ttl",
        "10m",
        "--payee",
        "seller",
        "--reason",
        "NEGOTIATION",
        "--idempotency-key",
        "negotiation-1",
    ).expect_ok()
    hold_id = frozen["hold_id"]
    assert hold_id == derive_hold_id(tenant, "negotiation-1")
    assert frozen["state"] == "active"
    assert (frozen["amount"], frozen["currency"]) == ("30.00", "USD")
    assert frozen["amount_minor"] == 3000

    balance = _balance(cli, tenant, "buyer")
    assert (balance["held"], balance["available"]) == ("30.00", "70.00")

    # Freezing again under the same key returns the same hold; no second hold is made.
    again = cli.run(
        "freeze",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        "30.00",
        "--currency",
        "USD",
        "--ttl",
        "10m",
        "--payee",
        "seller",
        "--reason",
        "NEGOTIATION",
        "--idempotency-key",
        "negotiation-1",
    ).expect_ok()
    assert again["hold_id"] == hold_id
    assert again["replayed"] is True
    assert _balance(cli, tenant, "buyer")["held"] == "30.00"

    captured = cli.run(
        "capture",
        "--tenant",
        tenant,
        "--hold",
        hold_id,
        "--order",
        "order-1",
        "--amount",
        "12.25",
        "--wait",
        "--idempotency-key",
        "capture-1",
    ).expect_ok()
    assert captured["state"] == "captured"
    assert (captured["captured"], captured["released"]) == ("12.25", "17.75")
    assert captured["order_id"] == "order-1"
    assert captured["finalized"] is True

    shown = cli.run("hold", "show", "--tenant", tenant, "--hold", hold_id).expect_ok()
    assert shown["hold_id"] == hold_id
    assert shown["state"] == "captured"
    assert shown["finalized"] is True

    buyer = _balance(cli, tenant, "buyer")
    assert (buyer["posted"], buyer["held"], buyer["available"]) == ("87.75", "0.00", "87.75")
    seller = _balance(cli, tenant, "seller")
    fee_minor = captured["fee_minor"]
    assert int(seller["posted"].replace(".", "")) == 1225 - fee_minor

    page = cli.run("entries", "--tenant", tenant, "--account", "buyer").expect_ok()
    assert set(page) >= {"entries", "next_cursor"}
    entries = page["entries"]
    assert [entry["journal_sequence"] for entry in entries] == sorted(
        entry["journal_sequence"] for entry in entries
    )
    for entry in entries:
        assert entry["account_id"] in {"buyer", "@hold:buyer"}
        assert entry["currency"] == "USD"
        assert isinstance(entry["amount"], str) and "." in entry["amount"]
        assert entry["direction"] in {"IN", "OUT"}
        assert entry["tenant_id"] == tenant
    assert any(entry["amount"] == "100.00" and entry["direction"] == "IN" for entry in entries)

    listed = cli.run("events", "--tenant", tenant).expect_ok()
    assert set(listed) >= {"events", "last_sequence"}
    types = [event["type"] for event in listed["events"] if event["hold_id"] == hold_id]
    assert types == ["INTENT_CREATED", "ORDER_CREATED", "PAYMENT_SUCCEEDED"]
    assert len({event["event_id"] for event in listed["events"]}) == len(listed["events"])
    assert listed["last_sequence"] == listed["events"][-1]["sequence"]

    # Paging by keyset: everything after the first event is the rest.
    after = cli.run(
        "events", "--tenant", tenant, "--after", str(listed["events"][0]["sequence"])
    ).expect_ok()
    assert after["events"] == listed["events"][1:]


def test_release_through_the_cli(stack: Stack) -> None:
    cli = stack.cli
    tenant = _tenant()
    _open_buyer_and_seller(cli, tenant, deposit="50.00")
    frozen = cli.run(
        "freeze",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        "20.00",
        "--ttl",
        "1h",
        "--payee",
        "seller",
        "--idempotency-key",
        "negotiation-2",
    ).expect_ok()
    assert _balance(cli, tenant, "buyer")["available"] == "30.00"

    released = cli.run(
        "release", "--tenant", tenant, "--hold", frozen["hold_id"], "--idempotency-key", "rel-2"
    ).expect_ok()
    assert released["state"] == "released"
    assert released["released"] == "20.00"
    balance = _balance(cli, tenant, "buyer")
    assert (balance["held"], balance["available"]) == ("0.00", "50.00")

    # A hold resolves once: capturing it now is refused with its stable code.
    refused = cli.run(
        "capture",
        "--tenant",
        tenant,
        "--hold",
        frozen["hold_id"],
        "--order",
        "late",
        "--idempotency-key",
        "capture-late",
    )
    refused.expect_error("hold_already_released", 5)

    types = [
        event["type"]
        for event in cli.run("events", "--tenant", tenant).expect_ok()["events"]
        if event["hold_id"] == frozen["hold_id"]
    ]
    assert types == ["INTENT_CREATED", "HOLD_RELEASED"]


def test_the_error_contract(stack: Stack) -> None:
    cli = stack.cli
    tenant = _tenant()
    _open_buyer_and_seller(cli, tenant, deposit="10.00")

    cli.run("account", "show", "--tenant", tenant, "--account", "nobody").expect_error(
        "account_not_found", 3
    )
    # Another tenant's account is indistinguishable from a missing one.
    cli.run("account", "show", "--tenant", _tenant(), "--account", "buyer").expect_error(
        "account_not_found", 3
    )
    cli.run(
        "freeze",
        "--tenant",
        tenant,
        "--account",
        "nobody",
        "--amount",
        "1.00",
        "--idempotency-key",
        "f-nobody",
    ).expect_error("account_not_found", 3)
    cli.run("hold", "show", "--tenant", tenant, "--hold", str(uuid.uuid4())).expect_error(
        "hold_not_found", 3
    )
    cli.run(
        "freeze",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        "11.00",
        "--idempotency-key",
        "f-too-much",
    ).expect_error("insufficient_funds", 6)
    cli.run(
        "freeze",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        "1.001",
        "--idempotency-key",
        "f-precision",
    ).expect_error("invalid_amount", 4)
    cli.run(
        "freeze",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        "1.00",
        "--currency",
        "EUR",
        "--idempotency-key",
        "f-eur",
    ).expect_error("currency_mismatch", 4)
    cli.run(
        "account",
        "deposit",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        "2.00",
        "--idempotency-key",
        "deposit-1",
    ).expect_error("idempotency_key_reused", 5)
    # A rejected freeze left nothing held.
    assert _balance(cli, tenant, "buyer")["held"] == "0.00"

    # Mutating commands refuse to run without a key; nothing reaches the ledger.
    missing = cli.run("freeze", "--tenant", tenant, "--account", "buyer", "--amount", "1.00")
    missing.expect_error("idempotency_key_required", 2)
    missing_deposit = cli.run(
        "account", "deposit", "--tenant", tenant, "--account", "buyer", "--amount", "1.00"
    )
    missing_deposit.expect_error("idempotency_key_required", 2)
    assert _balance(cli, tenant, "buyer")["posted"] == "10.00"

    cli.run(
        "freeze",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        "1.00",
        "--ttl",
        "soon",
        "--idempotency-key",
        "f-ttl",
    ).expect_error("invalid_duration", 2)
    cli.run("freeze", "--tenant", tenant, "--json-typo").expect_error("usage_error", 2)

    # Human mode: the message goes to stderr, nothing to stdout, same exit status.
    human = cli.run("account", "show", "--tenant", tenant, "--account", "nobody", json_mode=False)
    assert human.status == 3
    assert "account_not_found" in human.stderr
    assert human.stdout == ""


def test_human_output_shows_exact_amounts(stack: Stack) -> None:
    cli = stack.cli
    tenant = _tenant()
    _open_buyer_and_seller(cli, tenant, deposit="0.10")
    shown = cli.run("account", "show", "--tenant", tenant, json_mode=False)
    assert shown.status == 0, shown.stderr
    assert "buyer" in shown.stdout and "seller" in shown.stdout
    assert "0.10" in shown.stdout
    assert "USD" in shown.stdout


def test_events_follow_streams_json_lines(stack: Stack) -> None:
    cli = stack.cli
    tenant = _tenant()
    _open_buyer_and_seller(cli, tenant)
    follower = cli.start("events", "--tenant", tenant, "--follow", "--interval", "0.2", "--json")
    try:
        cli.run(
            "freeze",
            "--tenant",
            tenant,
            "--account",
            "buyer",
            "--amount",
            "5.00",
            "--ttl",
            "1h",
            "--idempotency-key",
            "follow-1",
        ).expect_ok()
        time.sleep(2.0)
    finally:
        status, stdout, stderr = stop(follower)
    assert status == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert [event["type"] for event in lines] == ["INTENT_CREATED"]
    assert lines[0]["tenant_id"] == tenant


def test_a_saga_command_without_a_worker_gives_up_with_a_stable_code(stack: Stack) -> None:
    tenant = _tenant()
    _open_buyer_and_seller(stack.cli, tenant, deposit="5.00")
    lonely = Cli(
        stack.directory,
        {**stack.cli.environment, "LEDGER_TASK_QUEUE": f"nobody-{uuid.uuid4().hex[:8]}"},
    )
    refused = lonely.run(
        "freeze",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        "1.00",
        "--timeout",
        "2s",
        "--idempotency-key",
        "no-worker",
    )
    refused.expect_error("worker_unavailable", 8)
    assert "Traceback" not in refused.stderr, refused.stderr


def test_the_shared_configuration_connects_to_a_plain_dev_server(stack: Stack) -> None:
    """``starter.config`` over ``temporalio.envconfig``: no profile, no TLS, no API key."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    from starter.config import ClientConfig, connect_temporal

    config = ClientConfig.from_env(
        {
            "TEMPORAL_ADDRESS": stack.server.address,
            "TEMPORAL_CONFIG_FILE": str(stack.directory / "no-such-profile.toml"),
        }
    )
    assert config.tls is False and config.api_key is None

    async def describe() -> str:
        client = await connect_temporal(config)
        response = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=config.namespace)
        )
        return str(response.namespace_info.name)

    assert asyncio.run(describe()) == "default"


def test_hold_show_reads_the_ledger_and_with_workflow_asks_the_workflow(stack: Stack) -> None:
    cli = stack.cli
    tenant = _tenant()
    _open_buyer_and_seller(cli, tenant)
    frozen = cli.run(
        "freeze",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        "3.00",
        "--ttl",
        "1h",
        "--idempotency-key",
        "show-1",
    ).expect_ok()
    plain = cli.run("hold", "show", "--tenant", tenant, "--hold", frozen["hold_id"]).expect_ok()
    assert (plain["hold_id"], plain["state"], plain["amount"]) == (
        frozen["hold_id"],
        "active",
        "3.00",
    )
    both = cli.run(
        "hold", "show", "--tenant", tenant, "--hold", frozen["hold_id"], "--workflow"
    ).expect_ok()
    assert set(both) == {"hold", "workflow"}
    assert both["hold"] == plain
    assert both["workflow"]["hold_id"] == frozen["hold_id"]
    assert both["workflow"]["tenant_id"] == tenant
    human = cli.run(
        "hold",
        "show",
        "--tenant",
        tenant,
        "--hold",
        frozen["hold_id"],
        "--workflow",
        json_mode=False,
    )
    assert human.status == 0 and "workflow phase" in human.stdout, human.stderr
    # Another tenant's hold is not found, in the workflow as in the ledger.
    cli.run(
        "hold", "show", "--tenant", _tenant(), "--hold", frozen["hold_id"], "--workflow"
    ).expect_error("hold_not_found", 3)


def test_extend_and_retry_payout_through_the_cli(stack: Stack) -> None:
    cli = stack.cli
    tenant = _tenant()
    _open_buyer_and_seller(cli, tenant, deposit="50.00")
    frozen = cli.run(
        "freeze",
        "--tenant",
        tenant,
        "--account",
        "buyer",
        "--amount",
        "5.00",
        "--ttl",
        "10m",
        "--payee",
        "seller",
        "--idempotency-key",
        "negotiation-x",
    ).expect_ok()
    extended = cli.run(
        "extend",
        "--tenant",
        tenant,
        "--hold",
        frozen["hold_id"],
        "--ttl",
        "2h",
        "--idempotency-key",
        "extend-1",
    ).expect_ok()
    assert extended["state"] == "active"
    assert extended["expires_at"] > frozen["expires_at"]
    # The same key and request again: the original answer; a shorter expiry is refused.
    again = cli.run(
        "extend",
        "--tenant",
        tenant,
        "--hold",
        frozen["hold_id"],
        "--ttl",
        "2h",
        "--idempotency-key",
        "extend-1",
    ).expect_ok()
    assert again["expires_at"] == extended["expires_at"]
    cli.run(
        "extend",
        "--tenant",
        tenant,
        "--hold",
        frozen["hold_id"],
        "--ttl",
        "1m",
        "--idempotency-key",
        "extend-2",
    ).expect_error("ttl_out_of_range", 4)
    # No payout was refused: there is nothing to retry on an active hold.
    cli.run(
        "retry-payout",
        "--tenant",
        tenant,
        "--hold",
        frozen["hold_id"],
        "--idempotency-key",
        "retry-1",
    ).expect_error("hold_not_captured", 5)
    types = [
        event["type"]
        for event in cli.run("events", "--tenant", tenant).expect_ok()["events"]
        if event["hold_id"] == frozen["hold_id"]
    ]
    assert types == ["INTENT_CREATED", "HOLD_EXTENDED"]
