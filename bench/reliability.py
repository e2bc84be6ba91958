"""Reliability suite: holds under load through the real client while a part of the stack fails,
then the books, the journal and the bus are checked: nothing lost, nothing applied twice.

    .venv/bin/python -m bench.reliability                      # every scenario, 200 holds at 50
    .venv/bin/python -m bench.reliability --scenario worker_kill --holds 30 --concurrency 10

Each scenario starts its own stack (``bench.reliability_stack``): a Temporal dev server on its
own port and database file, a private ``nats-server -js``, a ledger database (a fresh one on the
shared PostgreSQL, or a private cluster for ``postgres_restart``) and ``worker.py`` processes.
Callers (``starter.client.LedgerClient``) run ``freeze -> capture_hold | release_hold ->
wait_for_hold`` ``concurrency`` at a time; on a transport error (``ledger_unavailable``, an RPC
error, a timeout) a caller sends the same request again under the same idempotency key, as a real
caller does. When a third of the holds have ended the fault is injected:

1. ``worker_kill``: the worker SIGKILLed, restarted 2 s later;
2. ``temporal_kill``: the dev server SIGKILLed, restarted 2 s later on its database file;
3. ``postgres_restart``: the private PostgreSQL stopped ``-m immediate`` (crash), 5 s down;
4. ``nats_outage``: nats-server SIGKILLed, 10 s down, restarted on its store;
5. ``two_workers``: no fault; two worker processes on one task queue and one ledger;
6. ``worker_sigterm``: SIGTERM to the worker; it drains and exits; a new worker takes over.

Then, per scenario: holds attempted / finalized exactly once / lost / duplicated (journal
transactions per hold: one freeze, then one capture and one finalize, or one release), money
conserved (the tenant's balances sum to zero, nothing held, escrow empty, buyers down by exactly
the captures, payees plus fees up by them), ``verify_journal()`` problems, journal transactions
expected vs found, billing events expected vs in the outbox vs delivered on JetStream (a consumer
from the stream's start counting event IDs; duplicates on the wire), recovery time (the fault to
the first freeze or capture/release sent after it completing), client retries and errors, and
abandoned work in the hold histories (workflow task timeouts). A table on stdout, JSON and a
Markdown table under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import itertools
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from bench.reliability_stack import (
    Nats,
    PrivatePostgres,
    Temporal,
    WorkerProcess,
    clean_environment,
    shared_postgres_database,
)

RESULTS_DIRECTORY = Path(__file__).resolve().parent / "results"
SCENARIOS = (
    "worker_kill",
    "temporal_kill",
    "postgres_restart",
    "nats_outage",
    "two_workers",
    "worker_sigterm",
)
FAULT_AT_FRACTION = 1 / 3
OUTAGE_SECONDS = {
    "worker_kill": 2.0,
    "temporal_kill": 2.0,
    "postgres_restart": 5.0,
    "nats_outage": 10.0,
}
BUYERS = 10
PAYEES = 5
DEPOSIT_MINOR = 10_000_000  # 100 000.00 USD per buyer
TTL_SECONDS = 900
HOLD_DEADLINE_SECONDS = 300.0
RELAY_DRAIN_SECONDS = 120.0
# The worker's graceful shutdown (worker.GRACEFUL_SHUTDOWN); the scenario reads it from there.
SIGTERM_WAIT_SECONDS = 60.0
TENANT_PREFIX = "rel"
EXPECTED_KINDS = {
    "capture": collections.Counter({"freeze": 1, "capture": 1, "finalize": 1}),
    "release": collections.Counter({"freeze": 1, "release": 1}),
}
EXPECTED_EVENTS = {
    "capture": collections.Counter(
        {"INTENT_CREATED": 1, "ORDER_CREATED": 1, "PAYMENT_SUCCEEDED": 1}
    ),
    "release": collections.Counter({"INTENT_CREATED": 1, "HOLD_RELEASED": 1}),
}

T = TypeVar("T")


def _minor_text(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


@dataclass
class HoldRun:
    """One caller's negotiation: what it asked for and what it saw."""

    index: int
    path: str
    buyer: str
    payee: str
    amount_minor: int
    capture_minor: int | None  # None: capture everything
    freeze_key: str
    hold_id: str = ""
    done: bool = False
    final_state: str | None = None
    finalized: bool = False
    failure: str | None = None
    retries: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    # (operation, issued monotonic, completed monotonic) of each successful call.
    calls: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def captured_minor(self) -> int:
        if self.path != "capture":
            return 0
        return self.amount_minor if self.capture_minor is None else self.capture_minor


