"""``compute-ledger demo``: the whole story on a fresh machine, in one command.

1. Brings up the embedded defaults: the Temporal dev server on ``TEMPORAL_ADDRESS`` (unless one
   already answers there), the SQLite ledger under ``./.compute-ledger/`` and a worker in this
   process.
2. Opens the ``demo`` tenant's buyer and seller accounts (USD) and the platform accounts, and
   tops the buyer up.
3. Runs three negotiations, each a HoldWorkflow: one captured in part and paid out to the
   seller (minus the platform fee), one released, one left to expire.
4. Prints the balances, this run's journal and billing events, and where the Web UI shows the
   holds; then stops everything (or, with ``--keep-running``, waits for Ctrl-C).

Every idempotency key carries the run's ID, so the demo can be run again and again; accounts are
opened once and reused, so balances add up across runs while the journal shown is this run's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from starter.config import STATE_DIRECTORY_NAME, ClientConfig, apply_environment_defaults
from starter.db import upgrade
from starter.dev import (
    DevServer,
    hold_search_attributes,
    is_reachable,
    parse_address,
    register_search_attributes,
    start_dev_server,
    ui_workflows_url,
    wait_until_ready,
)
from starter.output import (
    balances_table,
    emit,
    entries_table,
    events_table,
    holds_table,
    stdout,
)

__all__ = ["DEMO_TENANT", "run_demo"]

DEMO_TENANT = "demo"
DEMO_CURRENCY = "USD"
BUYER = "buyer"
SELLER = "seller"
DEPOSIT_AMOUNT = "100.00"
# Negotiation 1 freezes 40.00 and captures 25.50 of it: the remaining 14.50 is released in the
# same journal transaction, and finalize pays 25.50 out of escrow to the seller minus the fee.
CAPTURED_HOLD_AMOUNT = "40.00"
CAPTURE_AMOUNT = "25.50"
RELEASED_HOLD_AMOUNT = "20.00"
EXPIRING_HOLD_AMOUNT = "10.00"
LONG_TTL_SECONDS = 15 * 60
events_page_size = 500
events_pages_max = 1000


@dataclasses.dataclass
class _Progress:
    """Human progress lines on stderr; silent in JSON mode so stdout stays one document."""

    json_mode: bool
    console: Console = dataclasses.field(default_factory=lambda: Console(stderr=True))

    def say(self, message: str) -> None:
        if not self.json_mode:
            self.console.print(message, highlight=False)


def new_run_id() -> str:
    """A run ID that sorts by time and does not collide between two runs in one second."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def _with_task_queue(config: Any, task_queue: str) -> Any:
    """A copy of the client configuration on another task queue (dataclass or pydantic)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.replace(config, task_queue=task_queue)
    if hasattr(config, "model_copy"):
        return config.model_copy(update={"task_queue": task_queue})
    raise TypeError(f"cannot set the task queue of {type(config).__name__}")


async def _open_or_reuse(client: Any, account_id: str, key: str) -> Any:
    from ledger_db.errors import AccountAlreadyExists

    try:
        return await client.open_account(
            tenant_id=DEMO_TENANT,
            currency=DEMO_CURRENCY,
            idempotency_key=key,
            account_id=account_id,
            kind="agent",
            name=f"demo {account_id}",
        )
    except AccountAlreadyExists:
        return await client.get_account(tenant_id=DEMO_TENANT, account_id=account_id)


async def _run_events(client: Any, hold_ids: set[str], transaction_ids: set[str]) -> list[Any]:
    """This run's billing events, in outbox order (a bounded keyset walk of the tenant's)."""
    found: list[Any] = []
    after_sequence = 0
    for _ in range(events_pages_max):
        page = await client.list_events(
            tenant_id=DEMO_TENANT,
            after_sequence=after_sequence,
            limit=events_page_size,
        )
        found.extend(
            event
            for event in page
            if event.hold_id in hold_ids or event.transaction_id in transaction_ids
        )
        if len(page) < events_page_size:
            break
        after_sequence = page[-1].sequence
    return found


async def run_story(
    client: Any, *, run_id: str, expiry_ttl_seconds: int, say: Any
) -> dict[str, Any]:
    """Accounts, deposit and the three negotiations; returns what the demo prints."""

    def key(step: str) -> str:
        return f"demo-{run_id}-{step}"

    buyer = await _open_or_reuse(client, BUYER, key("open-buyer"))
    seller = await _open_or_reuse(client, SELLER, key("open-seller"))
    platform = await client.ensure_platform_accounts(tenant_id=DEMO_TENANT, currency=DEMO_CURRENCY)
    say(f"accounts: {buyer.account_id}, {seller.account_id} and the platform's (tenant demo)")

    deposit = await client.deposit(
        BUYER,
        DEPOSIT_AMOUNT,
        tenant_id=DEMO_TENANT,
        idempotency_key=key("deposit"),
        external_ref=f"demo-topup-{run_id}",
    )
    say(f"deposit: {DEPOSIT_AMOUNT} {DEMO_CURRENCY} from the outside world to {BUYER}")

    # Negotiation 1: frozen, captured in part for an order, then paid out to the seller.
    order_id = f"order-{run_id.rsplit('-', 1)[-1]}"
    captured = await client.freeze(
        BUYER,
        CAPTURED_HOLD_AMOUNT,
        "NEGOTIATION",
        tenant_id=DEMO_TENANT,
        idempotency_key=key("freeze-captured"),
        ttl_seconds=LONG_TTL_SECONDS,
        payee_account_id=SELLER,
    )
    say(f"negotiation 1: froze {captured.amount} {DEMO_CURRENCY} as hold {captured.hold_id}")
    await client.capture_hold(
        captured.hold_id,
        order_id,
        tenant_id=DEMO_TENANT,
        idempotency_key=key("capture"),
        amount=CAPTURE_AMOUNT,
    )
    captured = await client.wait_for_hold(captured.hold_id, tenant_id=DEMO_TENANT)
    say(
        f"negotiation 1: captured {captured.captured} for {order_id}, released "
        f"{captured.released}, paid out to {SELLER} (finalized={captured.finalized})"
    )

    # Negotiation 2: frozen, then cancelled: the money is available again.
    released = await client.freeze(
        BUYER,
        RELEASED_HOLD_AMOUNT,
        "NEGOTIATION",
        tenant_id=DEMO_TENANT,
        idempotency_key=key("freeze-released"),
        ttl_seconds=LONG_TTL_SECONDS,
        payee_account_id=SELLER,
    )
    await client.release_hold(
        released.hold_id, tenant_id=DEMO_TENANT, idempotency_key=key("release")
    )
    released = await client.wait_for_hold(released.hold_id, tenant_id=DEMO_TENANT)
    say(f"negotiation 2: froze {released.amount} {DEMO_CURRENCY}, then released it")

    # Negotiation 3: nobody answers; the workflow's timer expires the hold.
    expired = await client.freeze(
        BUYER,
        EXPIRING_HOLD_AMOUNT,
        "NEGOTIATION",
        tenant_id=DEMO_TENANT,
        idempotency_key=key("freeze-expiring"),
        ttl_seconds=expiry_ttl_seconds,
        payee_account_id=SELLER,
    )
    say(
        f"negotiation 3: froze {expired.amount} {DEMO_CURRENCY}; waiting "
        f"{expiry_ttl_seconds}s for it to expire..."
    )
    expired = await client.wait_for_hold(expired.hold_id, tenant_id=DEMO_TENANT)
    say(f"negotiation 3: hold {expired.state}")

    holds = [captured, released, expired]
    transaction_ids = [deposit.transaction_id]
    for hold in holds:
        for transaction_id in (
            hold.freeze_transaction_id,
            hold.resolve_transaction_id,
            hold.finalize_transaction_id,
        ):
            if transaction_id:
                transaction_ids.append(transaction_id)
    journal: list[Any] = []
    for transaction_id in transaction_ids:
        transaction = await client.get_transaction(transaction_id, tenant_id=DEMO_TENANT)
        journal.extend(transaction.entries)
    journal.sort(key=lambda entry: (entry.journal_sequence, entry.entry_index))

    accounts = [buyer, seller, *sorted(platform, key=lambda account: account.account_id)]
    balances = [
        (account, await client.get_balance(account.account_id, tenant_id=DEMO_TENANT))
        for account in accounts
    ]
    events = await _run_events(client, {hold.hold_id for hold in holds}, set(transaction_ids))
    return {
        "run_id": run_id,
        "tenant_id": DEMO_TENANT,
        "balances": balances,
        "holds": holds,
        "entries": journal,
        "events": events,
    }


def _print_report(report: dict[str, Any], web_ui: str | None) -> None:
    console = stdout()
    console.print()
    console.print(
        balances_table(report["balances"], title=f"balances of tenant {report['tenant_id']}")
    )
    console.print(holds_table(report["holds"], title=f"holds of run {report['run_id']}"))
    console.print(
        entries_table(report["entries"], title=f"journal of run {report['run_id']}", compact=True)
    )
    console.print(
        events_table(
            report["events"], title=f"billing events of run {report['run_id']}", compact=True
        )
    )
    if web_ui:
        console.print(f"Web UI (holds are the hold-… workflows): [link={web_ui}]{web_ui}[/link]")


def _json_report(report: dict[str, Any], web_ui: str | None) -> dict[str, Any]:
    return {
        "run_id": report["run_id"],
        "tenant_id": report["tenant_id"],
        "balances": [
            {"account": account, "balance": balance} for account, balance in report["balances"]
        ],
        "holds": report["holds"],
        "entries": report["entries"],
        "events": report["events"],
        "web_ui": web_ui,
    }


async def run_demo(
    *,
    keep_running: bool = False,
    expiry_ttl_seconds: int = 5,
    json_mode: bool = False,
    working_directory: Path | None = None,
) -> dict[str, Any]:
    """Runs the demo end to end; returns its JSON report. Stops what it started."""
    progress = _Progress(json_mode)
    directory = working_directory or Path.cwd()
    apply_environment_defaults()
    config = ClientConfig.from_env()
    address, namespace = config.temporal_address, config.namespace
    host, port = parse_address(address)
    run_id = new_run_id()

    server: DevServer | None = None
    stop = asyncio.Event()
    worker_task: asyncio.Task[Any] | None = None
    client: Any = None
    ledger: Any = None
    try:
        if await is_reachable(address, namespace):
            progress.say(f"using the Temporal server already running on {address}")
            web_ui: str | None = ui_workflows_url(host, port + 1000, namespace)
        else:
            progress.say(f"starting the Temporal dev server on {address}...")
            state_directory = directory / STATE_DIRECTORY_NAME
            server = start_dev_server(
                address,
                namespace=namespace,
                database_path=state_directory / "temporal.db",
                log_path=state_directory / "temporal.log",
                search_attributes=hold_search_attributes(),
            )
            await wait_until_ready(address, namespace, server=server)
            web_ui = server.ui_url
        await register_search_attributes(address, namespace)

        if server is None and not os.environ.get("LEDGER_TASK_QUEUE"):
            # Someone else's worker may poll the default queue of a server we did not start,
            # possibly with another ledger database: this run's holds get a queue of their own.
            config = _with_task_queue(config, f"{config.task_queue}-demo-{run_id}")
        progress.say(
            f"ledger: {os.environ['LEDGER_DATABASE_URL']}; worker on task queue {config.task_queue}"
        )
        from ledger_db import Ledger
        from starter.client import LedgerClient
        from worker import run_worker

        # The schema first (what `compute-ledger db upgrade` does), then one ledger (one engine)
        # for the worker and the client.
        await asyncio.to_thread(upgrade, config.database_url)
        ledger = await asyncio.to_thread(Ledger.from_url, config.database_url, migrate=False)
        worker_task = asyncio.create_task(run_worker(config, stop_event=stop, ledger=ledger))
        client = await LedgerClient.connect(config, ledger=ledger)
        story = asyncio.create_task(
            run_story(
                client, run_id=run_id, expiry_ttl_seconds=expiry_ttl_seconds, say=progress.say
            )
        )
        done, _ = await asyncio.wait({story, worker_task}, return_when=asyncio.FIRST_COMPLETED)
        if story not in done:
            # The worker ended before the story did: its error is the demo's error.
            story.cancel()
            worker_task.result()
            raise RuntimeError("the worker stopped before the demo finished")
        report = story.result()

        if json_mode:
            emit(_json_report(report, web_ui), True)
        else:
            _print_report(report, web_ui)
        if keep_running:
            progress.say(
                f"keeping the server and the worker (task queue {config.task_queue}) up; "
                "Ctrl-C stops them"
            )
            loop = asyncio.get_running_loop()
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(signal_number, stop.set)
            await asyncio.wait(
                {asyncio.create_task(stop.wait()), worker_task}, return_when=asyncio.FIRST_COMPLETED
            )
        return _json_report(report, web_ui)
    finally:
        stop.set()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        if worker_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(worker_task, 30)
        if ledger is not None:
            ledger.close()
        if server is not None:
            server.stop()
            progress.say("stopped the dev server and the worker")
