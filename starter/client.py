"""The Python client of the compute ledger: the saga through Temporal, the rest straight to the DB.

See ``docs/client-api.md``. Holds go through their ``HoldWorkflow`` (workflow ID
``hold-<hold_id>``, with ``hold_id = derive_hold_id(tenant, idempotency key)``, so a hold ID
finds its workflow without a search); accounts, deposits and reads go to ``ledger_db``.
Every failure surfaces as a :class:`ledger_db.errors.LedgerError` subclass with its stable code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sqlalchemy_exc
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, CancelledError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ledger_db import (
    Account,
    Balance,
    EntriesPage,
    Event,
    Hold,
    Ledger,
    TransactionResult,
)
from ledger_db.errors import (
    HoldNotFound,
    IdempotencyKeyReused,
    InvalidEntry,
    LedgerError,
    LedgerUnavailable,
    error_class_for_code,
)
from ledger_db.ids import derive_hold_id, hold_workflow_id
from ledger_db.money import canonical_decimal
from ledger_db.validation import check_idempotency_key, check_tenant_id
from starter.config import ClientConfig, connect_temporal
from workflows import search_attributes as sa
from workflows.hold import (
    HOLD_WORKFLOW_TYPE,
    LEDGER_ANSWER_TIMEOUT,
    LEDGER_CALL_TIMEOUT,
    HoldWorkflow,
)
from workflows.models import (
    ALREADY_RESOLVED_CODE,
    CaptureRequest,
    ExtendRequest,
    FreezeRequest,
    HoldWorkflowState,
    ReleaseRequest,
    RetryPayoutRequest,
    canonical_amount,
    is_repeat,
    resolution_conflict,
)

# ``ClientConfig`` and ``connect_temporal`` live in ``starter.config``; they stay importable
# from here, where they were first defined.
__all__ = ["ClientConfig", "LedgerClient", "connect_temporal", "ledger_error_from"]

T = TypeVar("T")

# The workflow answers a caller within its outage budget (local attempts, then the regular
# activity's); the client waits a little longer so that the workflow's ``ledger_unavailable``,
# not the client's deadline, is what a caller normally sees.
DEFAULT_ANSWER_DEADLINE = LEDGER_CALL_TIMEOUT + LEDGER_ANSWER_TIMEOUT + timedelta(seconds=15)
# One query or signal RPC.
_RPC_TIMEOUT = timedelta(seconds=30)

_HoldRequest = CaptureRequest | ReleaseRequest | ExtendRequest | RetryPayoutRequest


def ledger_error_from(error: BaseException) -> LedgerError | None:
    """The ledger error a Temporal failure carries (its ``ApplicationError.type``), if any."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, LedgerError):
            return cause
        if isinstance(cause, ApplicationError) and cause.type:
            error_class = error_class_for_code(cause.type)
            if error_class is not LedgerError or cause.type == LedgerError.code:
                return error_class(cause.message)
        cause = cause.__cause__
    return None


def _amount_text(amount: object) -> str:
    """An amount given as text, ``Decimal`` or ``int``, checked against the ledger's one grammar
    (``ledger_db.money``) before anything is sent. Text keeps the caller's spelling ("40.00" is
    shown as such in the hold's summary); ``Decimal`` and ``int`` become canonical text."""
    canonical = canonical_decimal(amount)
    return amount if isinstance(amount, str) else canonical