class GaveUp(Exception):
    """A caller's deadline passed while it was still retrying."""


def plan_holds(run_id: str, holds: int) -> list[HoldRun]:
    plan = []
    for index in range(holds):
        amount = 100 + (index % 50) * 37
        path = "capture" if index % 2 == 0 else "release"
        plan.append(
            HoldRun(
                index=index,
                path=path,
                buyer=f"buyer-{index % BUYERS}",
                payee=f"payee-{index % PAYEES}",
                amount_minor=amount,
                capture_minor=amount // 2 if index % 4 == 2 else None,
                freeze_key=f"{run_id}-{index}-freeze",
            )
        )
    return plan


def error_kind(error: BaseException) -> str:
    """``ledger_unavailable`` (the client's typed outage answer), ``transport`` (an RPC error or
    a timeout of the Temporal client) or ``raw``: anything else, which the client promises never
    to raise (every failure a ``LedgerError``)."""
    from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
    from temporalio.service import RPCError

    from ledger_db.errors import LedgerUnavailable

    if isinstance(error, LedgerUnavailable):
        return "ledger_unavailable"
    if isinstance(error, RPCError | WorkflowUpdateRPCTimeoutOrCancelledError | TimeoutError):
        return "transport"
    return "raw"


def _is_transient(error: BaseException) -> bool:
    from ledger_db.errors import LedgerError, LedgerUnavailable

    if isinstance(error, LedgerUnavailable):
        return True
    # A business refusal is an answer, not a transport failure: the caller does not resend.
    return not isinstance(error, LedgerError)


async def _retrying(
    hold: HoldRun, operation: str, call: Callable[[], Awaitable[T]], deadline: float
) -> T:
    """``call`` until it answers, resending the same request (same key) on transport errors."""
    backoff = 0.2
    while True:
        issued = time.monotonic()
        try:
            result = await call()
        except Exception as error:
            if not _is_transient(error):
                raise
            code = getattr(error, "code", None)
            label = f"{type(error).__name__}{f'({code})' if code else ''}"
            hold.errors[f"{operation}:{error_kind(error)}:{label}"] += 1
            hold.retries += 1
            if time.monotonic() > deadline:
                raise GaveUp(f"{operation}: {type(error).__name__}: {error}") from error
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
            continue
        hold.calls.append((operation, issued, time.monotonic()))
        return result


async def negotiate(client: Any, tenant_id: str, hold: HoldRun) -> None:
    deadline = time.monotonic() + HOLD_DEADLINE_SECONDS
    try:
        frozen = await _retrying(
            hold,
            "freeze",
            lambda: client.freeze(
                hold.buyer,
                _minor_text(hold.amount_minor),
                "RELIABILITY",
                tenant_id=tenant_id,
                idempotency_key=hold.freeze_key,
                ttl_seconds=TTL_SECONDS,
                payee_account_id=hold.payee,
            ),
            deadline,
        )
        hold.hold_id = frozen.hold_id
        if hold.path == "capture":
            amount = None if hold.capture_minor is None else _minor_text(hold.capture_minor)
            await _retrying(
                hold,
                "capture",
                lambda: client.capture_hold(
                    frozen.hold_id,
                    f"order-{hold.freeze_key}",
                    tenant_id=tenant_id,
                    idempotency_key=f"{hold.freeze_key}-capture",
                    amount=amount,
                ),
                deadline,
            )
        else:
            await _retrying(
                hold,
                "release",
                lambda: client.release_hold(
                    frozen.hold_id,
                    tenant_id=tenant_id,
                    idempotency_key=f"{hold.freeze_key}-release",
                ),
                deadline,
            )
        final = await _retrying(
            hold,
            "wait",
            lambda: client.wait_for_hold(
                frozen.hold_id, tenant_id=tenant_id, timeout=timedelta(seconds=60)
            ),
            deadline,
        )
        hold.final_state = str(final.state)
        hold.finalized = bool(final.finalized)
        hold.done = True
    except GaveUp as error:
        hold.failure = f"gave up: {error}"
    except Exception as error:
        code = getattr(error, "code", None)
        hold.failure = f"{type(error).__name__}({code}): {error}"


