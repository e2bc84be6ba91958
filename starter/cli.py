"""``compute-ledger``: the command line of the compute ledger.

Every command takes ``--json``. Success prints the result (JSON on stdout, or rich tables);
failure prints ``{"error": {"code": ..., "message": ...}}`` (JSON mode, stdout) or a message on
stderr, and exits with the status of ``starter.error_codes`` (the table the read API shares).
Every mutating command requires ``--idempotency-key``: the ledger applies a key once per tenant,
so a retried command never moves money twice. Read-only commands accept one and generate it
when omitted.

Only the hold commands (``freeze``, ``capture``, ``release``, ``hold show --workflow``) and
``worker``, ``dev``, ``demo``, ``schedules`` and ``audit --workflows`` talk to Temporal; every
other command opens the ledger database and nothing else. This module imports no more than
Typer at start-up: each command imports what it needs when it runs, so a balance read does not
pay for the Temporal SDK, Alembic or rich. Configuration: ``starter.config``.

The FinOps commands live in ``starter/cli_finops.py``, the database, API key and ``serve``
commands in ``starter/cli_admin.py``; both register themselves on :data:`app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from starter.cli_admin import register_admin
from starter.cli_finops import register_finops
from starter.config import (
    STATE_DIRECTORY_NAME,
    ClientConfig,
    apply_environment_defaults,
    default_database_url,
)
from starter.db import opened_ledger
from starter.dev import hold_search_attributes, register_search_attributes
from starter.output import (
    CliError,
    JsonOption,
    balances_table,
    emit,
    emit_line,
    entries_table,
    event_row,
    events_table,
    exit_code_for,
    hold_table,
    key_value_table,
    run_command,
    stderr,
    stdout,
)
from starter.times import parse_time

if TYPE_CHECKING:
    from ledger_db import Event, Hold
    from starter.client import LedgerClient
    from workflows.models import HoldWorkflowState

__all__ = [
    "STATE_DIRECTORY_NAME",
    "AccountOption",
    "AmountOption",
    "HoldOption",
    "IdempotencyKeyOption",
    "ReadOnlyIdempotencyKeyOption",
    "TenantOption",
    "app",
    "apply_environment_defaults",
    "client_config",
    "connected_client",
    "default_database_url",
    "hold_search_attributes",
    "main",
    "parse_duration",
    "read_only_idempotency_key",
    "register_search_attributes",
    "require_idempotency_key",
    "temporal_address",
    "temporal_namespace",
]

T = TypeVar("T")

DEFAULT_HOLD_REASON = "NEGOTIATION"
DEFAULT_TTL = "15m"
DEFAULT_SAGA_TIMEOUT = "60s"
events_poll_interval_seconds_default = 1.0


def _new_app() -> typer.Typer:
    return typer.Typer(
        name="compute-ledger",
        help="Compute ledger: accounts, holds (freeze, capture, release), journal and events.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )


app = _new_app()
account_app = typer.Typer(help="Open accounts, deposit money, show balances.", no_args_is_help=True)
hold_app = typer.Typer(help="Inspect holds.", no_args_is_help=True)
app.add_typer(account_app, name="account")
app.add_typer(hold_app, name="hold")


# ---------------------------------------------------------------------------------------------
# Options shared by the commands (FinOps commands may reuse them).
# ---------------------------------------------------------------------------------------------

TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant that owns the objects.")]
AccountOption = Annotated[str, typer.Option("--account", help="Account ID.")]
HoldOption = Annotated[str, typer.Option("--hold", help="Hold ID (as returned by freeze).")]
AmountOption = Annotated[
    str, typer.Option("--amount", help="Exact decimal amount in major units, e.g. 25.50.")
]
CurrencyCheckOption = Annotated[
    str | None,
    typer.Option(
        "--currency",
        help="Currency of --amount; refused with currency_mismatch if it is not the account's.",
    ),
]
IdempotencyKeyOption = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="Required for mutating commands: the same key never applies twice (per tenant).",
    ),
]
TimeoutOption = Annotated[
    str,
    typer.Option(
        "--timeout",
        help="How long to wait for a worker to answer (30s, 2m...); retrying with the same "
        "--idempotency-key is safe.",
    ),
]
ReadOnlyIdempotencyKeyOption = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="Accepted for uniformity; generated when omitted (this command writes nothing).",
    ),
]


# ---------------------------------------------------------------------------------------------
# Small pure helpers.
# ---------------------------------------------------------------------------------------------

_DURATION_PATTERN = re.compile(
    r"^(?:(?P<d>\d{1,6})d)?(?:(?P<h>\d{1,7})h)?(?:(?P<m>\d{1,9})m)?(?:(?P<s>\d{1,10})s)?$"
)
_SECONDS_PER_UNIT = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def parse_duration(text: str) -> int:
    """``30s``, ``15m``, ``2h``, ``1d`` or combinations such as ``1h30m`` -> whole seconds.

    Strict on purpose: units in descending order, each at most once, integers only, no spaces,
    no bare numbers (is ``30`` seconds or minutes?). Whether the value is an allowed TTL is the
    ledger's decision (``ttl_out_of_range``), not the parser's.
    """
    match = _DURATION_PATTERN.match(text) if isinstance(text, str) else None
    if not text or match is None or not any(match.groupdict().values()):
        raise CliError(
            "invalid_duration",
            f"duration {text!r} is not like 30s, 15m, 2h, 1d or 1h30m",
            duration=str(text),
        )
    return sum(
        int(value) * _SECONDS_PER_UNIT[unit]
        for unit, value in match.groupdict().items()
        if value is not None
    )


def require_idempotency_key(key: str | None) -> str:
    """The key of a mutating command; its absence is refused before anything is sent."""
    if key is None or key == "":
        raise CliError(
            "idempotency_key_required",
            "this command changes the ledger: pass --idempotency-key (a unique key per "
            "intended operation; retrying with the same key never applies it twice)",
        )
    return key


def read_only_idempotency_key(key: str | None) -> str:
    """A read-only command's key: the given one, else a fresh one (nothing is written)."""
    return key or f"cli-read-{uuid.uuid4()}"


