"""HoldWorkflow: one negotiation's money, from freeze to capture (and payout), release or expiry.

Life of a hold (workflow type ``HoldWorkflowV2``)::

    start + update freeze ──> freeze ──rejected──> end, failed (no hold; the key may be reused)
                                 │ committed
                                 v
             ┌─────────────── ACTIVE ───────────────┐   update extend: expiry moves later
    update capture /      update release /     timer (expires_at)
    signal confirm_order  signal cancel_order       │
             v                  v                   v
          capture            release              expire
             v                  v                   v
          payout ──refused──> PAYOUT_FAILED     RELEASED / EXPIRED
             v                  │ update retry_payout
          CAPTURED <────────────┘

Lean by construction: every ledger step is a *local* activity, so a freeze costs the workflow
task that starts the workflow, and a capture with its payout the task of the capture update: a
complete hold is two workflow tasks and no activity task. Each step's activity publishes the
events its transaction wrote right after the commit (the relay sends what it could not). When
the local attempts keep failing (the database is down) the step moves to a regular activity,
which the server retries without workflow tasks, for a bounded time: a caller waiting on the
step then gets ``ledger_unavailable``; steps nobody waits on (expiry, payout) keep trying.

Every ledger step is idempotent on the workflow ID plus the step, so a retried step returns the
ledger's stored result and nothing is posted twice. The rules (may this hold be captured, for
how much...) are ``ledger_db.rules.holds``, the ledger's own: validators refuse what the ledger
would refuse before it reaches history, and a refusal is an ``ApplicationError`` whose type is
the stable code. Nothing a caller sends fails a workflow task: updates are refused by their
validator, signals and the start payload are read inside the workflow, and a signal that
cannot apply is recorded in the state (``last_signal_error_code``).

All state is one :class:`~workflows.models.HoldWorkflowState`; one ``asyncio.Lock`` runs the
ledger steps one at a time, and ``claim_resolution`` guards the single resolution. A cancelled
workflow settles first: it releases an active hold, or finishes a committed capture's payout.

No I/O, clock or database import here: time is ``workflow.now()``, handed to every step.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ApplicationErrorCategory,
    FailureError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from ledger_db.errors import LedgerError
    from ledger_db.ids import derive_hold_id
    from ledger_db.models import Hold
    from ledger_db.money import format_minor
    from ledger_db.rules import holds as rules
    from workflows import activity_names
    from workflows import search_attributes as sa
    from workflows.models import (
        ALREADY_RESOLVED_CODE,
        CaptureActivityInput,
        CaptureRequest,
        ExpireActivityInput,
        ExtendActivityInput,
        ExtendRequest,
        FinalizeActivityInput,
        FreezeActivityInput,
        FreezeRequest,
        GetHoldActivityInput,
        HoldPhase,
        HoldResult,
        HoldWorkflowState,
        ReleaseActivityInput,
        ReleaseRequest,
        RetryPayoutRequest,
        canonical_amount,
        is_repeat,
        resolution_conflict,
    )

__all__ = [
    "DATABASE_BUSY_TIMEOUT",
    "HOLD_WORKFLOW_TYPE",
    "LEDGER_ANSWER_TIMEOUT",
    "LEDGER_CALL_TIMEOUT",
    "HoldWorkflow",
]

HOLD_WORKFLOW_TYPE = "HoldWorkflowV2"

# The longest a healthy database makes a call wait: SQLite's busy timeout (``PRAGMA
# busy_timeout`` in ``ledger_db.database``, checked by a test). One attempt may take longer than
# that, so that a slow call is never abandoned while it still holds the lock and doubled by a
# retry.
DATABASE_BUSY_TIMEOUT = timedelta(seconds=60)
LEDGER_CALL_TIMEOUT = DATABASE_BUSY_TIMEOUT + timedelta(seconds=15)
# First a few quick attempts inside the workflow task (a lock conflict, a dropped connection)...
LOCAL_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=1),
    maximum_attempts=3,
)
# ...then a regular activity, which the server retries with no workflow task and no history.
REGULAR_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)
# How long a caller waiting on a step (freeze, capture, release, extend, retry_payout) waits for
# the database to come back, after the local attempts, before the step answers
# ``ledger_unavailable``: about 90 s when connections are refused, at most LEDGER_CALL_TIMEOUT
# more when they hang.
LEDGER_ANSWER_TIMEOUT = timedelta(seconds=90)
# Steps nobody waits on (expiry, payout, settling after a cancel) try in rounds until they get an
# answer; after a week of rounds the workflow fails and the hourly reconciliation takes over.
BACKGROUND_ROUND_TIMEOUT = timedelta(minutes=30)
BACKGROUND_PAUSE = timedelta(minutes=1)
BACKGROUND_ROUNDS_MAX = 7 * 24 * 2
# The ledger refused to expire a hold whose expiry it agrees with (the host clocks disagree by a
# hair): wait this long before asking again.
EXPIRY_RECHECK = timedelta(seconds=1)
EXTENSIONS_MAX = 100
# A signal's error message is kept in the state: never megabytes of someone's payload.
ERROR_MESSAGE_LENGTH_MAX = 500

# The phases worth a search attribute upsert: where a person looks for holds. The others
# (finalizing between a capture and its payout) last a moment inside one workflow task.
_PUBLISHED_PHASES = frozenset(
    {
        HoldPhase.ACTIVE,
        HoldPhase.PAYOUT_FAILED,
        HoldPhase.CAPTURED,
        HoldPhase.RELEASED,
        HoldPhase.EXPIRED,
        HoldPhase.REJECTED,
    }
)

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")


def _refused(code: str, message: str) -> ApplicationError:
    # Benign: a refused request is an answer, not an incident (DEBUG logs, no failure metrics).
    return ApplicationError(
        message[:ERROR_MESSAGE_LENGTH_MAX],
        type=code,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


def _rule(check: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Runs a ``ledger_db.rules`` check; its typed ledger error becomes the business error."""
    try:
        return check(*args, **kwargs)
    except LedgerError as error:
        raise _refused(error.code, error.message) from None