# ---------------------------------------------------------------------------------------------
# One scenario.
# ---------------------------------------------------------------------------------------------


@dataclass
class Stack:
    scratch: Path
    temporal: Temporal
    nats: Nats
    database_url: str
    task_queue: str
    workers: list[WorkerProcess]
    postgres: PrivatePostgres | None = None

    def worker(self, name: str) -> WorkerProcess:
        environment = clean_environment(
            TEMPORAL_ADDRESS=self.temporal.address,
            TEMPORAL_NAMESPACE="default",
            LEDGER_DATABASE_URL=self.database_url,
            LEDGER_TASK_QUEUE=self.task_queue,
            NATS_URL=self.nats.url,
            LEDGER_RELAY_INTERVAL_SECONDS="1",
        )
        worker = WorkerProcess(name=name, directory=self.scratch, environment=environment)
        self.workers.append(worker)
        return worker


async def _fund(client: Any, tenant_id: str, run_id: str) -> int:
    await client.ensure_platform_accounts(tenant_id=tenant_id, currency="USD")
    deposits = 0
    for index in range(BUYERS):
        await client.open_account(
            tenant_id=tenant_id,
            currency="USD",
            idempotency_key=f"{run_id}-open-buyer-{index}",
            account_id=f"buyer-{index}",
        )
        await client.deposit(
            f"buyer-{index}",
            _minor_text(DEPOSIT_MINOR),
            tenant_id=tenant_id,
            idempotency_key=f"{run_id}-deposit-{index}",
        )
        deposits += 1
    for index in range(PAYEES):
        await client.open_account(
            tenant_id=tenant_id,
            currency="USD",
            idempotency_key=f"{run_id}-open-payee-{index}",
            account_id=f"payee-{index}",
        )
    return deposits


@dataclass
class Fault:
    """What the scenario did to the stack, and when (monotonic seconds)."""

    name: str
    injected_at: float | None = None
    restored_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


async def _inject(scenario: str, stack: Stack, fault: Fault, outage: float | None) -> None:
    outage = OUTAGE_SECONDS.get(scenario, 0.0) if outage is None else outage
    if scenario == "worker_kill":
        worker = stack.workers[0]
        fault.injected_at = time.monotonic()
        await asyncio.to_thread(worker.kill)
        fault.details["exit_status"] = worker.exits[-1]
        await asyncio.sleep(outage)
        await asyncio.to_thread(worker.start)
        await asyncio.to_thread(worker.wait_ready)
    elif scenario == "temporal_kill":
        fault.injected_at = time.monotonic()
        await asyncio.to_thread(stack.temporal.kill)
        await asyncio.sleep(outage)
        await stack.temporal.start()
    elif scenario == "postgres_restart":
        assert stack.postgres is not None
        fault.injected_at = time.monotonic()
        await asyncio.to_thread(stack.postgres.crash_stop)
        await asyncio.sleep(outage)
        await asyncio.to_thread(stack.postgres.start)
    elif scenario == "nats_outage":
        fault.injected_at = time.monotonic()
        await asyncio.to_thread(stack.nats.kill)
        await asyncio.sleep(outage)
        await asyncio.to_thread(stack.nats.start)
    elif scenario == "worker_sigterm":
        from worker import GRACEFUL_SHUTDOWN

        worker = stack.workers[0]
        fault.injected_at = time.monotonic()
        seconds, status = await asyncio.to_thread(worker.terminate, SIGTERM_WAIT_SECONDS)
        fault.details.update(
            exit_seconds=round(seconds, 2),
            exit_status=status,
            grace_seconds=GRACEFUL_SHUTDOWN.total_seconds(),
            exited_within_grace=status is not None
            and seconds <= GRACEFUL_SHUTDOWN.total_seconds() + 2.0,
        )
        replacement = stack.worker("b")
        await asyncio.to_thread(replacement.start)
        await asyncio.to_thread(replacement.wait_ready)
    fault.restored_at = time.monotonic()