def client_config() -> ClientConfig:
    """The client configuration from the environment (after the CLI's defaults)."""
    apply_environment_defaults()
    return ClientConfig.from_env()


def temporal_address() -> str:
    """The Temporal frontend this environment names (profile, then ``TEMPORAL_ADDRESS``)."""
    return client_config().temporal_address


def temporal_namespace() -> str:
    return client_config().namespace


async def _answered_within(awaitable: Awaitable[T], timeout: str) -> T:
    """The saga's answer, or ``worker_unavailable`` when no worker answers in time.

    A freeze, capture or release waits for a worker to run the HoldWorkflow; with none polling
    the task queue it would wait forever. Giving up is safe: the same idempotency key later
    returns the same result, and nothing is applied twice.
    """
    from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

    seconds = parse_duration(timeout)
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # Cancelling an update leaves an internal future of the SDK with a CancelledError
        # nobody reads; asyncio would print it as noise on the way out.
        _ignore_cancelled_futures(asyncio.get_running_loop())
        queue = client_config().task_queue
        raise CliError(
            "worker_unavailable",
            f"no answer within {timeout}: is a worker polling task queue {queue!r} "
            "(compute-ledger worker, or compute-ledger dev)? Retrying with the same "
            "--idempotency-key is safe.",
            task_queue=queue,
        ) from None


def _ignore_cancelled_futures(loop: asyncio.AbstractEventLoop) -> None:
    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), asyncio.CancelledError):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _normalise_currency(currency: str | None) -> str | None:
    return currency.strip().upper() if currency else None


