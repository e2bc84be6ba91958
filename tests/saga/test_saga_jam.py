"""Nothing a caller sends can fail a workflow task, on the time-skipping and on a dev server.

A signal with an amount the grammar refuses (``1e999999`` once raised ``decimal.Overflow`` in
the handler; ``1e400000`` once spent ~16 s of CPU in ``int()``), junk types, a payload that is
not even an object; updates with bad input; a start payload with a field this version does not
know, or with fields of the wrong type. After each: no ``WorkflowTaskFailed`` in the history, the
refusal is in the state or in the caller's error, and the hold still works.
"""

from __future__ import annotations

from typing import Any

import pytest
from saga_helpers import Saga, Tenant, history_of, hold_kinds, workflow_task_failures
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from ledger_db import HoldState
from ledger_db.errors import CaptureExceedsHold
from ledger_db.ids import derive_hold_id, hold_workflow_id
from workflows.hold import HOLD_WORKFLOW_TYPE, HoldWorkflow
from workflows.models import HoldPhase

pytestmark = [pytest.mark.temporal, pytest.mark.asyncio(loop_scope="session")]


async def _freeze(saga: Saga, tenant: Tenant, key: str = "freeze-1") -> str:
    hold = await saga.client.freeze(
        tenant.buyer,
        "30.00",
        "NEGOTIATION",
        tenant_id=tenant.tenant_id,
        idempotency_key=key,
        ttl_seconds=600,
        payee_account_id=tenant.seller,
    )
    return hold.hold_id


def _capture_payload(tenant: Tenant, **changes: Any) -> dict[str, Any]:
    return {
        "tenant_id": tenant.tenant_id,
        "idempotency_key": "junk",
        "order_id": "order-junk",
        **changes,
    }


async def test_junk_signals_are_recorded_and_never_fail_a_task(
    any_saga: Saga, tenant: Tenant
) -> None:
    saga = any_saga
    hold_id = await _freeze(saga, tenant)
    handle = saga.env.client.get_workflow_handle(hold_workflow_id(hold_id))
    junk: list[tuple[str, Any, str]] = [
        ("confirm_order", _capture_payload(tenant, amount="1e999999"), "invalid_amount"),
        ("confirm_order", _capture_payload(tenant, amount="1e400000"), "invalid_amount"),
        ("confirm_order", _capture_payload(tenant, amount="9" * 100_000), "invalid_amount"),
        ("confirm_order", _capture_payload(tenant, amount=12), "invalid_entry"),
        ("confirm_order", _capture_payload(tenant, amount=["1"]), "invalid_entry"),
        ("confirm_order", {"amount": "1.00"}, "invalid_entry"),
        ("confirm_order", "not an object", "invalid_entry"),
        ("confirm_order", None, "invalid_entry"),
        ("confirm_order", _capture_payload(tenant, amount="31.00"), "capture_exceeds_hold"),
        ("confirm_order", _capture_payload(tenant, tenant_id="another"), "hold_not_found"),
        ("cancel_order", {"tenant_id": 7}, "invalid_entry"),
        ("cancel_order", [1, 2, 3], "invalid_entry"),
    ]
    for signal, payload, code in junk:
        await handle.signal(signal, payload)
        state = await saga.client.hold_state(hold_id, tenant_id=tenant.tenant_id)
        assert (state.last_signal_error_code, state.phase) == (code, HoldPhase.ACTIVE), signal
        assert len(state.last_signal_error_message or "") <= 500
    # The hold took none of it and still works, through a signal too.
    await saga.client.confirm_order(hold_id, "order-1", tenant_id=tenant.tenant_id, amount="5")
    final = await saga.client.wait_for_hold(hold_id, tenant_id=tenant.tenant_id)
    assert final.state is HoldState.CAPTURED and final.captured == "5.00" and final.finalized
    history = await history_of(saga, hold_id)
    assert workflow_task_failures(history) == []
    signals = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert len(signals) == len(junk) + 1


async def test_bad_updates_are_refused_before_history(any_saga: Saga, tenant: Tenant) -> None:
    saga = any_saga
    hold_id = await _freeze(saga, tenant)
    handle = saga.env.client.get_workflow_handle(hold_workflow_id(hold_id))
    bad: list[tuple[str, Any]] = [
        ("capture", _capture_payload(tenant, amount="1e999999")),
        ("capture", _capture_payload(tenant, amount="1e400000")),
        ("capture", _capture_payload(tenant, amount=12)),
        ("capture", "junk"),
        ("release", {"tenant_id": tenant.tenant_id}),
        ("extend", {"tenant_id": tenant.tenant_id, "idempotency_key": "e", "ttl_seconds": "x"}),
        ("extend", {"tenant_id": tenant.tenant_id, "idempotency_key": "e"}),
        ("retry_payout", {"tenant_id": tenant.tenant_id, "idempotency_key": "p"}),
        ("freeze", {"tenant_id": tenant.tenant_id}),
        ("no_such_update", {}),
    ]
    for update, payload in bad:
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update(update, payload)
    with pytest.raises(CaptureExceedsHold):
        await saga.client.capture_hold(
            hold_id, "o", tenant_id=tenant.tenant_id, idempotency_key="c", amount="30.01"
        )
    history = await history_of(saga, hold_id)
    assert workflow_task_failures(history) == []
    accepted = [
        event
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert len(accepted) == 1  # the freeze, nothing else reached history
    await saga.client.release_hold(hold_id, tenant_id=tenant.tenant_id, idempotency_key="r")
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold_id) == ["freeze", "release"]


def _start_payload(tenant: Tenant, key: str, **changes: Any) -> dict[str, Any]:
    return {
        "tenant_id": tenant.tenant_id,
        "idempotency_key": key,
        "account_id": tenant.buyer,
        "amount": "10.00",
        "reason": "NEGOTIATION",
        "ttl_seconds": 600,
        "payee_account_id": tenant.seller,
        **changes,
    }


async def test_a_start_payload_from_a_newer_client_is_read(any_saga: Saga, tenant: Tenant) -> None:
    # One field this version does not know: ignored, on the start and on the freeze update.
    saga = any_saga
    payload = _start_payload(tenant, "newer", loyalty_points=12, routing={"region": "eu"})
    hold_id = derive_hold_id(tenant.tenant_id, "newer")
    handle = await saga.env.client.start_workflow(
        HOLD_WORKFLOW_TYPE,
        payload,
        id=hold_workflow_id(hold_id),
        task_queue=saga.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    hold = await handle.execute_update(HoldWorkflow.freeze, payload)  # type: ignore[arg-type]
    assert hold.state is HoldState.ACTIVE and hold.amount == "10.00"
    await saga.client.release_hold(hold_id, tenant_id=tenant.tenant_id, idempotency_key="r")
    assert workflow_task_failures(await handle.fetch_history()) == []


async def test_a_start_payload_of_the_wrong_shape_fails_the_workflow_not_a_task(
    any_saga: Saga, tenant: Tenant
) -> None:
    saga = any_saga
    payload = _start_payload(tenant, "wrong", ttl_seconds="ten minutes", amount=10)
    handle = await saga.env.client.start_workflow(
        HOLD_WORKFLOW_TYPE,
        payload,
        id=hold_workflow_id(derive_hold_id(tenant.tenant_id, "wrong")),
        task_queue=saga.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "invalid_entry"
    assert workflow_task_failures(await handle.fetch_history()) == []
    assert (
        hold_kinds(saga.ledger, tenant.tenant_id, derive_hold_id(tenant.tenant_id, "wrong")) == []
    )
