"""The saga benchmark's baseline: a HoldWorkflow-shaped workflow whose activities do nothing.

Same shape as ``workflows/hold.py``: started by Update-With-Start whose ``freeze`` update returns
once the freeze activity completed; a ``capture`` and a ``release`` update with validators; an
expiry timer; a finalize activity after the capture; a publish activity started after each
ledger step and drained at the end; search attributes upserted on each phase change and the
current details kept up to date. The activities return a record of the same size as the
ledger's hold but touch no database and no bus: this module imports nothing from ``ledger_db``.

The saga's cost over this baseline is what the ledger (and its activities) add.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import RetryPolicy, SearchAttributeUpdate, WorkflowIDConflictPolicy

with workflow.unsafe.imports_passed_through():
    from workflows import search_attributes as sa

__all__ = [
    "BARE_ACTIVITIES",
    "BareCapture",
    "BareFreeze",
    "BareHold",
    "BareHoldWorkflow",
    "BareStep",
    "capture_bare_hold",
    "freeze_bare_hold",
    "wait_bare_hold",
]

_NAMESPACE = uuid.UUID("1b0f3c1e-7f49-4f0b-9a57-6b3cfd1f0b2a")
_ACTIVITY_TIMEOUT = timedelta(seconds=30)
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
_PUBLISH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=4), maximum_attempts=3
)


@dataclass(frozen=True)
class BareFreeze:
    tenant_id: str
    idempotency_key: str
    account_id: str
    amount: str
    reason: str
    ttl_seconds: int
    payee_account_id: str | None = None
    order_id: str | None = None


@dataclass(frozen=True)
class BareCapture:
    idempotency_key: str
    order_id: str
    amount: str | None = None
    payee_account_id: str | None = None


@dataclass(frozen=True)
class BareRelease:
    idempotency_key: str


@dataclass(frozen=True)
class BareHold:
    """As many fields as ``ledger_db.models.Hold``, so payloads weigh about the same."""

    tenant_id: str
    hold_id: str
    account_id: str
    currency: str
    amount_minor: int
    state: str
    reason: str
    expires_at: datetime
    created_at: datetime
    payee_account_id: str | None = None
    order_id: str | None = None
    captured_minor: int = 0
    released_minor: int = 0
    finalized: bool = False
    fee_minor: int = 0
    resolved_at: datetime | None = None
    freeze_transaction_id: str = ""
    resolve_transaction_id: str | None = None
    finalize_transaction_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False


@dataclass(frozen=True)
class BareStep:
    """An activity's input: the workflow ID (the idempotency key's prefix), the hold, the time."""

    workflow_id: str
    hold: BareHold
    now: datetime
    capture: BareCapture | None = None
    request: BareFreeze | None = None


def bare_hold_id(tenant_id: str, idempotency_key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{tenant_id}\x1f{idempotency_key}"))


def _amount_minor(amount: str) -> int:
    whole, _, fraction = amount.partition(".")
    return int(whole) * 100 + int((fraction + "00")[:2])


# ---------------------------------------------------------------------------------------------
# No-op activities: they compute the next record of the hold and return it.
# ---------------------------------------------------------------------------------------------


@activity.defn(name="bare.freeze_hold")
async def freeze_hold(step: BareStep) -> BareHold:
    return step.hold


@activity.defn(name="bare.capture_hold")
async def capture_hold(step: BareStep) -> BareHold:
    assert step.capture is not None
    captured = _amount_minor(step.capture.amount) if step.capture.amount else step.hold.amount_minor
    return replace(
        step.hold,
        state="captured",
        order_id=step.capture.order_id,
        captured_minor=captured,
        released_minor=step.hold.amount_minor - captured,
        resolved_at=step.now,
        resolve_transaction_id=f"{step.workflow_id}-capture",
    )


@activity.defn(name="bare.finalize_hold")
async def finalize_hold(step: BareStep) -> BareHold:
    return replace(step.hold, finalized=True, finalize_transaction_id=f"{step.workflow_id}-fin")


@activity.defn(name="bare.release_hold")
async def release_hold(step: BareStep) -> BareHold:
    return replace(
        step.hold,
        state="released",
        released_minor=step.hold.amount_minor,
        resolved_at=step.now,
        resolve_transaction_id=f"{step.workflow_id}-release",
    )


@activity.defn(name="bare.expire_hold")
async def expire_hold(step: BareStep) -> BareHold:
    return replace(
        step.hold,
        state="expired",
        released_minor=step.hold.amount_minor,
        resolved_at=step.now,
        resolve_transaction_id=f"{step.workflow_id}-expire",
    )


@activity.defn(name="bare.publish_events")
async def publish_events(transaction_id: str) -> int:
    return 0


BARE_ACTIVITIES: list[Callable[..., Any]] = [
    freeze_hold,
    capture_hold,
    finalize_hold,
    release_hold,
    expire_hold,
    publish_events,
]


# ---------------------------------------------------------------------------------------------
# The workflow.
# ---------------------------------------------------------------------------------------------


@workflow.defn(name="BareHoldWorkflow")
class BareHoldWorkflow:
    """Freeze, then capture (and finalize), release or expiry, with no-op activities."""

    @workflow.init
    def __init__(self, request: BareFreeze) -> None:
        self._request = request
        self._workflow_id = workflow.info().workflow_id
        self._phase = "freezing"
        self._hold: BareHold | None = None
        self._resolution: str | None = None
        self._busy = False
        self._publishes: list[workflow.ActivityHandle[Any]] = []

    @workflow.run
    async def run(self, request: BareFreeze) -> BareHold:
        self._upsert()
        now = workflow.now()
        draft = BareHold(
            tenant_id=request.tenant_id,
            hold_id=bare_hold_id(request.tenant_id, request.idempotency_key),
            account_id=request.account_id,
            currency="USD",
            amount_minor=_amount_minor(request.amount),
            state="active",
            reason=request.reason,
            expires_at=now + timedelta(seconds=request.ttl_seconds),
            created_at=now,
            payee_account_id=request.payee_account_id,
            order_id=request.order_id,
            freeze_transaction_id=f"{self._workflow_id}-freeze",
        )
        self._adopt(
            await self._step(
                "bare.freeze_hold", BareStep(self._workflow_id, draft, now, request=request)
            )
        )
        self._publish(draft.freeze_transaction_id)
        while self._phase == "active" or self._busy:
            if self._busy:
                await workflow.wait_condition(lambda: not self._busy)
                continue
            assert self._hold is not None
            remaining = self._hold.expires_at - workflow.now()
            if remaining > timedelta(0):
                milliseconds = math.ceil(remaining / timedelta(milliseconds=1))
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._busy or self._phase != "active",
                        timeout=timedelta(milliseconds=milliseconds),
                    )
                continue
            self._resolution = "expire"
            self._resolved(await self._step("bare.expire_hold", self._current_step()))
        if self._phase == "finalizing":
            self._adopt(await self._step("bare.finalize_hold", self._current_step()))
            assert self._hold is not None
            self._publish(self._hold.finalize_transaction_id or "")
        for handle in self._publishes:
            await handle
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._hold is not None
        return self._hold

    @workflow.update
    async def freeze(self, request: BareFreeze) -> BareHold:
        await workflow.wait_condition(lambda: self._phase != "freezing")
        assert self._hold is not None
        return self._hold

    @freeze.validator
    def _validate_freeze(self, request: BareFreeze) -> None:
        if request != self._request:
            raise ValueError("idempotency_key_reused")

    @workflow.update
    async def capture(self, request: BareCapture) -> BareHold:
        self._check()
        self._resolution = "capture"
        self._busy = True
        self._set_phase("capturing")
        hold = await self._step("bare.capture_hold", self._current_step(capture=request))
        self._resolved(hold)
        return hold

    @capture.validator
    def _validate_capture(self, request: BareCapture) -> None:
        self._check()
        if not request.order_id.strip():
            raise ValueError("invalid_entry")

    @workflow.update
    async def release(self, request: BareRelease) -> BareHold:
        self._check()
        self._resolution = "release"
        self._busy = True
        self._set_phase("releasing")
        hold = await self._step("bare.release_hold", self._current_step())
        self._resolved(hold)
        return hold

    @release.validator
    def _validate_release(self, request: BareRelease) -> None:
        self._check()

    @workflow.query
    def state(self) -> str:
        return self._phase

    def _check(self) -> None:
        if self._phase in {"freezing", "rejected"} or self._resolution is not None:
            raise ValueError("hold_not_active")
        assert self._hold is not None
        if workflow.now() >= self._hold.expires_at:
            raise ValueError("hold_expired")

    def _current_step(self, capture: BareCapture | None = None) -> BareStep:
        assert self._hold is not None
        return BareStep(self._workflow_id, self._hold, workflow.now(), capture=capture)

    async def _step(self, name: str, step: BareStep) -> BareHold:
        hold: BareHold = await workflow.execute_activity(
            name,
            step,
            result_type=BareHold,
            start_to_close_timeout=_ACTIVITY_TIMEOUT,
            retry_policy=_RETRY,
            summary=name.rsplit(".", 1)[-1],
        )
        return hold

    def _resolved(self, hold: BareHold) -> None:
        self._busy = False
        self._adopt(hold)
        self._publish(hold.resolve_transaction_id or "")

    def _adopt(self, hold: BareHold) -> None:
        self._hold = hold
        if hold.state == "captured":
            self._set_phase("captured" if hold.finalized else "finalizing")
        else:
            self._set_phase(hold.state)

    def _publish(self, transaction_id: str) -> None:
        self._publishes.append(
            workflow.start_activity(
                "bare.publish_events",
                transaction_id,
                start_to_close_timeout=_ACTIVITY_TIMEOUT,
                retry_policy=_PUBLISH_RETRY,
                summary="publish events",
            )
        )

    def _set_phase(self, phase: str) -> None:
        changed = phase != self._phase
        self._phase = phase
        if changed:
            self._upsert()
        hold = self._hold
        workflow.set_current_details(
            f"**Bare hold** — **{phase}**\n\n- tenant `{self._request.tenant_id}`, account "
            f"`{self._request.account_id}`, amount {self._request.amount}"
            + (f", captured {hold.captured_minor}" if hold and hold.captured_minor else "")
        )

    def _upsert(self) -> None:
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.LEDGER_TENANT.value_set(self._request.tenant_id),
            sa.LEDGER_ACCOUNT.value_set(self._request.account_id),
            sa.LEDGER_HOLD_STATE.value_set(self._phase),
            sa.LEDGER_AMOUNT.value_set(self._request.amount),
        ]
        if self._hold is not None:
            updates.append(sa.LEDGER_AMOUNT_MINOR.value_set(self._hold.amount_minor))
            updates.append(sa.LEDGER_CURRENCY.value_set(self._hold.currency))
        if self._request.payee_account_id is not None:
            updates.append(sa.LEDGER_PAYEE.value_set(self._request.payee_account_id))
        if self._hold is not None and self._hold.order_id is not None:
            updates.append(sa.LEDGER_ORDER.value_set(self._hold.order_id))
        workflow.upsert_search_attributes(updates)


# ---------------------------------------------------------------------------------------------
# Client side, shaped like LedgerClient.freeze / capture_hold / wait_for_hold.
# ---------------------------------------------------------------------------------------------


async def freeze_bare_hold(
    client: Client,
    *,
    task_queue: str,
    tenant_id: str,
    idempotency_key: str,
    account_id: str,
    amount: str,
    ttl_seconds: int,
    payee_account_id: str | None = None,
    reason: str = "BENCH",
) -> tuple[WorkflowHandle[Any, Any], BareHold]:
    """Update-With-Start: starts the workflow (or finds it) and waits for the freeze."""
    request = BareFreeze(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        account_id=account_id,
        amount=amount,
        reason=reason,
        ttl_seconds=ttl_seconds,
        payee_account_id=payee_account_id,
    )
    operation = WithStartWorkflowOperation(
        BareHoldWorkflow.run,
        request,
        id=f"bare-hold-{bare_hold_id(tenant_id, idempotency_key)}",
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    hold = await client.execute_update_with_start_workflow(
        BareHoldWorkflow.freeze, request, start_workflow_operation=operation
    )
    return await operation.workflow_handle(), hold


async def capture_bare_hold(
    handle: WorkflowHandle[Any, Any], *, order_id: str, idempotency_key: str
) -> BareHold:
    return await handle.execute_update(
        BareHoldWorkflow.capture, BareCapture(idempotency_key=idempotency_key, order_id=order_id)
    )


async def wait_bare_hold(handle: WorkflowHandle[Any, Any]) -> BareHold:
    result: BareHold = await handle.result()
    return result