# ---------------------------------------------------------------------------------------------
# The ledger, and the client for the commands that need Temporal.
# ---------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connected_client() -> AsyncIterator[LedgerClient]:
    """A ``LedgerClient`` on the checked ledger and a Temporal connection, closed after."""
    from starter.client import LedgerClient

    config = client_config()
    with opened_ledger() as ledger:
        client = await LedgerClient.connect(config, ledger=ledger)
        try:
            yield client
        finally:
            await client.close()


async def _check_hold_currency(
    client: LedgerClient, *, tenant_id: str, hold_id: str, currency: str | None
) -> None:
    """Refuses a capture amount whose stated currency is not the hold's (before any write)."""
    if currency is None:
        return
    from ledger_db.errors import CurrencyMismatch

    hold = await client.get_hold(hold_id, tenant_id=tenant_id)
    if hold.currency != currency:
        raise CurrencyMismatch(
            f"hold {hold_id} is in {hold.currency}, not {currency}",
            hold_currency=hold.currency,
            currency=currency,
        )


# ---------------------------------------------------------------------------------------------
# Global callback.
# ---------------------------------------------------------------------------------------------


@app.callback()
def _root() -> None:
    """Compute ledger: accounts, holds (freeze, capture, release), journal and events.

    Configuration: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, LEDGER_TASK_QUEUE,
    LEDGER_DATABASE_URL (default: SQLite in ./.compute-ledger/), NATS_URL.
    """


# ---------------------------------------------------------------------------------------------
# account open | deposit | show
# ---------------------------------------------------------------------------------------------


@account_app.command("open")
@run_command
def account_open(
    tenant: TenantOption,
    currency: Annotated[str, typer.Option("--currency", help="Currency code, e.g. USD.")],
    account: Annotated[
        str | None, typer.Option("--account", help="Account ID (generated when omitted).")
    ] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="agent, escrow, revenue or external.")
    ] = "agent",
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    overdraft_limit: Annotated[
        str, typer.Option("--overdraft-limit", help="How far below zero it may go.")
    ] = "0",
    idempotency_key: IdempotencyKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Open an account."""
    key = require_idempotency_key(idempotency_key)
    with opened_ledger() as ledger:
        opened = ledger.open_account(
            tenant_id=tenant,
            currency=currency.strip().upper(),
            idempotency_key=key,
            account_id=account,
            kind=kind,
            name=name,
            overdraft_limit=overdraft_limit,
        )
    emit(opened, json_output, title="account")


@account_app.command("deposit")
@run_command
def account_deposit(
    tenant: TenantOption,
    account: AccountOption,
    amount: AmountOption,
    currency: CurrencyCheckOption = None,
    reason: Annotated[str, typer.Option("--reason", help="LedgerEntry reason.")] = "TOP_UP",
    external_ref: Annotated[
        str | None, typer.Option("--external-ref", help="Bank/card/chain reference.")
    ] = None,
    idempotency_key: IdempotencyKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Deposit (top up) money from the outside world into an account."""
    key = require_idempotency_key(idempotency_key)
    with opened_ledger() as ledger:
        transaction = ledger.deposit(
            account,
            amount,
            tenant_id=tenant,
            idempotency_key=key,
            currency=_normalise_currency(currency),
            external_ref=external_ref,
            reason=reason,
        )
        balance = ledger.get_balance(account, tenant_id=tenant)
    result = {"transaction": transaction, "balance": balance}

    def render(_: Any) -> Any:
        from rich.console import Group

        return Group(
            entries_table(
                transaction.entries,
                title=f"deposit {transaction.transaction_id}",
                compact=True,
            ),
            key_value_table(
                {
                    "posted": f"{balance.posted} {balance.currency}",
                    "held": f"{balance.held} {balance.currency}",
                    "available": f"{balance.available} {balance.currency}",
                },
                title=f"balance of {account}",
            ),
        )

    emit(result, json_output, render=render)