async def drive(
    client: Any,
    tenant_id: str,
    plan: list[HoldRun],
    concurrency: int,
    on_fraction: tuple[float, Callable[[], Awaitable[None]]] | None,
) -> float:
    """Runs the plan ``concurrency`` at a time; calls the fault once ``fraction`` have ended."""
    queue: asyncio.Queue[HoldRun] = asyncio.Queue()
    for hold in plan:
        queue.put_nowait(hold)
    ended = 0
    trigger = asyncio.Event()
    threshold = int(len(plan) * on_fraction[0]) if on_fraction else None

    async def lane() -> None:
        nonlocal ended
        while True:
            try:
                hold = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await negotiate(client, tenant_id, hold)
            ended += 1
            if threshold is not None and ended >= threshold:
                trigger.set()

    fault_task: asyncio.Task[None] | None = None
    if on_fraction is not None:

        async def fire() -> None:
            await trigger.wait()
            await on_fraction[1]()

        fault_task = asyncio.create_task(fire())
    started = time.monotonic()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    seconds = time.monotonic() - started
    if fault_task is not None:
        if not fault_task.done():
            trigger.set()
        await fault_task
    return seconds


async def _wait_for_relay(client: Any, tenant_id: str) -> tuple[int, float]:
    """Waits until the outbox has no unsent event; returns (unsent left, seconds waited)."""
    started = time.monotonic()
    while True:
        try:
            unsent = await client.list_events(tenant_id=tenant_id, unsent_only=True, limit=1000)
        except Exception:
            unsent = [None]
        if not unsent or time.monotonic() - started > RELAY_DRAIN_SECONDS:
            return len(unsent), time.monotonic() - started
        await asyncio.sleep(0.5)


async def read_stream(nats_url: str, tenant_id: str) -> collections.Counter[str]:
    """Every message of the tenant's subjects from the stream's start: event ID -> count."""
    import nats

    from activities.events import NatsSettings, tenant_subjects

    settings = NatsSettings(url=nats_url)
    connection = await nats.connect(nats_url, connect_timeout=5)
    seen: collections.Counter[str] = collections.Counter()
    try:
        jetstream = connection.jetstream()
        info = await jetstream.stream_info(settings.stream)
        total = info.state.messages
        subscription = await jetstream.subscribe(
            tenant_subjects(settings, tenant_id), ordered_consumer=True
        )
        received = 0
        idle_deadline = time.monotonic() + 10
        while received < total and time.monotonic() < idle_deadline:
            try:
                message = await subscription.next_msg(timeout=1)
            except Exception:
                continue
            received += 1
            idle_deadline = time.monotonic() + 5
            event_id = (message.headers or {}).get("Nats-Msg-Id") or json.loads(message.data)[
                "event_id"
            ]
            seen[event_id] += 1
        await subscription.unsubscribe()
    finally:
        await connection.close()
    return seen


