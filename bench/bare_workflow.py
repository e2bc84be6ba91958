"""The saga benchmark's baseline: the minimal workflow of a hold's shape, doing nothing else.

- started by Update-With-Start; its ``freeze`` update answers once one *local* no-op activity
  (the freeze) has run, in the start's workflow task;
- then a ``capture`` update runs one local no-op activity and the workflow ends; or a
  ``release`` update does the same; or the expiry timer fires and one local no-op runs.

No ledger, no validators, no search attributes, no events: what a hold costs in Temporal alone.
The saga's figures over these are what the ledger, its rules and its bookkeeping add. This
module imports nothing from ``ledger_db`` or ``workflows``.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

__all__ = [
    "BARE_ACTIVITIES",
    "BareFreeze",
    "BareHoldWorkflow",
    "BareResolve",
    "freeze_bare_hold",
]

_STEP_TIMEOUT = timedelta(seconds=30)


@dataclass(frozen=True)
class BareFreeze:
    idempotency_key: str
    amount: str
    ttl_seconds: int


@dataclass(frozen=True)
class BareResolve:
    idempotency_key: str


@activity.defn(name="bare.step")
async def bare_step(step: str) -> dict[str, Any]:
    """A ledger step that does nothing: returns a record the size of a small answer."""
    return {"step": step, "state": "done"}


BARE_ACTIVITIES = [bare_step]


@workflow.defn(name="BareHoldWorkflow")
class BareHoldWorkflow:
    """freeze (local no-op) -> capture or release (local no-op) or expiry (local no-op)."""

    @workflow.init
    def __init__(self, request: BareFreeze) -> None:
        self._state = "freezing"

    @workflow.run
    async def run(self, request: BareFreeze) -> str:
        await self._step("freeze")
        self._state = "active"
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._state != "active", timeout=timedelta(seconds=request.ttl_seconds)
            )
        if self._state == "active":
            await self._step("expire")
            self._state = "expired"
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    @workflow.update
    async def freeze(self, request: BareFreeze) -> str:
        await workflow.wait_condition(lambda: self._state != "freezing")
        return workflow.info().workflow_id

    @workflow.update
    async def capture(self, request: BareResolve) -> str:
        await self._step("capture")
        self._state = "captured"
        return self._state

    @workflow.update
    async def release(self, request: BareResolve) -> str:
        await self._step("release")
        self._state = "released"
        return self._state

    async def _step(self, name: str) -> None:
        await workflow.execute_local_activity(bare_step, name, start_to_close_timeout=_STEP_TIMEOUT)


async def freeze_bare_hold(
    client: Client, *, task_queue: str, idempotency_key: str, ttl_seconds: int
) -> WorkflowHandle[BareHoldWorkflow, str]:
    """Update-With-Start of a bare hold; returns once its freeze answered."""
    request = BareFreeze(idempotency_key=idempotency_key, amount="1.00", ttl_seconds=ttl_seconds)
    operation = WithStartWorkflowOperation(
        BareHoldWorkflow.run,
        request,
        id=f"bare-{uuid.uuid5(uuid.NAMESPACE_URL, idempotency_key)}",
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    await client.execute_update_with_start_workflow(
        BareHoldWorkflow.freeze, request, start_workflow_operation=operation
    )
    return await operation.workflow_handle()