@account_app.command("show")
@run_command
def account_show(
    tenant: TenantOption,
    account: Annotated[
        str | None, typer.Option("--account", help="Account ID (all accounts when omitted).")
    ] = None,
    idempotency_key: ReadOnlyIdempotencyKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show an account and its balance (posted, held, available), or all of a tenant's."""
    read_only_idempotency_key(idempotency_key)
    with opened_ledger() as ledger:
        if account is not None:
            found = ledger.get_account(tenant_id=tenant, account_id=account)
            balance = ledger.get_balance(account, tenant_id=tenant)
            emit(
                {"account": found, "balance": balance},
                json_output,
                render=lambda _: balances_table([(found, balance)], title=f"account {account}"),
            )
            return
        accounts = [item for item in ledger.list_accounts(tenant_id=tenant) if item.kind != "hold"]
        pairs = [(item, ledger.get_balance(item.account_id, tenant_id=tenant)) for item in accounts]
    emit(
        {"accounts": [{"account": item, "balance": balance} for item, balance in pairs]},
        json_output,
        render=lambda _: balances_table(pairs, title=f"accounts of {tenant}"),
    )


# ---------------------------------------------------------------------------------------------
# freeze | capture | release | hold show
# ---------------------------------------------------------------------------------------------


@app.command("freeze")
@run_command
async def freeze(
    tenant: TenantOption,
    account: AccountOption,
    amount: AmountOption,
    currency: CurrencyCheckOption = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why the money is frozen.")
    ] = DEFAULT_HOLD_REASON,
    ttl: Annotated[
        str, typer.Option("--ttl", help="Hold lifetime: 30s, 15m, 2h, 1d, 1h30m.")
    ] = DEFAULT_TTL,
    payee: Annotated[
        str | None, typer.Option("--payee", help="Account of the same tenant to pay on capture.")
    ] = None,
    order: Annotated[str | None, typer.Option("--order", help="Order ID, if known.")] = None,
    idempotency_key: IdempotencyKeyOption = None,
    timeout: TimeoutOption = DEFAULT_SAGA_TIMEOUT,
    json_output: JsonOption = False,
) -> None:
    """Freeze money on an account for a negotiation: starts a HoldWorkflow, returns the hold."""
    key = require_idempotency_key(idempotency_key)
    ttl_seconds = parse_duration(ttl)
    parse_duration(timeout)
    async with connected_client() as client:
        hold = await _answered_within(
            client.freeze(
                account,
                amount,
                reason,
                tenant_id=tenant,
                idempotency_key=key,
                ttl_seconds=ttl_seconds,
                currency=_normalise_currency(currency),
                payee_account_id=payee,
                order_id=order,
            ),
            timeout,
        )
    emit(hold, json_output, render=lambda _: hold_table(hold, title="hold frozen"))


@app.command("capture")
@run_command
async def capture(
    tenant: TenantOption,
    hold: HoldOption,
    order: Annotated[str, typer.Option("--order", help="Order ID the capture pays for.")],
    amount: Annotated[
        str | None, typer.Option("--amount", help="Partial amount (default: all of the hold).")
    ] = None,
    currency: CurrencyCheckOption = None,
    payee: Annotated[
        str | None, typer.Option("--payee", help="Payee, if not given at freeze.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until the hold is finalized (paid out).")
    ] = False,
    idempotency_key: IdempotencyKeyOption = None,
    timeout: TimeoutOption = DEFAULT_SAGA_TIMEOUT,
    json_output: JsonOption = False,
) -> None:
    """Capture a hold for an order (all or part of it); the rest is released, then paid out."""
    key = require_idempotency_key(idempotency_key)
    parse_duration(timeout)
    async with connected_client() as client:
        if currency is not None:
            await _check_hold_currency(
                client, tenant_id=tenant, hold_id=hold, currency=_normalise_currency(currency)
            )
        captured = await _answered_within(
            client.capture_hold(
                hold,
                order,
                tenant_id=tenant,
                idempotency_key=key,
                amount=amount,
                payee_account_id=payee,
            ),
            timeout,
        )
        if wait:
            captured = await _answered_within(client.wait_for_hold(hold, tenant_id=tenant), timeout)
    emit(captured, json_output, render=lambda _: hold_table(captured, title="hold captured"))