def _decode(raw: RawValue, model: type[ModelT]) -> ModelT:
    """A payload read inside the workflow, so that junk is a business error, not a task failure."""
    try:
        decoded: ModelT = workflow.payload_converter().from_payload(raw.payload, model)
    except Exception as error:
        raise _refused("invalid_entry", f"the request could not be read: {error}") from None
    return decoded


def _business_code(error: FailureError) -> tuple[str, str] | None:
    """The (code, message) of a business error an activity raised, or None for other failures.

    A regular activity's failure arrives as an ``ActivityError`` around it, a local activity's
    as the failure itself; a business error is a non-retryable ``ApplicationError`` with a type.
    """
    failure = error.cause if isinstance(error, ActivityError) else error
    if isinstance(failure, ApplicationError) and failure.non_retryable and failure.type:
        return failure.type, failure.message
    return None


@workflow.defn(name=HOLD_WORKFLOW_TYPE)
class HoldWorkflow:
    """One hold: freeze, then exactly one of capture (then payout), release or expiry."""

    @workflow.init
    def __init__(self, start: RawValue) -> None:
        workflow_id = workflow.info().workflow_id
        refusal: ApplicationError | None = None
        request: FreezeRequest | None = None
        try:
            request = _decode(start, FreezeRequest)
        except ApplicationError as error:
            refusal = error
        self._state = HoldWorkflowState(
            workflow_id=workflow_id,
            hold_id=derive_hold_id(request.tenant_id, request.idempotency_key) if request else "",
            tenant_id=request.tenant_id if request else "",
            account_id=request.account_id if request else "",
            phase=HoldPhase.FREEZING,
            request_hash=request.canonical_hash() if request else "",
            request=request,
            order_id=request.order_id if request else None,
        )
        if refusal is not None:
            # A start payload this version cannot read: the workflow ends as a rejected freeze.
            self._state.phase = HoldPhase.REJECTED
            self._state.error_code = refusal.type
            self._state.error_message = refusal.message
        # Ledger steps run one at a time, in the order they asked.
        self._ledger_lock = asyncio.Lock()
        self._published_phase: HoldPhase | None = None

    # -----------------------------------------------------------------------------------------
    # The main line.
    # -----------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: RawValue) -> HoldWorkflowState:
        try:
            await self._freeze()
            await self._wait_for_resolution()
            await self._pay_out()
        except asyncio.CancelledError:
            self._state.cancel_requested = True
        if self._state.cancel_requested:
            await self._settle_after_cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._state.cancel_requested:
            raise asyncio.CancelledError("the hold workflow was cancelled; the hold is settled")
        if self._state.phase is HoldPhase.REJECTED:
            # A rejected freeze ends the workflow as failed, with the ledger's code: the ID may
            # then be reused by a corrected freeze, while a hold that existed stays final.
            raise _refused(
                self._state.error_code or "invalid_entry", self._state.error_message or ""
            )
        return self._state

    async def _freeze(self) -> None:
        """Freezes the money; a new run over a hold frozen before reads what became of it."""
        request = self._state.request
        if request is None:
            self._set_phase(HoldPhase.REJECTED)
            return
        try:
            result = await self._ledger(
                activity_names.FREEZE_HOLD,
                FreezeActivityInput(
                    workflow_id=self._state.workflow_id,
                    hold_id=self._state.hold_id,
                    request=request,
                    now=workflow.now(),
                ),
                caller_waiting=True,
            )
            replayed = result.hold.replayed
            if replayed:
                # The ledger answered from its idempotency record: the hold as it was frozen,
                # not as it is now (an earlier run may have resolved it since).
                result = await self._get_hold(caller_waiting=True)
        except ApplicationError as error:
            self._reject(error.type or "ledger_error", error.message)
            return
        frozen = result.hold
        self._state.frozen_hold = (
            frozen.model_copy(update={"replayed": True}) if replayed else frozen
        )
        self._state.currency_exponent = result.currency_exponent
        self._state.fee_bps = result.hold.meta.get("fee_bps", request.fee_bps)
        self._adopt(result)

    async def _wait_for_resolution(self) -> None:
        """Waits for a capture or a release, or expires the hold when its time comes."""
        while self._state.phase is HoldPhase.ACTIVE and not self._state.cancel_requested:
            hold = self._state.hold
            assert hold is not None
            expires_at = hold.expires_at
            remaining = expires_at - workflow.now()
            if remaining > timedelta(0):
                # Timers have millisecond resolution: round up so as never to wake up early.
                # An extension changes expires_at, which ends this wait and arms a new timer.
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        functools.partial(self._expiry_wait_is_over, expires_at),
                        timeout=timedelta(milliseconds=math.ceil(remaining / _MILLISECOND)),
                        timeout_summary="hold expiry",
                    )
                continue
            if await self._expire() == "recheck":
                await workflow.sleep(EXPIRY_RECHECK)

    def _expiry_wait_is_over(self, armed_for: datetime) -> bool:
        hold = self._state.hold
        return (
            self._state.phase is not HoldPhase.ACTIVE
            or self._state.cancel_requested
            or hold is None
            or hold.expires_at != armed_for
        )

    async def _pay_out(self) -> None:
        """After a capture: pays the payee; a refused payout waits for ``retry_payout``."""
        if self._state.phase is HoldPhase.FINALIZING:
            async with self._ledger_lock:
                await self._finalize()
        await workflow.wait_condition(
            lambda: self._state.phase is not HoldPhase.PAYOUT_FAILED or self._state.cancel_requested
        )

    async def _settle_after_cancel(self) -> None:
        """A cancelled workflow leaves no money held or in escrow, then ends: an active hold is
        released, a committed capture is paid out (a refused payout stays ``payout_failed``)."""
        async with self._ledger_lock:
            if self._state.phase is HoldPhase.ACTIVE:
                self._state.claim_resolution("release", None, None)
                try:
                    result = await self._ledger(
                        activity_names.RELEASE_HOLD,
                        self._step_input(ReleaseActivityInput),
                        caller_waiting=False,
                    )
                except ApplicationError:
                    # Resolved some other way meanwhile: follow the ledger.
                    self._state.give_back_resolution()
                    result = await self._get_hold(caller_waiting=False)
                self._adopt(result)
            if self._state.phase is HoldPhase.FINALIZING:
                await self._finalize()

    # -----------------------------------------------------------------------------------------
    # Steps the workflow takes by itself.
    # -----------------------------------------------------------------------------------------

    async def _expire(self) -> str:
        """Expires the hold; ``recheck`` when the ledger says it is not time yet."""
        async with self._ledger_lock:
            hold = self._state.hold
            if self._state.phase is not HoldPhase.ACTIVE or hold is None:
                return "resolved"  # while this step waited for its turn
            if workflow.now() < hold.expires_at:
                return "extended"  # meanwhile: the timer is armed again
            self._state.claim_resolution("expire", None, None)
            try:
                result = await self._ledger(
                    activity_names.EXPIRE_HOLD,
                    self._step_input(ExpireActivityInput),
                    caller_waiting=False,
                )
            except ApplicationError:
                # The ledger knows better: the hold was extended or resolved outside this
                # workflow (hold_not_expired, hold_already_...). Read it and follow it.
                self._state.give_back_resolution()
                result = await self._get_hold(caller_waiting=False)
                self._adopt(result)
                unchanged = result.hold.expires_at == hold.expires_at
                return "recheck" if unchanged and result.hold.state == hold.state else "followed"
            self._adopt(result)
            return "expired"

    async def _finalize(self) -> None:
        """Pays a captured hold out of escrow with the fee fixed at freeze (lock held)."""
        try:
            result = await self._ledger(
                activity_names.FINALIZE_HOLD,
                self._step_input(FinalizeActivityInput, fee_bps=self._state.fee_bps),
                caller_waiting=False,
            )
        except ApplicationError as error:
            # The capture stands; the payout needs a person (e.g. the payee account closed).
            workflow.logger.warning("payout of hold %s refused: %s", self._state.hold_id, error)
            self._state.payout_error_code = error.type
            self._state.payout_error_message = error.message
            self._set_phase(HoldPhase.PAYOUT_FAILED)
            return
        self._state.payout_error_code = self._state.payout_error_message = None
        self._adopt(result)

    async def _get_hold(self, *, caller_waiting: bool) -> HoldResult:
        return await self._ledger(
            activity_names.GET_HOLD,
            GetHoldActivityInput(tenant_id=self._state.tenant_id, hold_id=self._state.hold_id),
            caller_waiting=caller_waiting,
        )

    # -----------------------------------------------------------------------------------------
    # Updates, signals and the query.
    # -----------------------------------------------------------------------------------------

    @workflow.update
    async def freeze(self, request: FreezeRequest) -> Hold:
        """Returns the hold once the freeze committed, or the freeze's business error."""
        await workflow.wait_condition(lambda: self._state.phase is not HoldPhase.FREEZING)
        frozen = self._state.frozen_hold
        if frozen is None:
            raise _refused(
                self._state.error_code or "ledger_error", self._state.error_message or ""
            )
        # The first answer is the freeze itself; any later one under the same key is a replay.
        self._state.freeze_answers += 1
        if self._state.freeze_answers > 1:
            return frozen.model_copy(update={"replayed": True})
        return frozen

    @freeze.validator
    def _validate_freeze(self, request: FreezeRequest) -> None:
        if self._state.request is not None and request.canonical_hash() != self._state.request_hash:
            self._refuse(
                "freeze",
                "idempotency_key_reused",
                f"idempotency key {request.idempotency_key!r} was used for a different freeze",
            )

    @workflow.update
    async def capture(self, request: CaptureRequest) -> Hold:
        """Captures the hold (all or part) for an order; returns once the capture committed.

        The payout follows in the same workflow task."""
        return await self._capture(request)

    @capture.validator
    def _validate_capture(self, request: CaptureRequest) -> None:
        self._counted("capture", self._check_capture, request)

    @workflow.update
    async def release(self, request: ReleaseRequest) -> Hold:
        """Releases the hold; returns once the release committed."""
        return await self._release(request)

    @release.validator
    def _validate_release(self, request: ReleaseRequest) -> None:
        self._counted("release", self._check_release, request)

    @workflow.update
    async def extend(self, request: ExtendRequest) -> Hold:
        """Moves the hold's expiry later; the expiry timer follows the new time."""
        async with self._ledger_lock:
            repeat = self._check_extend(request)
            result = await self._ledger(
                activity_names.EXTEND_HOLD,
                self._step_input(ExtendActivityInput, request=request),
                caller_waiting=True,
            )
            if repeat:
                return result.hold  # the earlier extension's answer, replayed by the ledger
            self._state.extensions[request.idempotency_key] = request.canonical_hash()
            self._adopt(result)
            self._publish_search_attributes()  # LedgerExpiresAt moved
            return result.hold

    @extend.validator
    def _validate_extend(self, request: ExtendRequest) -> None:
        self._counted("extend", self._check_extend, request)

    @workflow.update
    async def retry_payout(self, request: RetryPayoutRequest) -> Hold:
        """Tries a refused payout again; answers with the paid-out hold, or the refusal."""
        async with self._ledger_lock:
            self._check_retry_payout(request)
            hold = self._state.hold
            assert hold is not None
            if self._state.phase is not HoldPhase.PAYOUT_FAILED:
                return hold.model_copy(update={"replayed": True})  # paid out already
            await self._finalize()
            if self._state.phase is HoldPhase.PAYOUT_FAILED:
                raise _refused(
                    self._state.payout_error_code or "ledger_error",
                    self._state.payout_error_message or "",
                )
            hold = self._state.hold
            assert hold is not None
            return hold

    @retry_payout.validator
    def _validate_retry_payout(self, request: RetryPayoutRequest) -> None:
        self._counted("retry_payout", self._check_retry_payout, request)

    @workflow.signal
    async def confirm_order(self, raw: RawValue) -> None:
        """Fire-and-forget capture: a failure is kept in the state for the query to show."""
        try:
            request = _decode(raw, CaptureRequest)
            self._check_capture(request)
            await self._capture(request)
        except Exception as error:
            self._record_signal_error("capture", error)

    @workflow.signal
    async def cancel_order(self, raw: RawValue) -> None:
        """Fire-and-forget release: a failure is kept in the state for the query to show."""
        try:
            request = _decode(raw, ReleaseRequest)
            self._check_release(request)
            await self._release(request)
        except Exception as error:
            self._record_signal_error("release", error)

    @workflow.query
    def state(self) -> HoldWorkflowState:
        """The hold as this workflow sees it: all of the workflow's state."""
        return self._state

    # -----------------------------------------------------------------------------------------
    # Resolution steps asked for by callers.
    # -----------------------------------------------------------------------------------------

    async def _capture(self, request: CaptureRequest) -> Hold:
        return await self._resolve(
            "capture",
            request,
            self._check_capture,
            activity_names.CAPTURE_HOLD,
            self._step_input(CaptureActivityInput, request=request),
        )

    async def _release(self, request: ReleaseRequest) -> Hold:
        return await self._resolve(
            "release",
            request,
            self._check_release,
            activity_names.RELEASE_HOLD,
            self._step_input(ReleaseActivityInput),
        )

    async def _resolve(
        self,
        step: str,
        request: CaptureRequest | ReleaseRequest,
        check: Callable[[Any], bool],
        activity: str,
        argument: BaseModel,
    ) -> Hold:
        """A caller's capture or release: checked again in its turn, then the one resolution."""
        async with self._ledger_lock:
            # Validators of concurrent updates may all have passed: check again, in turn.
            if check(request):
                return await self._repeated_resolution()
            self._state.claim_resolution(step, request.idempotency_key, request.canonical_hash())
            try:
                result = await self._ledger(activity, argument, caller_waiting=True)
            except ApplicationError:
                # The ledger refused what the rules allowed (e.g. an unknown payee account):
                # the hold stays active and takes another request.
                self._state.give_back_resolution()
                raise
            self._adopt(result)
            return result.hold

    async def _repeated_resolution(self) -> Hold:
        """The request that resolved the hold, sent again: the original result."""
        hold = self._state.hold
        assert hold is not None
        return hold.model_copy(update={"replayed": True})

    def _step_input(self, model: type[ModelT], **fields: Any) -> ModelT:
        """A ledger step's input: this hold, this workflow, ``now``, and ``fields``."""
        return model(
            workflow_id=self._state.workflow_id,
            tenant_id=self._state.tenant_id,
            hold_id=self._state.hold_id,
            now=workflow.now(),
            **fields,
        )

    # -----------------------------------------------------------------------------------------
    # Checks: the validators' and the handlers' (which check again in their turn).
    # -----------------------------------------------------------------------------------------

    def _check_resolvable(
        self, step: str, tenant_id: str, idempotency_key: str, request_hash: str
    ) -> bool:
        """Raises the business error that refuses ``step``; True if it repeats the resolution."""
        if tenant_id != self._state.tenant_id:
            # Another tenant's hold is indistinguishable from a missing one.
            raise _refused("hold_not_found", f"hold {self._state.hold_id} not found")
        conflict = resolution_conflict(self._state, step, idempotency_key, request_hash)
        if conflict is not None:
            raise _refused(*conflict)
        return is_repeat(self._state, step, idempotency_key)

    def _check_capture(self, request: CaptureRequest) -> bool:
        """The capture rules on the ledger's last answer; True if the request is a repeat."""
        if self._check_resolvable(
            "capture", request.tenant_id, request.idempotency_key, request.canonical_hash()
        ):
            return True
        hold = self._state.hold
        assert hold is not None
        _rule(
            rules.check_capture,
            hold,
            order_id=request.order_id,
            amount=request.amount,
            exponent=self._state.currency_exponent,
            payee_account_id=request.payee_account_id,
            now=workflow.now(),
        )
        return False

    def _check_release(self, request: ReleaseRequest) -> bool:
        if self._check_resolvable(
            "release", request.tenant_id, request.idempotency_key, request.canonical_hash()
        ):
            return True
        hold = self._state.hold
        assert hold is not None
        _rule(rules.check_release, hold)
        return False

    def _check_extend(self, request: ExtendRequest) -> bool:
        """The extension rules; True if the request repeats an earlier extension."""
        if request.tenant_id != self._state.tenant_id or self._state.hold is None:
            raise _refused("hold_not_found", f"hold {self._state.hold_id} not found")
        known = self._state.extensions.get(request.idempotency_key)
        if known is not None:
            if known != request.canonical_hash():
                raise _refused(
                    "idempotency_key_reused",
                    f"idempotency key {request.idempotency_key!r} was used for another extension",
                )
            return True
        if len(self._state.extensions) >= EXTENSIONS_MAX:
            raise _refused("invalid_entry", f"a hold is extended at most {EXTENSIONS_MAX} times")
        if self._state.resolution is not None:
            # Claimed by a step in flight, or resolved: the hold's expiry no longer matters.
            code = ALREADY_RESOLVED_CODE[self._state.resolution]
            raise _refused(
                code, f"hold {self._state.hold_id} was resolved by {self._state.resolution}"
            )
        _rule(
            rules.check_extend,
            self._state.hold,
            ttl_seconds=request.ttl_seconds,
            expires_at=request.expires_at,
            now=workflow.now(),
        )
        return False

    def _check_retry_payout(self, request: RetryPayoutRequest) -> None:
        if request.tenant_id != self._state.tenant_id:
            raise _refused("hold_not_found", f"hold {self._state.hold_id} not found")
        hold = self._state.hold
        if self._state.resolution != "capture" or hold is None:
            raise _refused("hold_not_captured", f"hold {self._state.hold_id} is not captured")

    def _counted(self, step: str, check: Callable[[Any], object], request: Any) -> None:
        """Runs a validator's check, counting its refusal by code in the worker's metrics."""
        try:
            check(request)
        except ApplicationError as error:
            _refusals_counter().add(1, {"operation": step, "code": error.type or "ledger_error"})
            raise

    def _refuse(self, step: str, code: str, message: str) -> None:
        _refusals_counter().add(1, {"operation": step, "code": code})
        raise _refused(code, message)

    def _record_signal_error(self, step: str, error: Exception) -> None:
        if isinstance(error, ApplicationError) and error.type:
            code, message = error.type, error.message
        else:
            # Not a refusal but a fault; the signal is still recorded rather than lost.
            code, message = "invalid_entry", f"{type(error).__name__}: {error}"
        workflow.logger.info("signal %s to hold %s refused: %s", step, self._state.hold_id, code)
        _refusals_counter().add(1, {"operation": step, "code": code})
        self._state.last_signal_error_code = code
        self._state.last_signal_error_message = message[:ERROR_MESSAGE_LENGTH_MAX]

    # -----------------------------------------------------------------------------------------
    # Plumbing.
    # -----------------------------------------------------------------------------------------

    async def _ledger(self, name: str, argument: Any, *, caller_waiting: bool) -> HoldResult:
        """One ledger step; a cancellation of the workflow lets it finish, then is honoured."""
        step = asyncio.ensure_future(self._ledger_attempts(name, argument, caller_waiting))
        try:
            return await asyncio.shield(step)
        except asyncio.CancelledError:
            # Money must not be left half-decided: the step runs to its answer, and the
            # workflow settles the hold after it.
            self._state.cancel_requested = True
            return await step

    async def _ledger_attempts(self, name: str, argument: Any, caller_waiting: bool) -> HoldResult:
        """A local activity first; a regular one when the local attempts keep failing."""
        summary = name.rsplit(".", 1)[-1]
        try:
            result: HoldResult = await workflow.execute_local_activity(
                name,
                argument,
                result_type=HoldResult,
                start_to_close_timeout=LEDGER_CALL_TIMEOUT,
                schedule_to_close_timeout=LEDGER_CALL_TIMEOUT,
                retry_policy=LOCAL_RETRY_POLICY,
                summary=summary,
            )
            return self._received(result)
        except FailureError as error:
            self._raise_business_error(error)
        # The database does not answer: say where the hold stands, then hand the step to the
        # server's retries (no workflow task per attempt) for a bounded time per round.
        self._publish_search_attributes()
        rounds = 1 if caller_waiting else BACKGROUND_ROUNDS_MAX
        for round_number in range(rounds):
            if round_number:
                await workflow.sleep(BACKGROUND_PAUSE)
            try:
                result = await workflow.execute_activity(
                    name,
                    argument,
                    result_type=HoldResult,
                    start_to_close_timeout=LEDGER_CALL_TIMEOUT,
                    schedule_to_close_timeout=(
                        LEDGER_ANSWER_TIMEOUT if caller_waiting else BACKGROUND_ROUND_TIMEOUT
                    ),
                    retry_policy=REGULAR_RETRY_POLICY,
                    summary=summary,
                )
                return self._received(result)
            except FailureError as error:
                self._raise_business_error(error)
                workflow.logger.warning("%s: the ledger does not answer: %s", name, error)
        raise _refused("ledger_unavailable", f"the ledger did not answer {summary} in time")

    def _raise_business_error(self, error: FailureError) -> None:
        """Raises the business error a failed step carries; returns for a transient failure."""
        if is_cancelled_exception(error):
            raise error
        business = _business_code(error)
        if business is not None:
            raise _refused(*business) from None

    def _received(self, result: HoldResult) -> HoldResult:
        if result.events_unpublished is not None:
            self._state.events_unpublished = result.events_unpublished
        return result

    def _adopt(self, result: HoldResult) -> None:
        self._state.currency_exponent = result.currency_exponent
        self._state.adopt(result.hold)
        self._set_phase(self._state.phase)

    def _reject(self, code: str, message: str) -> None:
        self._state.error_code = code
        self._state.error_message = message
        self._set_phase(HoldPhase.REJECTED)

    def _set_phase(self, phase: HoldPhase) -> None:
        self._state.phase = phase
        if phase in _PUBLISHED_PHASES and phase is not self._published_phase:
            self._publish_search_attributes()
        workflow.set_current_details(self._details())

    def _publish_search_attributes(self) -> None:
        """Upserts the search attributes whose value changed (none: no command at all)."""
        state = self._state
        self._published_phase = state.phase
        wanted: list[tuple[SearchAttributeKey[Any], Any]] = [
            (sa.LEDGER_HOLD_STATE, state.phase.value)
        ]
        if state.request is not None:
            wanted += [(sa.LEDGER_TENANT, state.tenant_id), (sa.LEDGER_ACCOUNT, state.account_id)]
        hold = state.hold
        if hold is not None:
            wanted += [
                (sa.LEDGER_AMOUNT, format_minor(hold.amount_minor, state.currency_exponent)),
                (sa.LEDGER_AMOUNT_MINOR, hold.amount_minor),
                (sa.LEDGER_CURRENCY, hold.currency),
                (sa.LEDGER_EXPIRES_AT, hold.expires_at),
            ]
            if hold.payee_account_id is not None:
                wanted.append((sa.LEDGER_PAYEE, hold.payee_account_id))
        if state.order_id is not None:
            wanted.append((sa.LEDGER_ORDER, state.order_id))
        current = workflow.info().typed_search_attributes
        updates: list[SearchAttributeUpdate[Any]] = [
            key.value_set(value) for key, value in wanted if current.get(key) != value
        ]
        if updates:
            workflow.upsert_search_attributes(updates)

    def _details(self) -> str:
        """Markdown for the Web UI's "current details": what a person needs to read the hold."""
        state = self._state
        lines = [f"**Hold** `{state.hold_id}` — **{state.phase.value}**", ""]
        lines.append(f"- tenant `{state.tenant_id}`, account `{state.account_id}`")
        hold = state.hold
        if hold is None and state.request is not None:
            amount = canonical_amount(state.request.amount)
            lines.append(f"- amount {amount} (asked), reason {state.request.reason}")
        if hold is not None:
            text, exponent = format_minor, state.currency_exponent
            lines.append(
                f"- amount {text(hold.amount_minor, exponent)} {hold.currency}, "
                f"reason {hold.reason}, expires {hold.expires_at.isoformat()}"
            )
            if hold.captured_minor or hold.released_minor:
                lines.append(
                    f"- captured {text(hold.captured_minor, exponent)}, "
                    f"released {text(hold.released_minor, exponent)}"
                    + (f", fee {text(hold.fee_minor, exponent)}" if hold.finalized else "")
                )
            if hold.payee_account_id:
                lines.append(f"- payee `{hold.payee_account_id}`")
        if state.order_id:
            lines.append(f"- order `{state.order_id}`")
        if state.error_code is not None:
            lines.append(f"- error `{state.error_code}`: {state.error_message}")
        if state.payout_error_code is not None:
            lines.append(
                f"- payout refused `{state.payout_error_code}`: {state.payout_error_message}"
            )
        return "\n".join(lines)


_MILLISECOND = timedelta(milliseconds=1)


def _refusals_counter() -> Any:
    """Requests refused by the workflow itself (validators, signals), by operation and code."""
    return workflow.metric_meter().create_counter(
        "ledger_requests_refused",
        description="hold requests refused before reaching the ledger, by operation and code",
    )