class LedgerClient:
    """Holds through their workflows; accounts, deposits and reads straight from the ledger."""

    def __init__(
        self,
        temporal: Client,
        ledger: Ledger,
        config: ClientConfig,
        *,
        owns_ledger: bool = True,
        owns_temporal: bool = False,
    ) -> None:
        self._temporal: Client | None = temporal
        self.ledger = ledger
        self.config = config
        self._owns_ledger = owns_ledger
        self._owns_temporal = owns_temporal

    @property
    def temporal(self) -> Client:
        """The Temporal client (with the pydantic data converter)."""
        if self._temporal is None:
            raise RuntimeError("the LedgerClient is closed")
        return self._temporal

    @classmethod
    async def connect(
        cls,
        config: ClientConfig | None = None,
        *,
        temporal: Client | None = None,
        ledger: Ledger | None = None,
    ) -> LedgerClient:
        """Connects to Temporal and opens the ledger (both may be given, e.g. by tests)."""
        config = config or ClientConfig.from_env()
        owns_ledger = ledger is None
        owns_temporal = temporal is None
        if ledger is None:
            ledger = await asyncio.to_thread(Ledger.from_url, config.database_url)
        if temporal is None:
            try:
                temporal = await connect_temporal(config)
            except BaseException:
                if owns_ledger:
                    ledger.close()
                raise
        return cls(temporal, ledger, config, owns_ledger=owns_ledger, owns_temporal=owns_temporal)

    async def close(self) -> None:
        """Closes the ledger and lets go of the Temporal client, if this client opened them.

        Dropping our Temporal client matters: a temporalio client still alive when the
        interpreter finalizes can abort the process (SIGABRT/SIGSEGV in the Rust bridge).
        """
        if self._owns_ledger:
            self.ledger.close()
        if self._owns_temporal:
            self._temporal = None

    async def __aenter__(self) -> LedgerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -----------------------------------------------------------------------------------------
    # The saga.
    # -----------------------------------------------------------------------------------------

    # A caller waits at most this long for a hold operation's answer (the workflow's own budget
    # for a database outage plus queueing); then ``ledger_unavailable``, and the same request
    # under the same key may be sent again. Settable per client.
    answer_deadline: timedelta = DEFAULT_ANSWER_DEADLINE

    async def freeze(
        self,
        account_id: str,
        amount: object,
        reason: str,
        *,
        tenant_id: str,
        idempotency_key: str,
        ttl_seconds: int,
        payee_account_id: str | None = None,
        order_id: str | None = None,
        currency: str | None = None,
        fee_bps: int | None = None,
        meta: Mapping[str, Any] | None = None,
        project_id: str | None = None,
        env: str = "prod",
        task_id: str | None = None,
    ) -> Hold:
        """Freezes money in a new HoldWorkflow; returns the hold once the freeze committed.

        The same key and request again returns the same hold (``replayed=True``); the same key
        with another request raises ``idempotency_key_reused``; a rejected freeze raises its
        code and leaves no hold and no running workflow. ``fee_bps`` (None: the ledger's
        default as of the freeze) is recorded in the hold: its payout uses that fee.
        """
        check_tenant_id(tenant_id)
        check_idempotency_key(idempotency_key)
        request = _request(
            FreezeRequest,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            account_id=account_id,
            amount=_amount_text(amount),
            reason=reason,
            ttl_seconds=ttl_seconds,
            currency=currency,
            payee_account_id=payee_account_id,
            order_id=order_id,
            fee_bps=fee_bps,
            meta=_meta(meta),
            project_id=project_id,
            env=env,
            task_id=task_id,
        )
        workflow_id = hold_workflow_id(derive_hold_id(tenant_id, idempotency_key))
        start_options: dict[str, Any] = {
            "id": workflow_id,
            "task_queue": self.config.task_queue,
            "result_type": HoldWorkflowState,
            "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
            # A hold that existed stays final; a rejected (failed) freeze may be sent again, and
            # a terminated or cancelled run is followed by one that reads what became of it.
            "id_reuse_policy": WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            "search_attributes": _initial_search_attributes(request),
            # People read the amount as the caller wrote it ("40.00"), not canonical ("40").
            "static_summary": _summary(request, str(amount)),
            "static_details": _static_details(request, str(amount)),
        }
        try:
            return await self._within_deadline("freeze", self._start_freeze(request, start_options))
        except WorkflowAlreadyStartedError:
            return await self._freeze_after_end(workflow_id, request)
        except WorkflowUpdateFailedError as error:
            raise _mapped(error) from error
        except RPCError as error:
            # The time-skipping test server reports a closed run's ID as ALREADY_EXISTS; NOT_FOUND:
            # the run ended between start and update (a fast rejection). Read its outcome.
            if error.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.ALREADY_EXISTS):
                raise
            return await self._freeze_after_end(workflow_id, request)

    async def _start_freeze(self, request: FreezeRequest, start_options: dict[str, Any]) -> Hold:
        if self.config.update_with_start:
            operation: WithStartWorkflowOperation[Any, HoldWorkflowState] = (
                WithStartWorkflowOperation(HOLD_WORKFLOW_TYPE, request, **start_options)
            )
            try:
                return await self.temporal.execute_update_with_start_workflow(
                    HoldWorkflow.freeze, request, start_workflow_operation=operation
                )
            except (WorkflowAlreadyStartedError, RPCError):
                # The start's own outcome carries the same error: take it, so that asyncio
                # does not log it as never retrieved.
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(operation.workflow_handle(), 1)
                raise
        handle = await self.temporal.start_workflow(HOLD_WORKFLOW_TYPE, request, **start_options)
        return await handle.execute_update(HoldWorkflow.freeze, request)

    async def _freeze_after_end(self, workflow_id: str, request: FreezeRequest) -> Hold:
        state = await self._final_state(workflow_id, request.tenant_id)
        if state.request_hash != request.canonical_hash():
            raise IdempotencyKeyReused(
                f"idempotency key {request.idempotency_key!r} was used for a different freeze",
            )
        hold = state.frozen_hold or state.hold
        if hold is None:
            raise HoldNotFound(f"hold of workflow {workflow_id} not found")
        return hold.model_copy(update={"replayed": True})

    async def capture_hold(
        self,
        hold_id: str,
        order_id: str,
        *,
        tenant_id: str,
        idempotency_key: str,
        amount: object | None = None,
        payee_account_id: str | None = None,
    ) -> Hold:
        """Captures a hold (all, or ``amount``) for an order; returns after the capture
        committed (the payout to the payee follows in the same workflow task)."""
        check_idempotency_key(idempotency_key)
        request = _request(
            CaptureRequest,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            order_id=order_id,
            amount=None if amount is None else _amount_text(amount),
            payee_account_id=payee_account_id,
        )
        return await self._update(hold_id, "capture", request)

    async def release_hold(self, hold_id: str, *, tenant_id: str, idempotency_key: str) -> Hold:
        """Releases a hold; returns after the release committed."""
        check_idempotency_key(idempotency_key)
        request = _request(ReleaseRequest, tenant_id=tenant_id, idempotency_key=idempotency_key)
        return await self._update(hold_id, "release", request)

    async def extend_hold(
        self,
        hold_id: str,
        *,
        tenant_id: str,
        idempotency_key: str,
        ttl_seconds: int | None = None,
        expires_at: datetime | None = None,
    ) -> Hold:
        """Moves an active hold's expiry later: ``ttl_seconds`` from now, or to ``expires_at``
        (exactly one). The workflow's expiry timer follows; ``LedgerExpiresAt`` too."""
        check_idempotency_key(idempotency_key)
        request = _request(
            ExtendRequest,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            ttl_seconds=ttl_seconds,
            expires_at=expires_at,
        )
        return await self._update(hold_id, "extend", request)

    async def retry_payout(self, hold_id: str, *, tenant_id: str, idempotency_key: str) -> Hold:
        """Tries a refused payout (phase ``payout_failed``) again, e.g. once the payee's account
        is usable; returns the paid-out hold, or raises the payout's refusal again."""
        check_idempotency_key(idempotency_key)
        request = _request(RetryPayoutRequest, tenant_id=tenant_id, idempotency_key=idempotency_key)
        return await self._update(hold_id, "retry_payout", request)

    async def _update(self, hold_id: str, step: str, request: _HoldRequest) -> Hold:
        handle = self._handle(hold_id)
        try:
            return await self._within_deadline(step, self._send_update(handle, request))
        except WorkflowUpdateFailedError as error:
            raise _mapped(error) from error
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
        # The workflow has ended: answer from its final state, as the workflow would have.
        state = await self._final_state(handle.id, request.tenant_id)
        if isinstance(request, CaptureRequest | ReleaseRequest):
            self._raise_conflict(state, step, request.idempotency_key, request.canonical_hash())
        elif not (step == "retry_payout" and state.hold is not None and state.hold.finalized):
            code = ALREADY_RESOLVED_CODE.get(state.resolution or "", "hold_not_found")
            raise error_class_for_code(code)(f"hold {hold_id} was resolved by {state.resolution}")
        assert state.hold is not None
        return state.hold.model_copy(update={"replayed": True})

    @staticmethod
    async def _send_update(
        handle: WorkflowHandle[HoldWorkflow, HoldWorkflowState], request: _HoldRequest
    ) -> Hold:
        if isinstance(request, CaptureRequest):
            return await handle.execute_update(HoldWorkflow.capture, request)
        if isinstance(request, ReleaseRequest):
            return await handle.execute_update(HoldWorkflow.release, request)
        if isinstance(request, ExtendRequest):
            return await handle.execute_update(HoldWorkflow.extend, request)
        return await handle.execute_update(HoldWorkflow.retry_payout, request)

    async def confirm_order(
        self,
        hold_id: str,
        order_id: str,
        *,
        tenant_id: str,
        idempotency_key: str = "confirm_order",
        amount: object | None = None,
        payee_account_id: str | None = None,
    ) -> None:
        """Signal form of capture: returns once the signal is recorded, without a worker."""
        request = _request(
            CaptureRequest,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            order_id=order_id,
            amount=None if amount is None else _amount_text(amount),
            payee_account_id=payee_account_id,
        )
        await self._signal(hold_id, "capture", request)

    async def cancel_order(
        self, hold_id: str, *, tenant_id: str, idempotency_key: str = "cancel_order"
    ) -> None:
        """Signal form of release: returns once the signal is recorded, without a worker."""
        request = _request(ReleaseRequest, tenant_id=tenant_id, idempotency_key=idempotency_key)
        await self._signal(hold_id, "release", request)

    async def _signal(
        self, hold_id: str, step: str, request: CaptureRequest | ReleaseRequest
    ) -> None:
        handle = self._handle(hold_id)
        name = "confirm_order" if isinstance(request, CaptureRequest) else "cancel_order"
        try:
            await self._within_deadline(
                name, handle.signal(name, request, rpc_timeout=_RPC_TIMEOUT)
            )
            return
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
        state = await self._final_state(handle.id, request.tenant_id)
        self._raise_conflict(state, step, request.idempotency_key, request.canonical_hash())

    async def hold_state(self, hold_id: str, *, tenant_id: str) -> HoldWorkflowState:
        """The workflow's view of the hold (a query; works after the workflow ended too)."""
        handle = self._handle(hold_id)
        try:
            state = await self._within_deadline(
                "hold state", handle.query(HoldWorkflow.state, rpc_timeout=_RPC_TIMEOUT)
            )
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                raise HoldNotFound(f"hold {hold_id} not found", hold_id=hold_id) from None
            raise
        if state.tenant_id != tenant_id:
            raise HoldNotFound(f"hold {hold_id} not found", hold_id=hold_id)
        return state

    async def wait_for_hold(
        self, hold_id: str, *, tenant_id: str, timeout: timedelta | None = None
    ) -> Hold:
        """Waits until the hold's workflow ended (captured and paid out, released or expired)
        and returns the ledger's record of the hold. ``timeout`` (None: as long as it takes,
        up to the hold's expiry) raises ``TimeoutError`` when reached; the hold is untouched."""
        ended = self._final_state(self._handle(hold_id).id, tenant_id)
        if timeout is None:
            await ended
        else:
            await asyncio.wait_for(ended, timeout.total_seconds())
        return await self.get_hold(hold_id, tenant_id=tenant_id)

    def _handle(self, hold_id: str) -> WorkflowHandle[HoldWorkflow, HoldWorkflowState]:
        return self.temporal.get_workflow_handle_for(HoldWorkflow.run, hold_workflow_id(hold_id))

    async def _within_deadline(self, what: str, call: Awaitable[T]) -> T:
        """``call``'s answer, or ``ledger_unavailable`` once ``answer_deadline`` has passed."""
        seconds = self.answer_deadline.total_seconds()
        # A timeout scope rather than wait_for: no second task, so a caller's own deadline or
        # cancellation reaches the call unchanged (the SDK reports it as its own error type).
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await call
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            if not deadline.expired():
                raise
            waited = f"{seconds:g} s"
        except RPCError as error:
            # A query or signal's own RPC timeout: no worker answered the query in time.
            if error.status is not RPCStatusCode.DEADLINE_EXCEEDED:
                raise
            waited = f"{_RPC_TIMEOUT.total_seconds():g} s"
        raise LedgerUnavailable(
            f"{what}: no answer within {waited} (is a worker running?); it may still "
            "complete: send the same request again with the same idempotency key"
        )

    async def _final_state(self, workflow_id: str, tenant_id: str) -> HoldWorkflowState:
        handle = self.temporal.get_workflow_handle_for(HoldWorkflow.run, workflow_id)
        try:
            state = await handle.result()
        except WorkflowFailureError as error:
            if isinstance(error.cause, CancelledError):
                # A cancelled run settled the hold before it ended: its state says how.
                state = await handle.query(HoldWorkflow.state, rpc_timeout=_RPC_TIMEOUT)
            else:
                mapped = ledger_error_from(error)
                if mapped is not None and mapped.code != "idempotency_key_reused":
                    # A rejected freeze left no hold.
                    raise HoldNotFound(
                        f"no hold: the freeze was rejected ({mapped.code})"
                    ) from None
                raise
        except RPCError as error:
            if error.status is RPCStatusCode.NOT_FOUND:
                raise HoldNotFound(f"hold of workflow {workflow_id} not found") from None
            raise
        if state.tenant_id != tenant_id:
            raise HoldNotFound(f"hold of workflow {workflow_id} not found")
        return state

    @staticmethod
    def _raise_conflict(
        state: HoldWorkflowState, step: str, idempotency_key: str, request_hash: str
    ) -> None:
        conflict = resolution_conflict(state, step, idempotency_key, request_hash)
        if conflict is not None:
            code, message = conflict
            raise error_class_for_code(code)(message)
        if not is_repeat(state, step, idempotency_key):
            # Ended without a resolution: only possible if the workflow was terminated.
            raise HoldNotFound(f"hold {state.hold_id} has no running workflow")

    # -----------------------------------------------------------------------------------------
    # Straight to the ledger (idempotent, no workflow).
    # -----------------------------------------------------------------------------------------

    async def _ledger(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(functools.partial(function, *args, **kwargs))
        except sqlalchemy_exc.DBAPIError as error:
            # The database is down or restarting (connection refused, the server closed the
            # connection): the typed outage answer, as the workflow gives one, never the
            # driver's exception. The same call may be made again.
            if isinstance(error, sqlalchemy_exc.OperationalError) or error.connection_invalidated:
                raise LedgerUnavailable(
                    f"the ledger database is not reachable: {error.orig or error}"
                ) from error
            raise

    async def open_account(self, **kwargs: Any) -> Account:
        """``Ledger.open_account`` (keyword arguments as there)."""
        return await self._ledger(self.ledger.open_account, **kwargs)

    async def ensure_platform_accounts(self, *, tenant_id: str, currency: str) -> list[Account]:
        return await self._ledger(
            self.ledger.ensure_platform_accounts, tenant_id=tenant_id, currency=currency
        )

    async def deposit(self, account_id: str, amount: object, **kwargs: Any) -> TransactionResult:
        """``Ledger.deposit``: external -> account."""
        return await self._ledger(self.ledger.deposit, account_id, amount, **kwargs)

    async def get_account(self, *, tenant_id: str, account_id: str) -> Account:
        return await self._ledger(
            self.ledger.get_account, tenant_id=tenant_id, account_id=account_id
        )

    async def list_accounts(self, *, tenant_id: str, **kwargs: Any) -> list[Account]:
        return await self._ledger(self.ledger.list_accounts, tenant_id=tenant_id, **kwargs)

    async def get_balance(
        self, account_id: str, *, tenant_id: str, as_of: datetime | None = None
    ) -> Balance:
        return await self._ledger(
            self.ledger.get_balance, account_id, tenant_id=tenant_id, as_of=as_of
        )

    async def get_hold(self, hold_id: str, *, tenant_id: str) -> Hold:
        return await self._ledger(self.ledger.get_hold, hold_id, tenant_id=tenant_id)

    async def list_holds(self, *, tenant_id: str, **kwargs: Any) -> list[Hold]:
        return await self._ledger(self.ledger.list_holds, tenant_id=tenant_id, **kwargs)

    async def list_ledger_entries(
        self,
        account_id: str,
        from_ts: datetime | None = None,
        to_ts: datetime | None = None,
        **kwargs: Any,
    ) -> EntriesPage:
        return await self._ledger(
            self.ledger.list_ledger_entries, account_id, from_ts, to_ts, **kwargs
        )

    async def list_events(self, **kwargs: Any) -> list[Event]:
        """The outbox (the event log): ``tenant_id``, ``after_sequence``, ``limit``..."""
        return await self._ledger(self.ledger.list_events, **kwargs)

    async def get_transaction(self, transaction_id: str, *, tenant_id: str) -> TransactionResult:
        return await self._ledger(self.ledger.get_transaction, transaction_id, tenant_id=tenant_id)


def _meta(meta: object) -> dict[str, Any]:
    """``meta`` as the request carries it: a mapping (its content is the ledger's to check)."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidEntry("meta must be a mapping of names to values", field="meta")
    return dict(meta)


R = TypeVar("R", bound=BaseModel)


def _request(model: type[R], /, **fields: Any) -> R:
    """The wire request, or ``invalid_entry`` naming the first field it refuses: a malformed
    argument is a typed error before anything is sent, never pydantic's ``ValidationError``."""
    try:
        return model(**fields)
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem.get("loc", ())) or model.__name__
        raise InvalidEntry(f"{field}: {problem.get('msg', 'invalid')}", field=field) from None