@app.command("release")
@run_command
async def release(
    tenant: TenantOption,
    hold: HoldOption,
    idempotency_key: IdempotencyKeyOption = None,
    timeout: TimeoutOption = DEFAULT_SAGA_TIMEOUT,
    json_output: JsonOption = False,
) -> None:
    """Release a hold: its money is available again."""
    key = require_idempotency_key(idempotency_key)
    parse_duration(timeout)
    async with connected_client() as client:
        released = await _answered_within(
            client.release_hold(hold, tenant_id=tenant, idempotency_key=key), timeout
        )
    emit(released, json_output, render=lambda _: hold_table(released, title="hold released"))


@app.command("extend")
@run_command
async def extend(
    tenant: TenantOption,
    hold: HoldOption,
    ttl: Annotated[
        str,
        typer.Option("--ttl", help="New lifetime from now: 30s, 15m, 2h, 1d (later than today's)."),
    ],
    idempotency_key: IdempotencyKeyOption = None,
    timeout: TimeoutOption = DEFAULT_SAGA_TIMEOUT,
    json_output: JsonOption = False,
) -> None:
    """Move an active hold's expiry later; its workflow's expiry timer follows."""
    key = require_idempotency_key(idempotency_key)
    ttl_seconds = parse_duration(ttl)
    parse_duration(timeout)
    async with connected_client() as client:
        extended = await _answered_within(
            client.extend_hold(
                hold, tenant_id=tenant, idempotency_key=key, ttl_seconds=ttl_seconds
            ),
            timeout,
        )
    emit(extended, json_output, render=lambda _: hold_table(extended, title="hold extended"))


@app.command("retry-payout")
@run_command
async def retry_payout(
    tenant: TenantOption,
    hold: HoldOption,
    idempotency_key: IdempotencyKeyOption = None,
    timeout: TimeoutOption = DEFAULT_SAGA_TIMEOUT,
    json_output: JsonOption = False,
) -> None:
    """Pay out a captured hold whose payout was refused (phase payout_failed), once the cause
    is mended (e.g. the payee's account reopened)."""
    key = require_idempotency_key(idempotency_key)
    parse_duration(timeout)
    async with connected_client() as client:
        paid = await _answered_within(
            client.retry_payout(hold, tenant_id=tenant, idempotency_key=key), timeout
        )
    emit(paid, json_output, render=lambda _: hold_table(paid, title="hold paid out"))


