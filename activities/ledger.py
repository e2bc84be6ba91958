"""Thin activities over ``ledger_db``: one ledger call each, idempotent on its own key.

The HoldWorkflow runs them as local activities (and as regular ones when the local attempts
keep failing); the frozen first HoldWorkflow runs them as regular activities. Either way:

- each activity's idempotency key is the workflow ID plus its step (``hold-<id>:capture``), so a
  retried activity (worker crash, lost completion, injected fault) gets the stored result back
  from the ledger and nothing is posted twice;
- ``now`` is the later of the workflow's time and this host's clock: the time-skipping test
  server runs workflow time ahead of the wall clock, and a step retried after an outage runs
  later than the workflow asked. The ledger computes ``expires_at`` from it at commit;
- right after the commit the activity publishes the hold's unsent events (best effort: a bus
  outage costs nothing but a log line, the relay sends them later) and counts the operation in
  the worker's metrics (``ledger_holds_frozen`` ..., amounts, business errors by code);
- a :class:`ledger_db.errors.LedgerError` becomes a non-retryable ``ApplicationError`` whose
  type is the stable code; anything else (database unreachable, a crash) is retried.

The database calls run on a thread pool as large as the ledger serves calls at once
(``ledger_capacity``: the PostgreSQL connection pool; one for SQLite's single writer), and the
worker gives local activities that many slots: no call waits for a connection or a lock.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.events import EventPublisher, NatsSettings, publish_unsent
from activities.faults import FaultInjector
from ledger_db import Hold, Ledger
from ledger_db import limits as ledger_limits
from ledger_db.errors import IdempotencyKeyReused, LedgerError
from ledger_db.rules.holds import check_fee_bps
from workflows import activity_names
from workflows.models import (
    ActivityStep,
    CaptureActivityInput,
    ExpireActivityInput,
    ExtendActivityInput,
    FinalizeActivityInput,
    FreezeActivityInput,
    FreezeRequest,
    GetHoldActivityInput,
    HoldResult,
    ReleaseActivityInput,
    canonical_amount,
)

__all__ = [
    "LedgerActivities",
    "activity_idempotency_key",
    "business_error",
    "ledger_capacity",
    "step_now",
]

T = TypeVar("T")

# What each step is counted as in the metrics, by the hold state it leaves.
_COUNTERS = {
    ActivityStep.FREEZE: "ledger_holds_frozen",
    ActivityStep.CAPTURE: "ledger_holds_captured",
    ActivityStep.FINALIZE: "ledger_holds_finalized",
    ActivityStep.RELEASE: "ledger_holds_released",
    ActivityStep.EXPIRE: "ledger_holds_expired",
    ActivityStep.EXTEND: "ledger_holds_extended",
}


def activity_idempotency_key(
    workflow_id: str, step: ActivityStep, request_key: str | None = None
) -> str:
    """The ledger idempotency key of one saga step: the workflow ID, a colon, the step.

    Steps a hold may take more than once (an extension) append the caller's own key, or its
    SHA-256 when the whole would not fit the ledger's key length limit.
    """
    key = f"{workflow_id}:{step.value}"
    if request_key is None:
        return key
    candidate = f"{key}:{request_key}"
    if len(candidate) <= ledger_limits.idempotency_key_length_max:
        return candidate
    return f"{key}:sha256:{hashlib.sha256(request_key.encode()).hexdigest()}"


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


def step_now(asked: datetime) -> datetime:
    """The ``now`` a step runs at: never earlier than this host's clock."""
    return max(asked, datetime.now(UTC))


def ledger_capacity(ledger: Ledger) -> int:
    """How many database calls the ledger serves at once.

    PostgreSQL: its connection pool (size plus overflow). SQLite: one, because it has one
    writer at a time; a second thread would only wait inside SQLite's busy handler, which
    sleeps in steps of up to 100 ms, where a queue in this process hands over at once.
    """
    if ledger.engine.dialect.name == "sqlite":
        return 1
    pool = ledger.engine.pool
    size = getattr(pool, "size", None)
    base = int(size()) if callable(size) else 1
    return max(1, base + int(getattr(pool, "_max_overflow", 0) or 0))