def _mapped(error: BaseException) -> BaseException:
    mapped = ledger_error_from(error)
    return mapped if mapped is not None else error


def _initial_search_attributes(request: FreezeRequest) -> TypedSearchAttributes:
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.LEDGER_TENANT, request.tenant_id),
        SearchAttributePair(sa.LEDGER_ACCOUNT, request.account_id),
        SearchAttributePair(sa.LEDGER_HOLD_STATE, "freezing"),
        SearchAttributePair(sa.LEDGER_AMOUNT, canonical_amount(request.amount) or ""),
    ]
    if request.currency:
        pairs.append(SearchAttributePair(sa.LEDGER_CURRENCY, request.currency))
    if request.payee_account_id:
        pairs.append(SearchAttributePair(sa.LEDGER_PAYEE, request.payee_account_id))
    if request.order_id:
        pairs.append(SearchAttributePair(sa.LEDGER_ORDER, request.order_id))
    return TypedSearchAttributes(pairs)


def _summary(request: FreezeRequest, amount: str) -> str:
    currency = f" {request.currency}" if request.currency else ""
    return (
        f"Hold {amount}{currency} on {request.tenant_id}/{request.account_id} for {request.reason}"
    )


def _static_details(request: FreezeRequest, amount: str) -> str:
    lines: Sequence[str] = [
        f"**tenant** `{request.tenant_id}`  ",
        f"**account** `{request.account_id}`  ",
        f"**amount** {amount}" + (f" {request.currency}" if request.currency else ""),
        f"**reason** {request.reason}  ",
        f"**ttl** {request.ttl_seconds} s  ",
        f"**idempotency key** `{request.idempotency_key}`  ",
    ]
    extra = [
        f"**payee** `{request.payee_account_id}`  " if request.payee_account_id else "",
        f"**order** `{request.order_id}`  " if request.order_id else "",
    ]
    return "\n".join([*lines, *(line for line in extra if line)])