@hold_app.command("show")
@run_command
def hold_show(
    tenant: TenantOption,
    hold: HoldOption,
    workflow: Annotated[
        bool,
        typer.Option(
            "--workflow",
            help="Also ask the hold's HoldWorkflow for its state (needs Temporal).",
        ),
    ] = False,
    idempotency_key: ReadOnlyIdempotencyKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a hold as the ledger recorded it (and, with --workflow, as its workflow sees it).

    With --workflow the JSON is ``{"hold": ..., "workflow": ...}``; without it, the hold.
    """
    read_only_idempotency_key(idempotency_key)
    if workflow:
        hold_state = asyncio.run(_hold_and_workflow(tenant, hold))
        found, state = hold_state
        emit(
            {"hold": found, "workflow": state},
            json_output,
            render=lambda _: hold_table(found, title=f"hold (workflow phase: {state.phase})"),
        )
        return
    with opened_ledger() as ledger:
        found = ledger.get_hold(hold, tenant_id=tenant)
    emit(found, json_output, render=lambda _: hold_table(found, title="hold"))


async def _hold_and_workflow(tenant_id: str, hold_id: str) -> tuple[Hold, HoldWorkflowState]:
    async with connected_client() as client:
        found = await client.get_hold(hold_id, tenant_id=tenant_id)
        return found, await client.hold_state(hold_id, tenant_id=tenant_id)


# ---------------------------------------------------------------------------------------------
# entries | events | relay
# ---------------------------------------------------------------------------------------------


@app.command("entries")
@run_command
def entries(
    tenant: TenantOption,
    account: AccountOption,
    from_time: Annotated[
        str | None, typer.Option("--from", help="ISO 8601 time, inclusive.")
    ] = None,
    to_time: Annotated[str | None, typer.Option("--to", help="ISO 8601 time, exclusive.")] = None,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="next_cursor of the previous page.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Page size.")] = 100,
    idempotency_key: ReadOnlyIdempotencyKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """List an account's journal entries in journal order (one page; --cursor for the next)."""
    read_only_idempotency_key(idempotency_key)
    with opened_ledger() as ledger:
        page = ledger.list_ledger_entries(
            account,
            parse_time(from_time, "--from"),
            parse_time(to_time, "--to"),
            tenant_id=tenant,
            cursor=cursor,
            limit=limit,
        )

    def render(_: Any) -> Any:
        from rich.console import Group

        parts: list[Any] = [entries_table(page.entries, title=f"journal entries of {account}")]
        if page.next_cursor:
            parts.append(f"more: --cursor {page.next_cursor}")
        return Group(*parts)

    emit(page, json_output, render=render)


@app.command("events")
@run_command
async def events(
    tenant: TenantOption,
    after: Annotated[
        int, typer.Option("--after", min=0, help="Only events after this outbox sequence.")
    ] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Page size.")] = 100,
    unsent: Annotated[bool, typer.Option("--unsent", help="Only events not yet sent.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between polls with --follow.")
    ] = events_poll_interval_seconds_default,
    idempotency_key: ReadOnlyIdempotencyKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """List billing events from the outbox (the event log); --follow streams new ones.

    With --json and --follow, each event is one JSON document per line.
    """
    read_only_idempotency_key(idempotency_key)
    with opened_ledger() as ledger:

        async def page(after_sequence: int) -> list[Event]:
            return await asyncio.to_thread(
                ledger.list_events,
                tenant_id=tenant,
                after_sequence=after_sequence,
                limit=limit,
                unsent_only=unsent,
            )

        if not follow:
            found = await page(after)
            last_sequence = found[-1].sequence if found else after
            emit(
                {"events": found, "last_sequence": last_sequence},
                json_output,
                render=lambda _: events_table(found),
            )
            return
        await _follow_events(
            page,
            after_sequence=after,
            limit=limit,
            interval_seconds=interval,
            json_mode=json_output,
        )


async def _follow_events(
    page: Any,
    *,
    after_sequence: int,
    limit: int,
    interval_seconds: float,
    json_mode: bool,
) -> None:
    """Polls the outbox by keyset (sequence) and prints each new event once, until Ctrl-C."""
    stop = asyncio.Event()
    _stop_on_signals(stop)
    if not json_mode:
        stderr().print(f"following events after #{after_sequence} (Ctrl-C stops)")
    while not stop.is_set():
        found = await page(after_sequence)
        for event in found:
            if json_mode:
                emit_line(event)
            else:
                stdout().print("  ".join(cell for cell in event_row(event) if cell))
            after_sequence = event.sequence
        if len(found) < limit:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)


def _stop_on_signals(stop: asyncio.Event) -> None:
    """Sets ``stop`` on SIGINT/SIGTERM so a foreground command ends cleanly."""
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal_number, stop.set)


