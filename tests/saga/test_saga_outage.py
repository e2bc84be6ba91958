"""Outages: the database down or slow, no worker at all. A hold never hangs and never doubles.

- freeze with the database down answers ``ledger_unavailable`` after a bounded time (the local
  attempts, then a regular activity with a schedule-to-close), the workflow fails, and the same
  key freezes once the database is back;
- a short outage is ridden out: the step moves to a regular activity and completes;
- with no worker polling, the client gives up at its deadline with ``ledger_unavailable``;
- the activity timeouts are above the database's own busy timeout.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from saga_helpers import (
    Saga,
    Tenant,
    count_events,
    history_of,
    hold_kinds,
    local_activities,
    unique,
    workflow_task_failures,
)
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from ledger_db import HoldState, Ledger
from ledger_db.database import create_engine
from ledger_db.errors import LedgerUnavailable
from ledger_db.ids import derive_hold_id, hold_workflow_id
from starter.client import ClientConfig, LedgerClient
from starter.dev import free_port
from worker import build_worker
from workflows.hold import DATABASE_BUSY_TIMEOUT, LEDGER_ANSWER_TIMEOUT, LEDGER_CALL_TIMEOUT

pytestmark = [pytest.mark.temporal, pytest.mark.asyncio(loop_scope="session")]


def _unreachable_ledger() -> Ledger:
    """A ledger whose PostgreSQL nobody listens for: every call is refused at once."""
    return Ledger(create_engine(f"postgresql+psycopg://127.0.0.1:{free_port()}/nothing"))


async def _freeze(client: LedgerClient, tenant: Tenant, key: str = "freeze-1") -> object:
    return await client.freeze(
        tenant.buyer,
        "10.00",
        "NEGOTIATION",
        tenant_id=tenant.tenant_id,
        idempotency_key=key,
        ttl_seconds=600,
        payee_account_id=tenant.seller,
    )


async def test_freeze_with_the_database_down_is_ledger_unavailable_then_the_key_works(
    time_skipping_env: WorkflowEnvironment, ledger: Ledger, tenant: Tenant, task_queue: str
) -> None:
    client = await LedgerClient.connect(
        ClientConfig(task_queue=task_queue), temporal=time_skipping_env.client, ledger=ledger
    )
    down = _unreachable_ledger()
    try:
        async with build_worker(time_skipping_env.client, down, task_queue=task_queue):
            started = time.monotonic()
            # Let the test server skip the regular activity's retry backoff and deadline.
            async with time_skipping_env.time_skipping_unlocked():  # type: ignore[attr-defined]
                with pytest.raises(LedgerUnavailable):
                    await _freeze(client, tenant)
            waited = time.monotonic() - started
        hold_id = derive_hold_id(tenant.tenant_id, "freeze-1")
        handle = time_skipping_env.client.get_workflow_handle(hold_workflow_id(hold_id))
        description = await handle.describe()
        assert description.status is not None and description.status.name == "FAILED"
        history = await handle.fetch_history()
        assert workflow_task_failures(history) == []
        # Local attempts first, then the step moved to a regular activity, bounded in time.
        assert [step["failed"] for step in local_activities(history)] == [True]
        assert count_events(history, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 1
        assert count_events(history, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 0
        # The server skipped the regular activity's backoff up to its schedule-to-close (90 s
        # of workflow time); the local attempts took real time, about a second.
        assert waited < 30, waited
        timeline = [event.event_time.ToDatetime() for event in history.events]
        assert timeline[-1] - timeline[0] >= LEDGER_ANSWER_TIMEOUT - timedelta(seconds=15)
        # The database is back: the same key freezes (the failed run let the ID be reused).
        async with build_worker(
            time_skipping_env.client,
            ledger,
            task_queue=task_queue,
            interceptors=[ledger.clock.interceptor()],  # type: ignore[attr-defined]
        ):
            hold = await _freeze(client, tenant)
            assert hold.hold_id == hold_id and hold.state is HoldState.ACTIVE  # type: ignore[attr-defined]
            await client.release_hold(hold_id, tenant_id=tenant.tenant_id, idempotency_key="r")
        assert hold_kinds(ledger, tenant.tenant_id, hold_id) == ["freeze", "release"]
    finally:
        down.close()
        await client.close()


async def test_a_short_outage_is_ridden_out_by_a_regular_activity(
    saga: Saga, tenant: Tenant
) -> None:
    # More failures than the local attempts: the capture moves to a regular activity.
    hold = await _freeze(saga.client, tenant)
    saga.faults.make_unavailable("capture", 5)
    captured = await saga.client.capture_hold(
        hold.hold_id,  # type: ignore[attr-defined]
        "order-1",
        tenant_id=tenant.tenant_id,
        idempotency_key="c",
    )
    assert captured.state is HoldState.CAPTURED
    assert saga.faults.injected("capture") == 5
    history = await history_of(saga, captured.hold_id)
    assert workflow_task_failures(history) == []
    assert count_events(history, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 1
    assert hold_kinds(saga.ledger, tenant.tenant_id, captured.hold_id) == [
        "freeze",
        "capture",
        "finalize",
    ]


async def test_without_a_worker_the_client_gives_up_at_its_deadline(
    dev_env: WorkflowEnvironment, ledger: Ledger, tenant: Tenant
) -> None:
    client = await LedgerClient.connect(
        ClientConfig(task_queue=unique("nobody-polls")), temporal=dev_env.client, ledger=ledger
    )
    client.answer_deadline = timedelta(seconds=1)
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable, match="send the same request again"):
        await _freeze(client, tenant)
    assert time.monotonic() - started < 10
    await client.close()


async def test_activity_timeouts_are_above_the_database_busy_timeout(tmp_path: object) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/busy.db")
    try:
        with engine.connect() as connection:
            busy_ms = connection.execute(sa.text("PRAGMA busy_timeout")).scalar_one()
    finally:
        engine.dispose()
    assert timedelta(milliseconds=busy_ms) == DATABASE_BUSY_TIMEOUT
    assert LEDGER_CALL_TIMEOUT > DATABASE_BUSY_TIMEOUT


async def test_worker_slots_are_sized_to_the_database_pool(
    time_skipping_env: WorkflowEnvironment, ledger: Ledger, postgres_url: str
) -> None:
    from activities.ledger import ledger_capacity
    from worker import BATCH_ACTIVITY_SLOTS

    # SQLite: one writer at a time; PostgreSQL: its pool of 10 + 40 overflow.
    postgres = Ledger(create_engine(postgres_url))
    try:
        assert (ledger_capacity(ledger), ledger_capacity(postgres)) == (1, 50)
        for database, capacity in ((ledger, 1), (postgres, 50)):
            queue = unique("slots")
            config = build_worker(time_skipping_env.client, database, task_queue=queue).config()
            assert config["max_concurrent_local_activities"] == capacity
            assert config["max_concurrent_activities"] == capacity + BATCH_ACTIVITY_SLOTS
    finally:
        postgres.close()
