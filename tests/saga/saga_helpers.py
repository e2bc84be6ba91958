"""Helpers of the saga tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from activities.faults import FaultInjector
from ledger_db import Ledger
from starter.client import LedgerClient

REPOSITORY = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.prefix) / "bin"
TEST_SERVER = VENV_BIN / "temporal-test-server"
DEV_SERVER = VENV_BIN / "temporal"


class ServerClock:
    """The ledger's clock in the saga tests: the wall clock, moved ahead as far as the Temporal
    server's clock is. The time-skipping test server jumps its clock ahead (years, once it
    skips to a long-poll deadline) and the workflows pass that time as ``now``, which the ledger
    accepts only near its own clock (``limits.now_lead_seconds_max``); a real server's clock is
    the wall clock, so there the offset stays zero."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def observe(self, server_time: datetime) -> None:
        self.ahead = max(self.ahead, server_time - datetime.now(UTC))

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def interceptor(self) -> Interceptor:
        """A worker interceptor that shows the clock each activity's scheduled (server) time."""
        clock = self

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                # A regular activity is scheduled by the server, at the server's time; a local
                # one by the worker, so there the workflow's time is the ``now`` it carries.
                clock.observe(activity.info().current_attempt_scheduled_time)
                for argument in input.args:
                    workflow_now = getattr(argument, "now", None)
                    if isinstance(workflow_now, datetime):
                        clock.observe(workflow_now)
                return await super().execute_activity(input)

        class Follow(Interceptor):
            def intercept_activity(
                self, next: ActivityInboundInterceptor
            ) -> ActivityInboundInterceptor:
                return Inbound(next)

        return Follow()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Tenant:
    """A funded tenant: buyer (100.00 USD), seller, and the platform accounts."""

    tenant_id: str
    buyer: str = "buyer"
    seller: str = "seller"
    currency: str = "USD"
    deposited: str = "100.00"
    extra: dict[str, Any] = field(default_factory=dict)


def fund_tenant(ledger: Ledger, *, deposit: str = "100.00") -> Tenant:
    tenant = Tenant(tenant_id=unique("tenant"), deposited=deposit)
    for account in (tenant.buyer, tenant.seller):
        ledger.open_account(
            tenant_id=tenant.tenant_id,
            currency=tenant.currency,
            idempotency_key=f"open-{account}",
            account_id=account,
        )
    ledger.ensure_platform_accounts(tenant_id=tenant.tenant_id, currency=tenant.currency)
    ledger.deposit(
        tenant.buyer, deposit, tenant_id=tenant.tenant_id, idempotency_key="deposit-buyer"
    )
    return tenant


@dataclass
class Saga:
    """What a saga test works with: the client, the ledger, the environment, the worker."""

    env: WorkflowEnvironment
    client: LedgerClient
    ledger: Ledger
    task_queue: str
    worker: Worker
    faults: FaultInjector


def hold_transactions(
    ledger: Ledger, tenant_id: str, hold_id: str
) -> list[tuple[str, list[tuple[str, str, int]]]]:
    """The journal transactions of a hold in journal order: (kind, [(account, direction, minor)])."""
    import sqlalchemy as sa

    from ledger_db.schema import journal_entries, journal_transactions

    with ledger.engine.connect() as connection:
        transactions = connection.execute(
            sa.select(journal_transactions.c.transaction_id, journal_transactions.c.kind)
            .where(
                journal_transactions.c.tenant_id == tenant_id,
                journal_transactions.c.hold_id == hold_id,
            )
            .order_by(journal_transactions.c.sequence)
        ).all()
        result = []
        for transaction_id, kind in transactions:
            entries = connection.execute(
                sa.select(
                    journal_entries.c.account_id,
                    journal_entries.c.direction,
                    journal_entries.c.amount_minor,
                )
                .where(journal_entries.c.transaction_id == transaction_id)
                .order_by(journal_entries.c.entry_index)
            ).all()
            result.append((kind, [(row[0], row[1], int(row[2])) for row in entries]))
    return result


def hold_kinds(ledger: Ledger, tenant_id: str, hold_id: str) -> list[str]:
    return [kind for kind, _ in hold_transactions(ledger, tenant_id, hold_id)]