@app.command("relay")
@run_command
async def relay(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's events.")
    ] = None,
    idempotency_key: ReadOnlyIdempotencyKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send the outbox events left unsent (e.g. after a crash or a NATS outage) to NATS.

    Safe to repeat: consumers dedupe by event ID, so it needs no idempotency key.
    """
    read_only_idempotency_key(idempotency_key)
    if not os.environ.get("NATS_URL"):
        raise CliError(
            "relay_unavailable", "NATS_URL is not set: without a bus the outbox is the event log"
        )
    from activities.events import NatsSettings, relay_outbox

    with opened_ledger() as ledger:
        url = ledger.engine.url.render_as_string(hide_password=False)
    sent = await relay_outbox(database_url=url, nats=NatsSettings.from_env(), tenant_id=tenant)
    emit({"sent": sent}, json_output, title="relay")


# ---------------------------------------------------------------------------------------------
# worker | dev | demo
# ---------------------------------------------------------------------------------------------


async def _run_worker_until(stop: asyncio.Event, config: Any) -> None:
    from worker import run_worker

    await run_worker(config, stop_event=stop)


@app.command("worker")
@run_command
async def worker_command(json_output: JsonOption = False) -> None:
    """Run a worker for every workflow and activity, in the foreground (Ctrl-C stops it).

    It first brings the ledger's schema up to date (``db upgrade``).
    """
    from starter.db import upgrade

    config = client_config()
    upgrade()
    stop = asyncio.Event()
    _stop_on_signals(stop)
    if json_output:
        emit_line({"worker": "running", "address": config.temporal_address})
    else:
        stderr().print(
            f"worker polling {config.temporal_address} (namespace {config.namespace}); "
            "Ctrl-C stops it"
        )
    await _run_worker_until(stop, config)
    if json_output:
        emit_line({"worker": "stopped"})


@app.command("dev")
@run_command
async def dev_command(
    ui: Annotated[bool, typer.Option("--ui/--headless", help="Serve the Temporal Web UI.")] = True,
    json_output: JsonOption = False,
) -> None:
    """Run the Temporal dev server, a worker and the SQLite ledger, in the foreground.

    The dev server keeps its state in ./.compute-ledger/temporal.db; Ctrl-C stops everything.
    It first brings the ledger's schema up to date (``db upgrade``).
    """
    from pathlib import Path

    from starter.db import upgrade
    from starter.dev import start_dev_server, wait_until_ready

    config = client_config()
    upgrade()
    address, namespace = config.temporal_address, config.namespace
    state_directory = Path.cwd() / STATE_DIRECTORY_NAME
    server = start_dev_server(
        address,
        namespace=namespace,
        database_path=state_directory / "temporal.db",
        log_path=state_directory / "temporal.log",
        ui=ui,
        search_attributes=hold_search_attributes(),
    )
    stop = asyncio.Event()
    try:
        await wait_until_ready(address, namespace, server=server)
        await register_search_attributes(address, namespace)
        _stop_on_signals(stop)
        details = {
            "temporal_address": address,
            "namespace": namespace,
            "web_ui": server.ui_url,
            "ledger_database_url": os.environ["LEDGER_DATABASE_URL"],
            "temporal_log": str(server.log_path),
        }
        if json_output:
            emit_line({"dev": "running", **details})
        else:
            stdout().print(key_value_table(details, title="compute-ledger dev"))
            stdout().print("Ctrl-C stops the worker and the server.")
        worker_task = asyncio.create_task(_run_worker_until(stop, config))
        server_task = asyncio.create_task(asyncio.to_thread(server.process.wait))
        done, _ = await asyncio.wait(
            {worker_task, server_task}, return_when=asyncio.FIRST_COMPLETED
        )
        stop.set()
        if server_task in done:
            await _settle(worker_task)
            raise CliError(
                "temporal_unavailable",
                f"the dev server exited with status {server.process.returncode}: "
                f"{server.log_tail()[-800:]}",
            )
        worker_task.result()
    finally:
        stop.set()
        server.stop()
    if json_output:
        emit_line({"dev": "stopped"})
    else:
        stderr().print("stopped")


async def _settle(task: asyncio.Task[Any], timeout_seconds: float = 30.0) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(task, timeout_seconds)


@app.command("demo")
@run_command
async def demo_command(
    keep_running: Annotated[
        bool,
        typer.Option("--keep-running", help="Leave the server and worker up until Ctrl-C."),
    ] = False,
    expiry_ttl: Annotated[
        str, typer.Option("--expiry-ttl", help="TTL of the hold left to expire.")
    ] = "5s",
    json_output: JsonOption = False,
) -> None:
    """Run the whole story on embedded defaults: accounts, three negotiations, the journal."""
    from starter.demo import run_demo

    await run_demo(
        keep_running=keep_running,
        expiry_ttl_seconds=parse_duration(expiry_ttl),
        json_mode=json_output,
    )


register_finops(app)
register_admin(app)


# ---------------------------------------------------------------------------------------------
# Entry point.
# ---------------------------------------------------------------------------------------------


def _command_line_error_classes() -> tuple[type[BaseException], ...]:
    """The exception classes of command-line mistakes, across Typer's click flavours."""
    classes: list[type[BaseException]] = []
    typer_exception = getattr(typer, "TyperException", None)
    if isinstance(typer_exception, type):
        classes.append(typer_exception)
    with contextlib.suppress(ImportError):
        import click

        classes.append(click.exceptions.ClickException)
    return tuple(classes)