class LedgerActivities:
    """The hold saga's ledger activities, bound to one ``Ledger`` (and a test fault hook)."""

    def __init__(
        self,
        ledger: Ledger,
        faults: FaultInjector | None = None,
        publisher: EventPublisher | None = None,
    ) -> None:
        self.ledger = ledger
        self.faults = faults or FaultInjector()
        self.publisher = publisher or EventPublisher(NatsSettings())
        self.capacity = ledger_capacity(ledger)
        self._executor = ThreadPoolExecutor(self.capacity, thread_name_prefix="ledger")
        weakref.finalize(self, self._executor.shutdown, wait=False)

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for ``Worker(activities=...)``."""
        return [
            self.freeze_hold,
            self.capture_hold,
            self.finalize_hold,
            self.release_hold,
            self.expire_hold,
            self.extend_hold,
            self.get_hold,
        ]

    async def _thread(self, function: Callable[..., T], /, **kwargs: Any) -> T:
        # As asyncio.to_thread does: the call sees the activity's context (activity.info()...).
        call = functools.partial(contextvars.copy_context().run, function, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def _call(
        self, step: ActivityStep, function: Callable[..., Hold], /, **kwargs: Any
    ) -> HoldResult:
        try:
            self.faults.before_call(step)
            hold = await self._thread(function, **kwargs)
        except LedgerError as error:
            _count("ledger_business_errors", operation=step.value, code=error.code)
            raise business_error(error) from None
        self.faults.after_commit(step)
        if not hold.replayed:
            self._count_committed(step, hold)
        unpublished = await self._publish(hold)
        exponent = self.ledger.registry.exponent(hold.currency)
        return HoldResult(hold=hold, currency_exponent=exponent, events_unpublished=unpublished)

    async def _publish(self, hold: Hold) -> int:
        """Sends the hold's unsent events now; returns how many are left to the relay."""
        found, sent = await publish_unsent(
            self.ledger,
            self.publisher,
            self._thread,
            best_effort=True,
            tenant_id=hold.tenant_id,
            hold_id=hold.hold_id,
        )
        return found - sent

    def _count_committed(self, step: ActivityStep, hold: Hold) -> None:
        currency = hold.currency
        _count(_COUNTERS[step], currency=currency)
        amount_minor = {
            ActivityStep.FREEZE: hold.amount_minor,
            ActivityStep.CAPTURE: hold.captured_minor,
            ActivityStep.FINALIZE: hold.captured_minor,
            ActivityStep.RELEASE: hold.released_minor,
            ActivityStep.EXPIRE: hold.released_minor,
        }.get(step)
        if amount_minor:
            _count(
                "ledger_hold_amount_minor", amount_minor, operation=step.value, currency=currency
            )
        if step is ActivityStep.FINALIZE and hold.fee_minor:
            _count("ledger_platform_fee_minor", hold.fee_minor, currency=currency)

    @activity.defn(name=activity_names.FREEZE_HOLD)
    async def freeze_hold(self, params: FreezeActivityInput) -> HoldResult:
        """Freezes the money, recording the payout's fee in the hold (fixed from now on)."""
        return await self._call(ActivityStep.FREEZE, self._freeze, params=params)

    def _freeze(self, params: FreezeActivityInput) -> Hold:
        request = params.request
        default_fee = request.fee_bps is None
        fee_bps = check_fee_bps(
            self.ledger.config.platform_fee_bps if default_fee else request.fee_bps
        )
        try:
            hold = self._freeze_with_fee(params, fee_bps)
        except IdempotencyKeyReused:
            # A new run over a hold frozen when the default fee was another: keep that fee.
            recorded = (
                self._recorded_fee(request.tenant_id, params.hold_id) if default_fee else None
            )
            if recorded is None or recorded == fee_bps:
                raise
            hold = self._freeze_with_fee(params, recorded)
        if not hold.replayed:
            return hold
        # The ledger answered from its idempotency record: the hold as it was frozen, not as it
        # is (a run before this one may have resolved it since). Read what it is now. A retry
        # of this very step got its own first attempt's commit: to the caller that is no replay.
        current = self.ledger.get_hold(params.hold_id, tenant_id=request.tenant_id)
        return current.model_copy(update={"replayed": activity.info().attempt == 1})

    def _freeze_with_fee(self, params: FreezeActivityInput, fee_bps: int) -> Hold:
        request = params.request
        return self.ledger.freeze(
            account_id=request.account_id,
            amount=canonical_amount(request.amount),
            reason=request.reason,
            tenant_id=request.tenant_id,
            idempotency_key=activity_idempotency_key(params.workflow_id, ActivityStep.FREEZE),
            ttl_seconds=request.ttl_seconds,
            currency=request.currency,
            payee_account_id=request.payee_account_id,
            hold_id=params.hold_id,
            now=step_now(params.now),
            meta=_freeze_meta(request, fee_bps),
            project_id=request.project_id,
            env=request.env,
            task_id=request.task_id,
        )

    def _recorded_fee(self, tenant_id: str, hold_id: str) -> int | None:
        """The fee recorded in a hold's meta at freeze (None for holds frozen before that)."""
        try:
            recorded = self.ledger.get_hold(hold_id, tenant_id=tenant_id).meta.get("fee_bps")
        except LedgerError:
            return None
        return recorded if isinstance(recorded, int) else None

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
            now=step_now(params.now),
        )

    @activity.defn(name=activity_names.FINALIZE_HOLD)
    async def finalize_hold(self, params: FinalizeActivityInput) -> HoldResult:
        """Pays out with the fee given, else the one recorded at freeze; only holds frozen
        before fees were recorded fall back to the ledger's default of the day."""
        return await self._call(ActivityStep.FINALIZE, self._finalize, params=params)

    def _finalize(self, params: FinalizeActivityInput) -> Hold:
        fee_bps = params.fee_bps
        if fee_bps is None:
            fee_bps = self._recorded_fee(params.tenant_id, params.hold_id)
        return self.ledger.finalize_hold(
            params.hold_id,
            tenant_id=params.tenant_id,
            idempotency_key=activity_idempotency_key(params.workflow_id, ActivityStep.FINALIZE),
            fee_bps=fee_bps,
            now=step_now(params.now),
        )

    @activity.defn(name=activity_names.RELEASE_HOLD)
    async def release_hold(self, params: ReleaseActivityInput) -> HoldResult:
        return await self._call(
            ActivityStep.RELEASE,
            self.ledger.release_hold,
            hold_id=params.hold_id,
            tenant_id=params.tenant_id,
            idempotency_key=activity_idempotency_key(params.workflow_id, ActivityStep.RELEASE),
            now=step_now(params.now),
        )

    @activity.defn(name=activity_names.EXPIRE_HOLD)
    async def expire_hold(self, params: ExpireActivityInput) -> HoldResult:
        return await self._call(
            ActivityStep.EXPIRE,
            self.ledger.expire_hold,
            hold_id=params.hold_id,
            tenant_id=params.tenant_id,
            idempotency_key=activity_idempotency_key(params.workflow_id, ActivityStep.EXPIRE),
            now=step_now(params.now),
        )

    @activity.defn(name=activity_names.EXTEND_HOLD)
    async def extend_hold(self, params: ExtendActivityInput) -> HoldResult:
        request = params.request
        return await self._call(
            ActivityStep.EXTEND,
            self.ledger.extend_hold,
            hold_id=params.hold_id,
            tenant_id=params.tenant_id,
            idempotency_key=activity_idempotency_key(
                params.workflow_id, ActivityStep.EXTEND, request.idempotency_key
            ),
            ttl_seconds=request.ttl_seconds,
            expires_at=request.expires_at,
            now=step_now(params.now),
        )

    @activity.defn(name=activity_names.GET_HOLD)
    async def get_hold(self, params: GetHoldActivityInput) -> HoldResult:
        try:
            hold = await self._thread(
                self.ledger.get_hold, hold_id=params.hold_id, tenant_id=params.tenant_id
            )
        except LedgerError as error:
            raise business_error(error) from None
        exponent = self.ledger.registry.exponent(hold.currency)
        return HoldResult(hold=hold, currency_exponent=exponent)


def _freeze_meta(request: FreezeRequest, fee_bps: int) -> dict[str, Any]:
    meta: dict[str, Any] = {**request.meta, "fee_bps": fee_bps}
    if request.order_id is not None:
        meta["order_id"] = request.order_id
    return meta


def _count(name: str, value: int = 1, **attributes: str) -> None:
    """Adds to one of the worker's ledger counters (exported with the SDK's own metrics)."""
    meter = activity.metric_meter()
    meter.create_counter(name).add(value, attributes)
