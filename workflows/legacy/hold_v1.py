"""The first HoldWorkflow (type ``HoldWorkflow``), frozen: it serves the holds it started.

Holds started before the lean HoldWorkflow (type ``HoldWorkflowV2``, ``workflows/hold.py``) run
this code to their end: regular activities for every ledger step, a publish activity after each,
search attributes upserted on every phase. Its histories (``tests/saga/histories/hold_*.json``)
must keep replaying, so nothing in this module changes; the worker registers both types until
no ``HoldWorkflow`` execution is left open (``WorkflowType = 'HoldWorkflow' AND
ExecutionStatus = 'Running'`` in the Web UI or ``temporal workflow count``).

The shape it has, as it was::

    start + update freeze ──> freeze activity ──rejected──> end (no hold)
                                   │ committed
                                   v
              ┌──────────────── ACTIVE ─────────────────┐
     update capture /        update release /      timer (expires_at)
     signal confirm_order    signal cancel_order        │
              v                    v                    v
       capture activity     release activity      expire activity
              v                    v                    v
       finalize activity        RELEASED             EXPIRED
              v
          CAPTURED (paid out)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, ApplicationErrorCategory

with workflow.unsafe.imports_passed_through():
    from ledger_db.errors import InvalidAmount
    from ledger_db.ids import derive_hold_id
    from ledger_db.models import Hold, HoldState
    from ledger_db.money import format_minor, parse_amount
    from workflows import activity_names
    from workflows import search_attributes as sa
    from workflows.models import (
        CaptureActivityInput,
        CaptureRequest,
        ExpireActivityInput,
        FinalizeActivityInput,
        FreezeActivityInput,
        FreezeRequest,
        GetHoldActivityInput,
        HoldPhase,
        HoldResult,
        HoldWorkflowState,
        PublishEventsInput,
        ReleaseActivityInput,
        ReleaseRequest,
        canonical_amount,
        is_repeat,
        resolution_conflict,
    )

__all__ = ["HoldWorkflowV1"]

# Ledger activities retry transient failures (database down, worker crash) for as long as it
# takes: each is idempotent on its own key. Business errors are non-retryable by construction.
LEDGER_ACTIVITY_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
LEDGER_ACTIVITY_TIMEOUT = timedelta(seconds=30)

# Publishing gives up quickly: the outbox keeps the events and the relay sends them later, so a
# bus outage never holds the saga up for long.
PUBLISH_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=4),
    maximum_attempts=3,
)
PUBLISH_TIMEOUT = timedelta(seconds=15)

# When the ledger says "not expired yet" (clock precision between workflow and database), wait
# this long and try again.
EXPIRY_RECHECK = timedelta(seconds=1)

_PHASE_OF_STATE = {
    HoldState.ACTIVE: HoldPhase.ACTIVE,
    HoldState.RELEASED: HoldPhase.RELEASED,
    HoldState.EXPIRED: HoldPhase.EXPIRED,
}

_STEP_OF_STATE = {
    HoldState.CAPTURED: "capture",
    HoldState.RELEASED: "release",
    HoldState.EXPIRED: "expire",
}


def _business_error(code: str, message: str) -> ApplicationError:
    # Benign: a refused request is an answer, not an incident (DEBUG logs, no failure metrics).
    return ApplicationError(
        message, type=code, non_retryable=True, category=ApplicationErrorCategory.BENIGN
    )


def _business_code(error: ActivityError) -> tuple[str, str] | None:
    """The (code, message) of a business error an activity raised, or None for other failures."""
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable and cause.type:
        return cause.type, cause.message
    return None


@workflow.defn(name="HoldWorkflow")
class HoldWorkflowV1:
    """One hold: freeze, then exactly one of capture (then finalize), release or expiry."""

    @workflow.init
    def __init__(self, request: FreezeRequest) -> None:
        self._request = request
        self._request_hash = request.canonical_hash()
        self._workflow_id = workflow.info().workflow_id
        self._hold_id = derive_hold_id(request.tenant_id, request.idempotency_key)
        self._phase = HoldPhase.FREEZING
        self._frozen: Hold | None = None
        self._hold: Hold | None = None
        self._exponent = 0
        self._error: tuple[str, str] | None = None
        # The step resolving the hold (capture, release or expire) claims it synchronously, so
        # that two requests in one workflow task cannot both start a resolution.
        self._resolution: str | None = None
        self._resolution_key: str | None = None
        self._resolution_hash: str | None = None
        self._resolution_busy = False
        self._resolved_hold: Hold | None = None
        self._order_id: str | None = request.order_id
        self._signal_error: tuple[str, str] | None = None
        self._publishes: list[workflow.ActivityHandle[Any]] = []
        self._events_unpublished = 0
        self._freeze_answers = 0

    # -----------------------------------------------------------------------------------------
    # The main line.
    # -----------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: FreezeRequest) -> HoldWorkflowState:
        self._upsert_search_attributes()
        await self._freeze()
        if self._phase is HoldPhase.ACTIVE:
            await self._wait_for_resolution()
        if self._phase is HoldPhase.FINALIZING:
            await self._finalize()
        await self._drain_publishes()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._phase is HoldPhase.REJECTED and self._error is not None:
            # A rejected freeze ends the workflow as failed, with the ledger's code: the ID may
            # then be reused by a corrected freeze, while a hold that existed stays final.
            code, message = self._error
            raise _business_error(code, message)
        return self._state()

    async def _freeze(self) -> None:
        try:
            result = await self._ledger_activity(
                activity_names.FREEZE_HOLD,
                FreezeActivityInput(
                    workflow_id=self._workflow_id,
                    hold_id=self._hold_id,
                    request=self._request,
                    now=workflow.now(),
                ),
            )
        except ActivityError as error:
            business = _business_code(error)
            if business is None:
                raise
            self._error = business
            self._set_phase(HoldPhase.REJECTED)
            return
        self._exponent = result.currency_exponent
        self._frozen = result.hold
        self._adopt(result.hold)
        self._publish(result.hold.freeze_transaction_id)
        if result.hold.resolve_transaction_id is not None:
            # A new run over a hold that an earlier run resolved: the ledger replayed the freeze.
            self._resolution = self._resolution or _STEP_OF_STATE[result.hold.state]
            self._publish(result.hold.resolve_transaction_id)

    async def _wait_for_resolution(self) -> None:
        """Waits for capture or release, or expires the hold when its time comes."""
        assert self._hold is not None
        expires_at = self._hold.expires_at
        while self._phase is HoldPhase.ACTIVE or self._resolution_busy:
            if self._resolution_busy:
                await workflow.wait_condition(lambda: not self._resolution_busy)
                continue
            remaining = expires_at - workflow.now()
            if remaining > timedelta(0):
                # Timers have millisecond resolution: round up so we never wake up early.
                milliseconds = math.ceil(remaining / timedelta(milliseconds=1))
                with contextlib.suppress(asyncio.TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._resolution_busy or self._phase is not HoldPhase.ACTIVE,
                        timeout=timedelta(milliseconds=milliseconds),
                        timeout_summary="hold expiry",
                    )
                continue
            await self._expire()

    async def _expire(self) -> None:
        self._claim("expire", None, None)
        try:
            result = await self._ledger_activity(
                activity_names.EXPIRE_HOLD,
                ExpireActivityInput(
                    workflow_id=self._workflow_id,
                    tenant_id=self._request.tenant_id,
                    hold_id=self._hold_id,
                    now=workflow.now(),
                ),
            )
        except ActivityError as error:
            business = _business_code(error)
            if business is None:
                raise
            self._unclaim()
            if business[0] == "hold_not_expired":
                await workflow.sleep(EXPIRY_RECHECK)
                return
            # The ledger resolved the hold some other way: follow the ledger.
            await self._resync()
            return
        self._resolved(result.hold)

    async def _finalize(self) -> None:
        try:
            result = await self._ledger_activity(
                activity_names.FINALIZE_HOLD,
                FinalizeActivityInput(
                    workflow_id=self._workflow_id,
                    tenant_id=self._request.tenant_id,
                    hold_id=self._hold_id,
                    fee_bps=self._request.fee_bps,
                    now=workflow.now(),
                ),
            )
        except ActivityError as error:
            business = _business_code(error)
            if business is None:
                raise
            # The capture stands; the payout needs a person (e.g. the payee account closed).
            self._error = business
            workflow.logger.error("finalize of hold %s failed: %s", self._hold_id, business)
            self._set_phase(HoldPhase.CAPTURED)
            return
        self._adopt(result.hold)
        if result.hold.finalize_transaction_id is not None:
            self._publish(result.hold.finalize_transaction_id)

    async def _resync(self) -> None:
        result = await self._ledger_activity(
            activity_names.GET_HOLD,
            GetHoldActivityInput(tenant_id=self._request.tenant_id, hold_id=self._hold_id),
        )
        self._adopt(result.hold)
        if result.hold.state is not HoldState.ACTIVE:
            self._resolution = self._resolution or _STEP_OF_STATE[result.hold.state]

    # -----------------------------------------------------------------------------------------
    # Updates, signals and the query.
    # -----------------------------------------------------------------------------------------

    @workflow.update
    async def freeze(self, request: FreezeRequest) -> Hold:
        """Returns the hold once the freeze committed, or the freeze's business error."""
        await workflow.wait_condition(lambda: self._phase is not HoldPhase.FREEZING)
        if self._error is not None and self._frozen is None:
            code, message = self._error
            raise _business_error(code, message)
        assert self._frozen is not None
        # The first answer is the freeze itself; any later one under the same key is a replay.
        self._freeze_answers += 1
        if self._freeze_answers > 1:
            return self._frozen.model_copy(update={"replayed": True})
        return self._frozen

    @freeze.validator
    def _validate_freeze(self, request: FreezeRequest) -> None:
        if request.canonical_hash() != self._request_hash:
            raise _business_error(
                "idempotency_key_reused",
                f"idempotency key {request.idempotency_key!r} was used for a different freeze",
            )

    @workflow.update
    async def capture(self, request: CaptureRequest) -> Hold:
        """Captures the hold (all or part) for an order; returns once the capture committed."""
        return await self._capture(request)

    @capture.validator
    def _validate_capture(self, request: CaptureRequest) -> None:
        self._check_capture(request)

    @workflow.update
    async def release(self, request: ReleaseRequest) -> Hold:
        """Releases the hold; returns once the release committed."""
        return await self._release(request)

    @release.validator
    def _validate_release(self, request: ReleaseRequest) -> None:
        self._check_resolvable(
            "release", request.tenant_id, request.idempotency_key, request.canonical_hash()
        )

    @workflow.signal
    async def confirm_order(self, request: CaptureRequest) -> None:
        """Fire-and-forget capture: a failure is kept in the state for the query to show."""
        try:
            self._check_capture(request)
            await self._capture(request)
        except ApplicationError as error:
            self._signal_error = (error.type or "ledger_error", error.message)

    @workflow.signal
    async def cancel_order(self, request: ReleaseRequest) -> None:
        """Fire-and-forget release: a failure is kept in the state for the query to show."""
        try:
            self._check_resolvable(
                "release", request.tenant_id, request.idempotency_key, request.canonical_hash()
            )
            await self._release(request)
        except ApplicationError as error:
            self._signal_error = (error.type or "ledger_error", error.message)

    @workflow.query
    def state(self) -> HoldWorkflowState:
        """The hold as this workflow sees it."""
        return self._state()

    # -----------------------------------------------------------------------------------------
    # Resolution steps.
    # -----------------------------------------------------------------------------------------

    async def _capture(self, request: CaptureRequest) -> Hold:
        request_hash = request.canonical_hash()
        # Validators of concurrent updates may all have passed: check again, synchronously.
        if self._check_resolvable(
            "capture", request.tenant_id, request.idempotency_key, request_hash
        ):
            return await self._replay_resolution()
        self._check_capture(request)
        self._claim("capture", request.idempotency_key, request_hash)
        self._order_id = request.order_id
        self._set_phase(HoldPhase.CAPTURING)
        try:
            result = await self._ledger_activity(
                activity_names.CAPTURE_HOLD,
                CaptureActivityInput(
                    workflow_id=self._workflow_id,
                    tenant_id=self._request.tenant_id,
                    hold_id=self._hold_id,
                    request=request,
                    now=workflow.now(),
                ),
            )
        except ActivityError as error:
            business = _business_code(error)
            if business is None:
                raise
            self._unclaim()
            self._order_id = self._request.order_id
            self._set_phase(HoldPhase.ACTIVE)
            raise _business_error(*business) from None
        self._resolved(result.hold)
        return result.hold

    async def _release(self, request: ReleaseRequest) -> Hold:
        request_hash = request.canonical_hash()
        if self._check_resolvable(
            "release", request.tenant_id, request.idempotency_key, request_hash
        ):
            return await self._replay_resolution()
        self._claim("release", request.idempotency_key, request_hash)
        self._set_phase(HoldPhase.RELEASING)
        try:
            result = await self._ledger_activity(
                activity_names.RELEASE_HOLD,
                ReleaseActivityInput(
                    workflow_id=self._workflow_id,
                    tenant_id=self._request.tenant_id,
                    hold_id=self._hold_id,
                    now=workflow.now(),
                ),
            )
        except ActivityError as error:
            business = _business_code(error)
            if business is None:
                raise
            self._unclaim()
            self._set_phase(HoldPhase.ACTIVE)
            raise _business_error(*business) from None
        self._resolved(result.hold)
        return result.hold

    async def _replay_resolution(self) -> Hold:
        """The same request under the same key again: the original result, once it exists."""
        await workflow.wait_condition(
            lambda: self._resolved_hold is not None or self._resolution_key is None
        )
        if self._resolved_hold is None:
            raise _business_error("hold_not_found", "the earlier request failed; send it again")
        return self._resolved_hold.model_copy(update={"replayed": True})

    def _check_resolvable(
        self, step: str, tenant_id: str, idempotency_key: str, request_hash: str
    ) -> bool:
        """Raises the business error that rejects ``step``; True if it repeats the resolution."""
        if tenant_id != self._request.tenant_id:
            # Another tenant's hold is indistinguishable from a missing one.
            raise _business_error("hold_not_found", f"hold {self._hold_id} not found")
        state = self._state()
        conflict = resolution_conflict(state, step, idempotency_key, request_hash)
        if conflict is not None:
            raise _business_error(*conflict)
        return is_repeat(state, step, idempotency_key)

    def _check_capture(self, request: CaptureRequest) -> None:
        if self._check_resolvable(
            "capture", request.tenant_id, request.idempotency_key, request.canonical_hash()
        ):
            return
        hold = self._hold
        assert hold is not None
        if not request.order_id.strip():
            raise _business_error("invalid_entry", "order_id must not be empty")
        if workflow.now() >= hold.expires_at:
            raise _business_error("hold_expired", f"hold {self._hold_id} expired")
        if request.payee_account_id is None and hold.payee_account_id is None:
            raise _business_error("payee_required", "no payee given at freeze or at capture")
        if request.amount is not None:
            self._check_capture_amount(request.amount, hold)

    def _check_capture_amount(self, amount: str, hold: Hold) -> None:
        try:
            minor = parse_amount(amount, self._exponent)
        except InvalidAmount as error:
            raise _business_error(error.code, error.message) from None
        if minor > hold.amount_minor:
            raise _business_error(
                "capture_exceeds_hold",
                f"capture {canonical_amount(amount)} exceeds the held "
                f"{format_minor(hold.amount_minor, self._exponent)} {hold.currency}",
            )

    def _claim(self, step: str, idempotency_key: str | None, request_hash: str | None) -> None:
        assert self._resolution is None and not self._resolution_busy
        self._resolution = step
        self._resolution_key = idempotency_key
        self._resolution_hash = request_hash
        self._resolution_busy = True

    def _unclaim(self) -> None:
        self._resolution = None
        self._resolution_key = None
        self._resolution_hash = None
        self._resolution_busy = False

    def _resolved(self, hold: Hold) -> None:
        self._resolved_hold = hold
        self._resolution_busy = False
        self._adopt(hold)
        if hold.resolve_transaction_id is not None:
            self._publish(hold.resolve_transaction_id)

    def _adopt(self, hold: Hold) -> None:
        """Takes the ledger's record of the hold as the truth and derives the phase from it."""
        self._hold = hold
        if hold.order_id is not None:
            self._order_id = hold.order_id
        if hold.state is HoldState.CAPTURED:
            phase = HoldPhase.CAPTURED if hold.finalized else HoldPhase.FINALIZING
        else:
            phase = _PHASE_OF_STATE[hold.state]
        self._set_phase(phase)

    # -----------------------------------------------------------------------------------------
    # Plumbing.
    # -----------------------------------------------------------------------------------------

    async def _ledger_activity(self, name: str, argument: Any) -> HoldResult:
        result: HoldResult = await workflow.execute_activity(
            name,
            argument,
            result_type=HoldResult,
            start_to_close_timeout=LEDGER_ACTIVITY_TIMEOUT,
            retry_policy=LEDGER_ACTIVITY_RETRY_POLICY,
            summary=name.rsplit(".", 1)[-1],
        )
        return result

    def _publish(self, transaction_id: str) -> None:
        """Starts publishing a transaction's events without waiting for it."""
        self._publishes.append(
            workflow.start_activity(
                activity_names.PUBLISH_EVENTS,
                PublishEventsInput(
                    tenant_id=self._request.tenant_id,
                    transaction_id=transaction_id,
                    hold_id=self._hold_id,
                ),
                start_to_close_timeout=PUBLISH_TIMEOUT,
                retry_policy=PUBLISH_RETRY_POLICY,
                summary="publish events",
            )
        )

    async def _drain_publishes(self) -> None:
        """Lets started publishes finish (bounded by their retry policy); failures are counted."""
        for handle in self._publishes:
            try:
                await handle
            except ActivityError:
                self._events_unpublished += 1
        self._publishes.clear()

    def _set_phase(self, phase: HoldPhase) -> None:
        changed = phase is not self._phase
        self._phase = phase
        if changed or phase is HoldPhase.FREEZING:
            self._upsert_search_attributes()
        workflow.set_current_details(self._details())

    def _upsert_search_attributes(self) -> None:
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.LEDGER_TENANT.value_set(self._request.tenant_id),
            sa.LEDGER_ACCOUNT.value_set(self._request.account_id),
            sa.LEDGER_HOLD_STATE.value_set(self._phase.value),
        ]
        if self._hold is None:
            updates.append(sa.LEDGER_AMOUNT.value_set(canonical_amount(self._request.amount) or ""))
        else:
            updates.append(
                sa.LEDGER_AMOUNT.value_set(format_minor(self._hold.amount_minor, self._exponent))
            )
            updates.append(sa.LEDGER_AMOUNT_MINOR.value_set(self._hold.amount_minor))
            updates.append(sa.LEDGER_CURRENCY.value_set(self._hold.currency))
        payee = self._hold.payee_account_id if self._hold else self._request.payee_account_id
        if payee is not None:
            updates.append(sa.LEDGER_PAYEE.value_set(payee))
        if self._order_id is not None:
            updates.append(sa.LEDGER_ORDER.value_set(self._order_id))
        workflow.upsert_search_attributes(updates)

    def _details(self) -> str:
        """Markdown for the Web UI's "current details": what a person needs to read the hold."""
        request = self._request
        lines = [
            f"**Hold** `{self._hold_id}` — **{self._phase.value}**",
            "",
            f"- tenant `{request.tenant_id}`, account `{request.account_id}`",
        ]
        hold = self._hold
        if hold is None:
            lines.append(f"- amount {request.amount} (asked), reason {request.reason}")
        else:
            text = format_minor
            lines.append(
                f"- amount {text(hold.amount_minor, self._exponent)} {hold.currency}, "
                f"reason {hold.reason}, expires {hold.expires_at.isoformat()}"
            )
            if hold.captured_minor or hold.released_minor:
                lines.append(
                    f"- captured {text(hold.captured_minor, self._exponent)}, "
                    f"released {text(hold.released_minor, self._exponent)}"
                    + (f", fee {text(hold.fee_minor, self._exponent)}" if hold.finalized else "")
                )
            if hold.payee_account_id:
                lines.append(f"- payee `{hold.payee_account_id}`")
        if self._order_id:
            lines.append(f"- order `{self._order_id}`")
        if self._error is not None:
            lines.append(f"- error `{self._error[0]}`: {self._error[1]}")
        return "\n".join(lines)

    def _state(self) -> HoldWorkflowState:
        return HoldWorkflowState(
            workflow_id=self._workflow_id,
            hold_id=self._hold_id,
            tenant_id=self._request.tenant_id,
            account_id=self._request.account_id,
            phase=self._phase,
            request_hash=self._request_hash,
            hold=self._hold,
            frozen_hold=self._frozen,
            error_code=self._error[0] if self._error else None,
            error_message=self._error[1] if self._error else None,
            resolution=self._resolution,
            resolution_idempotency_key=self._resolution_key,
            resolution_request_hash=self._resolution_hash,
            last_signal_error_code=self._signal_error[0] if self._signal_error else None,
            last_signal_error_message=self._signal_error[1] if self._signal_error else None,
            events_unpublished=self._events_unpublished,
        )