def _app_for(arguments: Sequence[str]) -> typer.Typer:
    """The application with only the command (or group) that ``arguments`` name.

    Typer reads the signature of every command it registers, annotations evaluated and all:
    for the whole application that costs more than a ledger read itself. The root takes no
    option but ``--help``, so the first argument that is not an option names the command; any
    other case (no command, an unknown one) gets the whole application and its messages.
    """
    name = next((argument for argument in arguments if not argument.startswith("-")), None)
    commands = [command for command in app.registered_commands if command.name == name]
    groups = [group for group in app.registered_groups if group.name == name]
    if name is None or not (commands or groups):
        return app
    narrowed = _new_app()
    narrowed.registered_callback = app.registered_callback
    narrowed.registered_commands = commands
    narrowed.registered_groups = groups
    return narrowed


def main(argv: Sequence[str] | None = None) -> None:
    """``compute-ledger``: with --json even command-line mistakes follow the error contract."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        _run(arguments)
        status: int | str | None = 0
    except SystemExit as exiting:
        status = exiting.code
    if argv is None and "temporalio.bridge.runtime" in sys.modules:
        _exit_now(status)
    sys.exit(status)


def _run(arguments: list[str]) -> None:
    chosen = _app_for(arguments)
    if "--json" not in arguments:
        chosen(args=arguments, prog_name="compute-ledger")
        return
    command = typer.main.get_command(chosen)
    try:
        result = command.main(args=arguments, prog_name="compute-ledger", standalone_mode=False)
    except typer.Abort:
        _fail_plain("interrupted", "interrupted")
    except _command_line_error_classes() as error:
        format_message = getattr(error, "format_message", None)
        message = format_message() if callable(format_message) else str(error)
        _fail_plain("usage_error", message)
    sys.exit(result if isinstance(result, int) else 0)


def _exit_now(status: int | str | None) -> None:
    """Ends the process without the interpreter's teardown, once its output is flushed.

    The Temporal SDK's Rust runtime keeps threads that may touch the interpreter while it
    finalizes, which aborts the process (SIGABRT, temporalio/sdk-python#300) after a command
    has already printed its result, often after a failed connect: the exit status would lie.
    Everything this program writes is flushed first; nothing else is left to tear down.
    """
    import logging

    if isinstance(status, str):
        sys.stderr.write(status + "\n")
        status = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(status or 0)


def _fail_plain(code: str, message: str) -> None:
    sys.stdout.write(_json_text({"error": {"code": code, "message": message}}) + "\n")
    sys.stdout.flush()
    sys.exit(exit_code_for(code))


def _json_text(data: Any) -> str:
    import json

    return json.dumps(data, ensure_ascii=False)


if __name__ == "__main__":
    main()
