"""Thin activities over ``ledger_db``: one ledger call each, idempotent on its own key.

Each activity's idempotency key is the workflow ID plus its step (``hold-<id>:capture``), so a
retried activity (worker crash, lost completion, injected fault) gets the stored result back
from the ledger and nothing is posted twice. A :class:`ledger_db.errors.LedgerError` becomes a
non-retryable ``ApplicationError`` whose type is the stable error code; anything else (database
unreachable, a crash) is retried by Temporal.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.faults import FaultInjector
from ledger_db import Hold, Ledger
from ledger_db.errors import LedgerError
from workflows import activity_names
from workflows.models import (
    ActivityStep,
    CaptureActivityInput,
    ExpireActivityInput,
    FinalizeActivityInput,
    FreezeActivityInput,
    GetHoldActivityInput,
    HoldResult,
    ReleaseActivityInput,
    canonical_amount,
)

__all__ = ["LedgerActivities", "activity_idempotency_key", "business_error"]

T = TypeVar("T")


def activity_idempotency_key(workflow_id: str, step: ActivityStep) -> str:
    """The ledger idempotency key of one saga step: the workflow ID, a colon, the step."""
    return f"{workflow_id}:{step.value}"


def business_error(error: LedgerError) -> ApplicationError:
    """A ledger error as a non-retryable activity failure typed with its stable code.

    Business outcomes (no funds, already captured...) are benign: logged at DEBUG, not counted
    as activity failures in metrics.
    """
    return ApplicationError(
        error.message,
        error.to_dict(),
        type=error.code,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


class LedgerActivities:
    """The hold saga's ledger activities, bound to one ``Ledger`` (and a test fault hook)."""

    def __init__(self, ledger: Ledger, faults: FaultInjector | None = None) -> None:
        self.ledger = ledger
        self.faults = faults or FaultInjector()

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for ``Worker(activities=...)``."""
        return [
            self.freeze_hold,
            self.capture_hold,
            self.finalize_hold,
            self.release_hold,
            self.expire_hold,
            self.get_hold,
        ]

    async def _call(self, step: str, function: Callable[..., Hold], /, **kwargs: Any) -> HoldResult:
        try:
            hold = await asyncio.to_thread(functools.partial(function, **kwargs))
        except LedgerError as error:
            raise business_error(error) from None
        self.faults.after_commit(step)
        exponent = self.ledger.registry.exponent(hold.currency)
        return HoldResult(hold=hold, currency_exponent=exponent)

    @activity.defn(name=activity_names.FREEZE_HOLD)
    async def freeze_hold(self, params: FreezeActivityInput) -> HoldResult:
        request = params.request
        return await self._call(
            ActivityStep.FREEZE,
            self.ledger.freeze,
            account_id=request.account_id,
            amount=canonical_amount(request.amount),
            reason=request.reason,
            tenant_id=request.tenant_id,
            idempotency_key=activity_idempotency_key(params.workflow_id, ActivityStep.FREEZE),
            ttl_seconds=request.ttl_seconds,
            currency=request.currency,
            payee_account_id=request.payee_account_id,
            hold_id=params.hold_id,
            now=params.now,
            meta=_freeze_meta(request.meta, request.order_id),
            project_id=request.project_id,
            env=request.env,
            task_id=request.task_id,
        )

    @activity.defn(name=activity_names.CAPTURE_HOLD)
    async def capture_hold(self, params: CaptureActivityInput) -> HoldResult:
        request = params.request
        return await self._call(
            ActivityStep.CAPTURE,
            self.ledger.capture_hold,
            hold_id=params.hold_id,
            order_id=request.order_id,
            tenant_id=params.tenant_id,
            idempotency_key=activity_idempotency_key(params.workflow_id, ActivityStep.CAPTURE),
            amount=canonical_amount(request.amount),
            payee_account_id=request.payee_account_id,
            now=params.now,
        )

    @activity.defn(name=activity_names.FINALIZE_HOLD)
    async def finalize_hold(self, params: FinalizeActivityInput) -> HoldResult:
        return await self._call(
            ActivityStep.FINALIZE,
            self.ledger.finalize_hold,
            hold_id=params.hold_id,
            tenant_id=params.tenant_id,
            idempotency_key=activity_idempotency_key(params.workflow_id, ActivityStep.FINALIZE),
            fee_bps=params.fee_bps,
            now=params.now,
        )

    @activity.defn(name=activity_names.RELEASE_HOLD)
    async def release_hold(self, params: ReleaseActivityInput) -> HoldResult:
        return await self._call(
            ActivityStep.RELEASE,
            self.ledger.release_hold,
            hold_id=params.hold_id,
            tenant_id=params.tenant_id,
            idempotency_key=activity_idempotency_key(params.workflow_id, ActivityStep.RELEASE),
            now=params.now,
        )

    @activity.defn(name=activity_names.EXPIRE_HOLD)
    async def expire_hold(self, params: ExpireActivityInput) -> HoldResult:
        return await self._call(
            ActivityStep.EXPIRE,
            self.ledger.expire_hold,
            hold_id=params.hold_id,
            tenant_id=params.tenant_id,
            idempotency_key=activity_idempotency_key(params.workflow_id, ActivityStep.EXPIRE),
            now=params.now,
        )

    @activity.defn(name=activity_names.GET_HOLD)
    async def get_hold(self, params: GetHoldActivityInput) -> HoldResult:
        return await self._call(
            "get_hold", self.ledger.get_hold, hold_id=params.hold_id, tenant_id=params.tenant_id
        )


def _freeze_meta(meta: dict[str, Any], order_id: str | None) -> dict[str, Any] | None:
    if order_id is None:
        return meta or None
    return {**meta, "order_id": order_id}
