"""Inputs, outputs and state of the hold saga: small pydantic records, pure and deterministic.

These models cross the Temporal boundary (pydantic data converter) and are imported by the
workflow sandbox, so this module does no I/O and reads no clock. The ledger's own records
(``ledger_db.models.Hold``...) are reused as-is.

Every wire model ignores fields it does not know (``extra="ignore"``): a newer client that sends
one more field must never jam an older worker, which would otherwise fail the workflow task on
every retry. Fields are only ever added, with defaults, so older payloads keep decoding.
"""

from __future__ import annotations

import enum
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ledger_db.errors import InvalidAmount
from ledger_db.models import Hold, HoldState
from ledger_db.money import canonical_decimal

__all__ = [
    "ALREADY_RESOLVED_CODE",
    "ActivityStep",
    "CaptureActivityInput",
    "CaptureRequest",
    "ExpireActivityInput",
    "ExtendActivityInput",
    "ExtendRequest",
    "FinalizeActivityInput",
    "FreezeActivityInput",
    "FreezeRequest",
    "GetHoldActivityInput",
    "HoldPhase",
    "HoldResult",
    "HoldWorkflowState",
    "PublishEventsInput",
    "ReleaseActivityInput",
    "ReleaseRequest",
    "RetryPayoutRequest",
    "canonical_amount",
    "is_repeat",
    "request_hash",
    "resolution_conflict",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


def canonical_amount(amount: str | None) -> str | None:
    """Decimal text in one canonical spelling ("20.00" and "20" are the same request).

    The grammar is the ledger's (``ledger_db.money``). Text outside it is kept as-is, so that
    hashing a request never raises inside a workflow: the validators and the ledger reject it
    with ``invalid_amount``.
    """
    if amount is None:
        return None
    try:
        return canonical_decimal(amount, allow_zero=True)
    except InvalidAmount:
        return amount


def request_hash(fields: dict[str, Any]) -> str:
    """SHA-256 of a canonical, key-ordered JSON encoding of a request."""
    encoded = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


class FreezeRequest(_Model):
    """What a caller asks for when freezing money: the HoldWorkflow's input and freeze update."""

    tenant_id: str
    idempotency_key: str
    account_id: str
    amount: str = Field(description="decimal text in the account currency's major units")
    reason: str
    ttl_seconds: int
    currency: str | None = Field(default=None, description="if given, must be the account's")
    payee_account_id: str | None = None
    order_id: str | None = None
    fee_bps: int | None = Field(
        default=None,
        description="platform fee of the payout in basis points; None: the ledger's default "
        "as of the freeze (recorded in the hold's meta, never read again at finalize)",
    )
    meta: dict[str, Any] = Field(default_factory=dict)
    project_id: str | None = None
    env: str = "prod"
    task_id: str | None = None

    def canonical_hash(self) -> str:
        """Two freezes under one key are the same request exactly when these hashes match."""
        fields = self.model_dump(mode="json")
        fields["amount"] = canonical_amount(self.amount)
        return request_hash(fields)


class CaptureRequest(_Model):
    """Capture a hold for an order: all of it, or ``amount`` (the remainder is released)."""

    tenant_id: str
    idempotency_key: str
    order_id: str
    amount: str | None = None
    payee_account_id: str | None = None

    def canonical_hash(self) -> str:
        fields = self.model_dump(mode="json")
        fields["amount"] = canonical_amount(self.amount)
        fields["step"] = "capture"
        return request_hash(fields)


class ReleaseRequest(_Model):
    """Release a hold: its money becomes available again."""

    tenant_id: str
    idempotency_key: str

    def canonical_hash(self) -> str:
        return request_hash({"step": "release", **self.model_dump(mode="json")})


class ExtendRequest(_Model):
    """Move an active hold's expiry later: ``ttl_seconds`` from the extension's commit (as at
    freeze), or to ``expires_at``; exactly one of them."""

    tenant_id: str
    idempotency_key: str
    ttl_seconds: int | None = None
    expires_at: datetime | None = None

    def canonical_hash(self) -> str:
        fields = self.model_dump(mode="json")
        if self.expires_at is not None:
            # One instant, one request, whatever time zone it was written in.
            fields["expires_at"] = self.expires_at.astimezone(UTC).isoformat()
        return request_hash({"step": "extend", **fields})


class RetryPayoutRequest(_Model):
    """Try a failed payout (``payout_failed``) again, e.g. after the payee's account reopened.

    The payout happens once whatever the key: a retry of a hold paid out already answers with
    the paid-out hold (``replayed``)."""

    tenant_id: str
    idempotency_key: str


class HoldPhase(enum.StrEnum):
    """Where a HoldWorkflow is. ``rejected`` means the freeze itself failed: there is no hold.

    ``payout_failed``: the capture stands (the money is in escrow) but the payout was refused;
    the workflow waits for a ``retry_payout`` update.
    """

    FREEZING = "freezing"
    ACTIVE = "active"
    CAPTURING = "capturing"
    RELEASING = "releasing"
    EXPIRING = "expiring"
    FINALIZING = "finalizing"
    PAYOUT_FAILED = "payout_failed"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"
    REJECTED = "rejected"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_PHASES


_FINAL_PHASES = frozenset(
    {HoldPhase.CAPTURED, HoldPhase.RELEASED, HoldPhase.EXPIRED, HoldPhase.REJECTED}
)


class HoldWorkflowState(BaseModel):
    """All of a HoldWorkflow's state in one record: the workflow keeps it and changes it in
    place; the ``state`` query and the workflow's result return it as it is.

    Only the workflow writes it (one task at a time, deterministically), so it is mutable and
    not re-validated on assignment. ``claim_resolution`` is the one guard of "a hold resolves
    once" (invariant 6): whichever step claims it first (capture, release or expire) owns the
    resolution, and the claim is given back only if the ledger refused that step.
    """

    model_config = ConfigDict(extra="ignore")

    workflow_id: str
    hold_id: str
    tenant_id: str
    account_id: str
    phase: HoldPhase
    request_hash: str
    request: FreezeRequest | None = Field(default=None, description="the freeze asked for")
    hold: Hold | None = Field(default=None, description="the ledger's latest record of the hold")
    frozen_hold: Hold | None = Field(default=None, description="the hold as the freeze returned it")
    currency_exponent: int = Field(default=0, description="decimals of the hold's currency")
    order_id: str | None = None
    fee_bps: int | None = Field(default=None, description="the payout's fee, fixed at freeze")
    error_code: str | None = Field(default=None, description="why the freeze was rejected")
    error_message: str | None = None
    resolution: str | None = Field(
        default=None, description="capture, release or expire: the step that resolved the hold"
    )
    resolution_idempotency_key: str | None = None
    resolution_request_hash: str | None = None
    payout_error_code: str | None = Field(
        default=None, description="why the last payout attempt was refused (payout_failed)"
    )
    payout_error_message: str | None = None
    last_signal_error_code: str | None = Field(
        default=None, description="a confirm/cancel signal that could not be applied, and why"
    )
    last_signal_error_message: str | None = None
    events_unpublished: int = Field(
        default=0,
        description="the hold's events left unsent by its last step; the relay sends them",
    )
    cancel_requested: bool = Field(
        default=False, description="the workflow was cancelled: it settles the hold, then ends"
    )
    freeze_answers: int = Field(default=0, description="freeze updates answered so far")
    extensions: dict[str, str] = Field(
        default_factory=dict, description="idempotency key -> request hash of each extension"
    )

    def claim_resolution(
        self, step: str, idempotency_key: str | None, request_hash: str | None
    ) -> None:
        """Makes ``step`` the hold's one resolution; a second claim is a programming error."""
        if self.resolution is not None:
            raise AssertionError(f"hold {self.hold_id} is resolved by {self.resolution} already")
        self.resolution = step
        self.resolution_idempotency_key = idempotency_key
        self.resolution_request_hash = request_hash

    def give_back_resolution(self) -> None:
        """The ledger refused the claimed step: the hold is unresolved again."""
        self.resolution = None
        self.resolution_idempotency_key = None
        self.resolution_request_hash = None

    def adopt(self, hold: Hold) -> None:
        """Takes the ledger's record of the hold as the truth and derives the phase from it."""
        self.hold = hold
        if hold.order_id is not None:
            self.order_id = hold.order_id
        if hold.state is not HoldState.ACTIVE and self.resolution is None:
            # Resolved outside this run (an earlier run, the reconciliation, a person).
            self.resolution = _STEP_OF_STATE[hold.state]
        if hold.state is HoldState.CAPTURED and not hold.finalized:
            if self.phase is not HoldPhase.PAYOUT_FAILED:
                self.phase = HoldPhase.FINALIZING
        else:
            self.phase = _PHASE_OF_STATE[hold.state]


_PHASE_OF_STATE = {
    HoldState.ACTIVE: HoldPhase.ACTIVE,
    HoldState.CAPTURED: HoldPhase.CAPTURED,
    HoldState.RELEASED: HoldPhase.RELEASED,
    HoldState.EXPIRED: HoldPhase.EXPIRED,
}

_STEP_OF_STATE = {
    HoldState.CAPTURED: "capture",
    HoldState.RELEASED: "release",
    HoldState.EXPIRED: "expire",
}


class HoldResult(_Model):
    """What a hold activity returns: the ledger's hold and its currency's number of decimals.

    The exponent travels with the hold so that the workflow can check decimal amounts exactly
    without loading the currency registry inside the sandbox. ``events_unpublished``: how many of
    the hold's events were still unsent after the step's activity tried to publish them (the
    relay sends them); None when the activity did not try (a read).
    """

    hold: Hold
    currency_exponent: int
    events_unpublished: int | None = None


ALREADY_RESOLVED_CODE: dict[str, str] = {
    "capture": "hold_already_captured",
    "release": "hold_already_released",
    "expire": "hold_expired",
}


def resolution_conflict(
    state: HoldWorkflowState, step: str, idempotency_key: str, request_hash: str
) -> tuple[str, str] | None:
    """Why ``step`` cannot resolve the hold, as (code, message); None if it may (or repeats).

    The same request under the key that resolved the hold is a repeat (None: answer with the
    original result); the same key with a different request is ``idempotency_key_reused``;
    any other request after a resolution gets the ``hold_already_...`` code of that resolution.
    The workflow and the client (for a workflow that has ended) decide with this one function.
    """
    if state.phase in (HoldPhase.FREEZING, HoldPhase.REJECTED):
        return "hold_not_found", f"hold {state.hold_id} is not frozen"
    if state.resolution is None:
        return None
    if state.resolution == step and state.resolution_idempotency_key == idempotency_key:
        if state.resolution_request_hash != request_hash:
            return (
                "idempotency_key_reused",
                f"idempotency key {idempotency_key!r} was used for a different {step}",
            )
        return None
    code = ALREADY_RESOLVED_CODE.get(state.resolution, "hold_already_released")
    return code, f"hold {state.hold_id} was resolved by {state.resolution}"


def is_repeat(state: HoldWorkflowState, step: str, idempotency_key: str) -> bool:
    """True when ``step`` under ``idempotency_key`` is the request that resolved the hold."""
    return state.resolution == step and state.resolution_idempotency_key == idempotency_key


class ActivityStep(enum.StrEnum):
    """The step constants appended to the workflow ID to form each activity's idempotency key."""

    FREEZE = "freeze"
    CAPTURE = "capture"
    FINALIZE = "finalize"
    RELEASE = "release"
    EXPIRE = "expire"
    EXTEND = "extend"


class FreezeActivityInput(_Model):
    workflow_id: str
    hold_id: str
    request: FreezeRequest
    now: datetime


class CaptureActivityInput(_Model):
    workflow_id: str
    tenant_id: str
    hold_id: str
    request: CaptureRequest
    now: datetime


class FinalizeActivityInput(_Model):
    workflow_id: str
    tenant_id: str
    hold_id: str
    fee_bps: int | None = None
    now: datetime


class ExtendActivityInput(_Model):
    workflow_id: str
    tenant_id: str
    hold_id: str
    request: ExtendRequest
    now: datetime


class ReleaseActivityInput(_Model):
    workflow_id: str
    tenant_id: str
    hold_id: str
    now: datetime


class ExpireActivityInput(_Model):
    workflow_id: str
    tenant_id: str
    hold_id: str
    now: datetime


class GetHoldActivityInput(_Model):
    tenant_id: str
    hold_id: str


class PublishEventsInput(_Model):
    """Publish the outbox events one journal transaction wrote."""

    tenant_id: str
    transaction_id: str
    hold_id: str | None = None