async def history_shape(
    temporal: Any, workflow_ids: list[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """Across the holds' (latest) workflow runs: statuses and abandoned or failed tasks; and the
    workflow tasks each worker identity (``pid@host``) started, which says exactly who did the
    work (a killed worker's metrics die with it, its history events stay)."""
    from temporalio.api.enums.v1 import EventType, TimeoutType

    totals: collections.Counter[str] = collections.Counter()
    identities: collections.Counter[str] = collections.Counter()
    semaphore = asyncio.Semaphore(20)

    async def one(workflow_id: str) -> None:
        async with semaphore:
            handle = temporal.get_workflow_handle(workflow_id)
            try:
                description = await handle.describe()
                history = await handle.fetch_history()
            except Exception as error:
                totals[f"unreadable:{type(error).__name__}"] += 1
                return
            status = description.status.name if description.status else "UNKNOWN"
            totals[f"status_{status.lower()}"] += 1
            for event in history.events:
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    identities[event.workflow_task_started_event_attributes.identity] += 1
                elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                    totals["workflow_task_timeouts"] += 1
                    # SCHEDULE_TO_START: a sticky queue nobody polled (its worker gone or too
                    # busy); START_TO_CLOSE: a task a worker took and never completed.
                    kind = TimeoutType.Name(
                        event.workflow_task_timed_out_event_attributes.timeout_type
                    )
                    totals[
                        f"workflow_task_timeouts_{kind.removeprefix('TIMEOUT_TYPE_').lower()}"
                    ] += 1
                elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    totals["workflow_task_failures"] += 1
                elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
                    totals["activity_timeouts"] += 1
                elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                    totals["regular_activities"] += 1

    await asyncio.gather(*(one(workflow_id) for workflow_id in workflow_ids))
    return dict(sorted(totals.items())), dict(identities)


async def check_books(
    client: Any, tenant_id: str, plan: list[HoldRun], deposits: int
) -> dict[str, Any]:
    """Per hold its journal transactions and outbox events; the tenant's balances; the journal."""
    from ledger_db.ids import derive_hold_id

    finalized_once = lost = duplicated = wrong_state = 0
    problems: list[str] = []
    expected_transactions = deposits
    found_transactions = 0
    events_expected: set[str] = set()
    events_wrong = 0
    outbox = await _all_events(client, tenant_id)
    events_by_hold: dict[str, list[Any]] = collections.defaultdict(list)
    for event in outbox:
        if event.hold_id:
            events_by_hold[event.hold_id].append(event)
    for hold in plan:
        hold_id = hold.hold_id or derive_hold_id(tenant_id, hold.freeze_key)
        transactions = await asyncio.to_thread(
            functools.partial(
                client.ledger.list_transactions, tenant_id=tenant_id, hold_id=hold_id, limit=100
            )
        )
        kinds = collections.Counter(str(t.kind) for t in transactions)
        found_transactions += sum(kinds.values())
        expected = EXPECTED_KINDS[hold.path]
        expected_transactions += sum(expected.values())
        if any(kinds[kind] > count for kind, count in expected.items()) or set(kinds) - set(
            expected
        ):
            duplicated += 1
            problems.append(f"hold {hold.index} {hold_id}: journal {dict(kinds)}")
        elif kinds != expected:
            lost += 1
            problems.append(f"hold {hold.index} {hold_id}: journal {dict(kinds)} (missing)")
        else:
            ledger_hold = await client.get_hold(hold_id, tenant_id=tenant_id)
            want_state = "captured" if hold.path == "capture" else "released"
            ok = str(ledger_hold.state) == want_state and (
                hold.path != "capture" or ledger_hold.finalized
            )
            ok = ok and ledger_hold.captured_minor == hold.captured_minor
            if ok:
                finalized_once += 1
            else:
                wrong_state += 1
                problems.append(
                    f"hold {hold.index} {hold_id}: state {ledger_hold.state}, "
                    f"finalized {ledger_hold.finalized}, captured {ledger_hold.captured_minor}"
                )
        got_events = collections.Counter(event.type for event in events_by_hold.get(hold_id, []))
        if got_events != EXPECTED_EVENTS[hold.path]:
            events_wrong += 1
            problems.append(f"hold {hold.index} {hold_id}: outbox {dict(got_events)}")
        events_expected.update(event.event_id for event in events_by_hold.get(hold_id, []))
    # Money.
    accounts = await client.list_accounts(tenant_id=tenant_id, include_internal=False)
    balances = {}
    for account in accounts:
        balance = await client.get_balance(account.account_id, tenant_id=tenant_id)
        balances[account.account_id] = (str(account.kind), balance.posted_minor, balance.held_minor)
    captured = sum(hold.captured_minor for hold in plan)
    buyers = sum(
        posted for account, (_, posted, _) in balances.items() if account.startswith("buyer")
    )
    payees_and_fees = sum(
        posted
        for account, (kind, posted, _) in balances.items()
        if account.startswith("payee") or kind == "revenue"
    )
    escrow = sum(posted for _, (kind, posted, _) in balances.items() if kind == "escrow")
    held = sum(held for (_, _, held) in balances.values())
    total = sum(posted for _, (_, posted, _) in balances.items())
    money = {
        "sum_of_balances_minor": total,
        "held_minor": held,
        "escrow_minor": escrow,
        "buyers_minor": buyers,
        "buyers_expected_minor": BUYERS * DEPOSIT_MINOR - captured,
        "payees_and_fees_minor": payees_and_fees,
        "payees_and_fees_expected_minor": captured,
    }
    money["conserved"] = (
        total == 0
        and held == 0
        and escrow == 0
        and buyers == money["buyers_expected_minor"]
        and payees_and_fees == captured
    )
    # The tenant's whole journal (deposits, holds; account records move no money).
    all_transactions = 0
    after = 0
    while True:
        page = await asyncio.to_thread(
            functools.partial(
                client.ledger.list_transactions,
                tenant_id=tenant_id,
                after_sequence=after,
                limit=1000,
            )
        )
        if not page:
            break
        all_transactions += sum(
            1 for t in page if str(t.kind) not in {"account_open", "account_change"}
        )
        after = page[-1].journal_sequence
    verify = await asyncio.to_thread(client.ledger.verify_journal)
    return {
        "finalized_once": finalized_once,
        "lost": lost,
        "duplicated": duplicated,
        "wrong_state": wrong_state,
        "money": money,
        "verify_journal_problems": len(verify),
        "verify_journal_sample": [str(problem) for problem in verify[:5]],
        "journal_transactions_expected": expected_transactions,
        "journal_transactions_found": all_transactions,
        "hold_transactions_found": found_transactions,
        "events_expected": sum(sum(EXPECTED_EVENTS[hold.path].values()) for hold in plan),
        "events_in_outbox": len(events_expected),
        "holds_with_wrong_events": events_wrong,
        "event_ids": sorted(events_expected),
        "problems": problems[:20],
    }


async def _all_events(client: Any, tenant_id: str) -> list[Any]:
    events: list[Any] = []
    after = 0
    while True:
        page = await client.list_events(tenant_id=tenant_id, after_sequence=after, limit=1000)
        if not page:
            return events
        events.extend(page)
        after = page[-1].sequence


def recovery_seconds(plan: list[HoldRun], fault: Fault) -> float | None:
    """The fault to the first freeze/capture/release issued after it that completed."""
    if fault.injected_at is None:
        return None
    completions = [
        completed
        for hold in plan
        for operation, issued, completed in hold.calls
        if operation != "wait" and issued >= fault.injected_at
    ]
    return round(min(completions) - fault.injected_at, 2) if completions else None


def calls_during(plan: list[HoldRun], fault: Fault) -> int:
    """Freeze/capture/release calls that completed while the fault lasted."""
    if fault.injected_at is None or fault.restored_at is None:
        return 0
    start, end = fault.injected_at, fault.restored_at
    return sum(
        1
        for hold in plan
        for operation, _, completed in hold.calls
        if operation != "wait" and start <= completed <= end
    )


def longest_stall(plan: list[HoldRun]) -> float:
    """The longest gap between two completed calls of the run (load generator's view)."""
    completions = sorted(completed for hold in plan for _, _, completed in hold.calls)
    gaps = [b - a for a, b in itertools.pairwise(completions)]
    return round(max(gaps), 2) if gaps else 0.0


async def run_scenario(
    scenario: str,
    *,
    holds: int,
    concurrency: int,
    keep: bool = False,
    outage_seconds: float | None = None,
) -> dict[str, Any]:
    from starter.client import ClientConfig, LedgerClient

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    run_id = f"{TENANT_PREFIX}-{datetime.now(UTC):%H%M%S}-{secrets.token_hex(3)}"
    tenant_id = f"{run_id}-t"
    scratch = Path(tempfile.mkdtemp(prefix=f"reliability-{scenario}-"))
    temporal = Temporal(scratch)
    nats_server = Nats(scratch)
    postgres: PrivatePostgres | None = None
    database_context: Any = None
    client: Any = None
    stack: Stack | None = None
    started_wall = time.monotonic()
    try:
        if scenario == "postgres_restart":
            postgres = PrivatePostgres(scratch / "postgres")
            await asyncio.to_thread(postgres.init)
            database_url = postgres.url
        else:
            database_context = shared_postgres_database("reliability")
            database_url = database_context.__enter__()
        nats_server.start()
        await temporal.start()
        stack = Stack(
            scratch=scratch,
            temporal=temporal,
            nats=nats_server,
            database_url=database_url,
            task_queue=f"{run_id}-q",
            workers=[],
            postgres=postgres,
        )
        config = ClientConfig(
            temporal_address=temporal.address,
            task_queue=stack.task_queue,
            database_url=database_url,
        )
        client = await LedgerClient.connect(config)
        deposits = await _fund(client, tenant_id, run_id)
        worker_count = 2 if scenario == "two_workers" else 1
        workers = [stack.worker(name) for name in "ab"[:worker_count]]
        for worker in workers:
            worker.start()
        for worker in workers:
            await asyncio.to_thread(worker.wait_ready)
        plan = plan_holds(run_id, holds)
        fault = Fault(scenario)
        on_fraction = None
        if scenario != "two_workers":

            async def inject() -> None:
                await _inject(scenario, stack, fault, outage_seconds)

            on_fraction = (FAULT_AT_FRACTION, inject)
        seconds = await drive(client, tenant_id, plan, concurrency, on_fraction)
        unsent, relay_seconds = await _wait_for_relay(client, tenant_id)
        books = await check_books(client, tenant_id, plan, deposits)
        seen = await read_stream(nats_server.url, tenant_id)
        expected_ids = set(books.pop("event_ids"))
        delivered = expected_ids & set(seen)
        from ledger_db.ids import hold_workflow_id

        histories, identities = await history_shape(
            client.temporal, [hold_workflow_id(hold.hold_id) for hold in plan if hold.hold_id]
        )
        for worker in stack.workers:
            if worker.running():
                await asyncio.to_thread(worker.scrape)
        errors: collections.Counter[str] = collections.Counter()
        for hold in plan:
            errors.update(hold.errors)
        failures = [f"hold {hold.index}: {hold.failure}" for hold in plan if hold.failure]
        result = {
            "scenario": scenario,
            "holds_attempted": holds,
            "concurrency": concurrency,
            "holds_ended_for_caller": sum(1 for hold in plan if hold.done),
            "caller_failures": len(failures),
            "caller_failure_sample": failures[:5],
            **books,
            "events_delivered": len(delivered),
            "events_missing_on_bus": len(expected_ids - set(seen)),
            "bus_messages": sum(seen[event_id] for event_id in expected_ids),
            "bus_duplicates": sum(
                seen[event_id] - 1 for event_id in expected_ids if seen[event_id] > 1
            ),
            "outbox_unsent_at_end": unsent,
            "relay_drain_seconds": round(relay_seconds, 2),
            "fault": {
                "injected_after_seconds": None
                if fault.injected_at is None
                else round(fault.injected_at - started_wall, 2),
                "restored_after_seconds": None
                if fault.restored_at is None or fault.injected_at is None
                else round(fault.restored_at - fault.injected_at, 2),
                **fault.details,
            },
            "recovery_seconds": recovery_seconds(plan, fault),
            "calls_completed_during_fault": calls_during(plan, fault),
            "longest_stall_seconds": longest_stall(plan),
            "load_seconds": round(seconds, 2),
            "holds_per_second": round(holds / seconds, 2) if seconds else None,
            "client_retries": sum(hold.retries for hold in plan),
            "client_errors": dict(errors.most_common()),
            "client_raw_errors": sum(
                count for label, count in errors.items() if label.split(":")[1] == "raw"
            ),
            "histories": histories,
            "workers": {
                worker.name: {
                    "starts": worker.starts,
                    "exits": worker.exits,
                    "tracebacks_in_log": worker.tracebacks(),
                    "workflow_tasks": sum(
                        count
                        for identity, count in identities.items()
                        if identity.split("@", 1)[0] in {str(pid) for pid in worker.pids}
                    ),
                    # Scraped just before a kill or a SIGTERM: what it did after is not counted.
                    "metrics": {k: int(v) for k, v in sorted(worker.metrics_seen.items())},
                }
                for worker in stack.workers
            },
        }
        result["ok"] = verdict(result)
        if keep:
            result["scratch"] = str(scratch)
        return result
    finally:
        if stack is not None:
            for worker in stack.workers:
                await asyncio.to_thread(worker.stop)
        if client is not None:
            await client.close()
        temporal.stop()
        nats_server.stop()
        if database_context is not None:
            database_context.__exit__(None, None, None)
        if postgres is not None:
            postgres.stop()
        if not keep:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)


def verdict(result: dict[str, Any]) -> bool:
    """Nothing lost, nothing twice, the books intact, every event once on the bus."""
    checks = [
        result["finalized_once"] == result["holds_attempted"],
        result["lost"] == 0,
        result["duplicated"] == 0,
        result["wrong_state"] == 0,
        result["money"]["conserved"],
        result["verify_journal_problems"] == 0,
        result["journal_transactions_expected"] == result["journal_transactions_found"],
        result["events_in_outbox"] == result["events_expected"],
        result["events_delivered"] == result["events_expected"],
        result["bus_duplicates"] == 0,
        result["caller_failures"] == 0,
    ]
    if result["scenario"] == "worker_sigterm":
        checks.append(bool(result["fault"].get("exited_within_grace")))
    if result["scenario"] == "two_workers":
        shares = [worker["workflow_tasks"] for worker in result["workers"].values()]
        checks.append(len(shares) == 2 and all(count > 0 for count in shares))
    return all(checks)


# ---------------------------------------------------------------------------------------------
# Reporting.
# ---------------------------------------------------------------------------------------------

COLUMNS = (
    "scenario",
    "holds",
    "once",
    "lost",
    "dup",
    "money",
    "verify",
    "journal tx exp/found",
    "events exp/outbox/bus",
    "bus dup",
    "recovery s",
    "retries",
    "raw err",
    "notes",
)


def _notes(result: dict[str, Any]) -> str:
    notes = []
    fault = result["fault"]
    scenario = result["scenario"]
    if scenario == "worker_sigterm":
        notes.append(
            f"exit {fault.get('exit_seconds')} s (grace {fault.get('grace_seconds'):g} s), "
            f"status {fault.get('exit_status')}"
        )
    if scenario == "two_workers":
        shares = [
            f"{name}: {worker['workflow_tasks']} WFT / "
            f"{worker['metrics'].get('ledger_holds_frozen', 0)} frozen"
            for name, worker in result["workers"].items()
        ]
        notes.append(", ".join(shares))
    if fault.get("restored_after_seconds") is not None and scenario != "worker_sigterm":
        notes.append(f"down {fault['restored_after_seconds']} s")
    timeouts = result["histories"].get("workflow_task_timeouts", 0)
    if timeouts:
        notes.append(f"{timeouts} WFT timeouts")
    if result["caller_failures"]:
        notes.append(f"{result['caller_failures']} caller failures")
    notes.append(f"{result['holds_per_second']} holds/s")
    return "; ".join(notes)


def row(result: dict[str, Any]) -> list[str]:
    return [
        result["scenario"] + ("" if result["ok"] else " FAIL"),
        str(result["holds_attempted"]),
        str(result["finalized_once"]),
        str(result["lost"]),
        str(result["duplicated"]),
        "ok" if result["money"]["conserved"] else "NOT conserved",
        str(result["verify_journal_problems"]),
        f"{result['journal_transactions_expected']}/{result['journal_transactions_found']}",
        f"{result['events_expected']}/{result['events_in_outbox']}/{result['events_delivered']}",
        str(result["bus_duplicates"]),
        "-" if result["recovery_seconds"] is None else f"{result['recovery_seconds']:.2f}",
        str(result["client_retries"]),
        str(result["client_raw_errors"]),
        _notes(result),
    ]


def markdown(results: list[dict[str, Any]], load: str) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(row(result)) + " |" for result in results]
    lines.append("")
    lines.append(f"`uptime` at the end: {load}")
    return "\n".join(lines) + "\n"