def balances(ledger: Ledger, tenant: Tenant) -> dict[str, tuple[str, str, str]]:
    """(posted, held, available) of the buyer, the seller, escrow and revenue."""
    accounts = [
        tenant.buyer,
        tenant.seller,
        f"@escrow:{tenant.currency}",
        f"@revenue:{tenant.currency}",
    ]
    result = {}
    for account in accounts:
        balance = ledger.get_balance(account, tenant_id=tenant.tenant_id)
        result[account] = (balance.posted, balance.held, balance.available)
    return result


def expected_balances(
    tenant: Tenant, *, buyer_posted: str, buyer_held: str, seller: str, escrow: str, revenue: str
) -> dict[str, tuple[str, str, str]]:
    from decimal import Decimal

    available = str(Decimal(buyer_posted) - Decimal(buyer_held))
    return {
        tenant.buyer: (buyer_posted, buyer_held, available),
        tenant.seller: (seller, "0.00", seller),
        f"@escrow:{tenant.currency}": (escrow, "0.00", escrow),
        f"@revenue:{tenant.currency}": (revenue, "0.00", revenue),
    }


def event_types(ledger: Ledger, tenant_id: str, hold_id: str | None = None) -> list[str]:
    events = ledger.list_events(tenant_id=tenant_id, limit=1000)
    return [event.type for event in events if hold_id is None or event.hold_id == hold_id]


def assert_books_intact(ledger: Ledger) -> None:
    assert ledger.verify_journal() == []


async def wait_for_hold(saga: Saga, hold_id: str, *, tenant_id: str) -> Any:
    """``client.wait_for_hold``, letting the time-skipping server skip to the next timer.

    The test server skips time only while a result is awaited through a handle it started;
    the client finds the workflow by ID, so the skipping is unlocked here explicitly. When the
    test server jumps past its own long-poll deadline it answers the poll with no event, which
    the SDK reports as "No completion event found": that poll is simply repeated.
    """
    for _ in range(20):
        try:
            if saga.env.supports_time_skipping_v1:
                async with saga.env.time_skipping_unlocked():  # type: ignore[attr-defined]
                    return await saga.client.wait_for_hold(hold_id, tenant_id=tenant_id)
            return await saga.client.wait_for_hold(hold_id, tenant_id=tenant_id)
        except RuntimeError as error:
            if "No completion event found" not in str(error):
                raise
    raise AssertionError(f"hold {hold_id} did not end")


def local_activities(history: WorkflowHistory) -> list[dict[str, Any]]:
    """The local activities a history recorded (their marker data: type, attempt...), in order."""
    found = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        details = event.marker_recorded_event_attributes.details
        data = json.loads(details["data"].payloads[0].data)
        data["failed"] = event.marker_recorded_event_attributes.HasField("failure")
        found.append(data)
    return found


def count_events(history: WorkflowHistory, event_type: EventType.ValueType) -> int:
    return sum(1 for event in history.events if event.event_type == event_type)


def workflow_task_failures(history: WorkflowHistory) -> list[str]:
    """The failure messages of every failed workflow task: none is the only right answer."""
    return [
        event.workflow_task_failed_event_attributes.failure.message
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]


async def history_of(saga: Saga, hold_id: str) -> WorkflowHistory:
    from ledger_db.ids import hold_workflow_id

    return await saga.env.client.get_workflow_handle(hold_workflow_id(hold_id)).fetch_history()


def start_worker_process(
    env: WorkflowEnvironment,
    database_url: str,
    task_queue: str,
    log_path: Path,
    extra_environment: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``python worker.py`` in its own process, configured from the environment as a user's."""
    config = env.client.service_client.config
    environment = {
        **os.environ,
        "TEMPORAL_ADDRESS": config.target_host,
        "TEMPORAL_NAMESPACE": env.client.namespace,
        "LEDGER_DATABASE_URL": database_url,
        "LEDGER_TASK_QUEUE": task_queue,
        "NATS_URL": "",
        "PYTHONPATH": str(REPOSITORY),
        **(extra_environment or {}),
    }
    # The child keeps its own descriptor of the log; ours is closed right away.
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, str(REPOSITORY / "worker.py")],
            cwd=REPOSITORY,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