def print_table(results: list[dict[str, Any]], load: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="reliability: holds under faults (nothing lost, nothing twice)")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("scenario", "notes") else "right")
    for result in results:
        table.add_row(*row(result))
    console = Console(width=220)
    console.print(table)
    console.print(f"uptime: {load}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="repeatable")
    parser.add_argument("--holds", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directories")
    parser.add_argument(
        "--outage-seconds",
        type=float,
        help="how long a killed part stays down (default: 2 s worker/Temporal, 5 s PostgreSQL, "
        "10 s NATS)",
    )
    arguments = parser.parse_args(argv)
    from bench.reporting import uptime

    scenarios = arguments.scenario or list(SCENARIOS)
    results = []
    started = time.monotonic()
    for scenario in scenarios:
        print(f"--- {scenario}: {arguments.holds} holds at concurrency {arguments.concurrency}")
        sys.stdout.flush()
        result = asyncio.run(
            run_scenario(
                scenario,
                holds=arguments.holds,
                concurrency=arguments.concurrency,
                keep=arguments.keep,
                outage_seconds=arguments.outage_seconds,
            )
        )
        results.append(result)
        print(json.dumps({k: result[k] for k in ("scenario", "ok", "lost", "duplicated")}))
        sys.stdout.flush()
    load = uptime()
    print_table(results, load)
    document = {
        "benchmark": "reliability",
        "generated_at": datetime.now(UTC).isoformat(),
        "uptime": load,
        "cpus": os.cpu_count(),
        "wall_seconds": round(time.monotonic() - started, 1),
        "results": results,
    }
    output = arguments.output or RESULTS_DIRECTORY / "reliability.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    if arguments.output is None:
        (RESULTS_DIRECTORY / "reliability.md").write_text(markdown(results, load))
    print(f"written to {output}")
    sys.stdout.flush()
    return 0 if all(result["ok"] for result in results) else 1


if __name__ == "__main__":
    status = main()
    # Leave without finalizing: a Temporal client's runtime still alive while the interpreter
    # finalizes can abort the process after the figures were written.
    os._exit(status)
