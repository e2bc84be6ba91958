"""The rules of a hold: may it be captured, released, expired or extended, and with what result.

Each ``check_*`` takes the hold as loaded (:class:`ledger_db.models.Hold`), the request and
``now``, runs its checks in precedence order (the request's own shape first, then the hold's
state, then its time, then amounts and parties) and raises the typed error of the first one that
fails. After the last check the operation must succeed: what remains is writing the decision.

The ledger calls these inside its write transaction with the locked row; the HoldWorkflow calls
them in its update validators with the ledger's last answer and ``workflow.now()``, so a request
the ledger would refuse is refused before it reaches the workflow's history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ledger_db import limits
from ledger_db.errors import (
    AccountNotFound,
    CaptureExceedsHold,
    HoldAlreadyCaptured,
    HoldAlreadyFinalized,
    HoldAlreadyReleased,
    HoldExpired,
    HoldNotCaptured,
    HoldNotExpired,
    InvalidEntry,
    PayeeRequired,
    TtlOutOfRange,
)
from ledger_db.models import AccountKind, Direction, Hold, HoldState
from ledger_db.money import CurrencyRegistry, format_minor, parse_amount, platform_fee_minor
from ledger_db.rules.accounts import AccountRecord, check_agent, check_available, check_currency
from ledger_db.rules.postings import Posting, move
from ledger_db.rules.requests import FreezeRequest
from ledger_db.validation import (
    check_account_id,
    check_instant,
    check_text,
    check_ttl_seconds,
    instant_after,
    iso,
)
from ledger_db.vocabulary import (
    CATEGORY_COMPUTE_COST,
    CATEGORY_FEE,
    CATEGORY_HOLD,
    CATEGORY_PRODUCT_REVENUE,
    REASON_HOLD_EXPIRE,
    REASON_HOLD_FREEZE,
    REASON_HOLD_RELEASE,
    REASON_ORDER_CAPTURE,
    REASON_PLATFORM_FEE,
    REASON_SALE_REVENUE,
    EventType,
    hold_bucket_id,
    system_account_id,
)

__all__ = [
    "CaptureDecision",
    "EventDraft",
    "FreezeDecision",
    "HoldDecision",
    "check_capture",
    "check_expire",
    "check_extend",
    "check_fee_bps",
    "check_finalize",
    "check_freeze",
    "check_release",
    "check_unresolved",
    "decide_capture",
    "decide_finalize",
    "decide_freeze",
    "decide_release",
    "extension_event",
    "finalize_account_ids",
    "hold_posting_fields",
    "money",
]


@dataclass(frozen=True)
class CaptureDecision:
    """What a capture that passed every check does: ``captured_minor`` goes to escrow for the
    payee, ``released_minor`` (the rest of the hold) back to the paying account."""

    captured_minor: int
    released_minor: int
    payee_account_id: str


def check_unresolved(hold: Hold) -> None:
    """A hold resolves once: a resolved hold refuses with the code of its resolution."""
    if hold.state is HoldState.CAPTURED:
        raise HoldAlreadyCaptured(
            f"hold {hold.hold_id!r} was captured already", hold_id=hold.hold_id
        )
    if hold.state is HoldState.RELEASED:
        raise HoldAlreadyReleased(
            f"hold {hold.hold_id!r} was released already", hold_id=hold.hold_id
        )
    if hold.state is HoldState.EXPIRED:
        raise HoldExpired(f"hold {hold.hold_id!r} expired", hold_id=hold.hold_id)


def check_capture(
    hold: Hold,
    *,
    order_id: object,
    amount: object | None,
    exponent: int,
    payee_account_id: object | None,
    now: datetime,
    currency: str | None = None,
    registry: CurrencyRegistry | None = None,
) -> CaptureDecision:
    """Capture ``amount`` (decimal text in major units; None: all of it) for ``order_id``.

    ``exponent`` is the hold currency's number of decimals. The payee is the one fixed at freeze
    or, if none was, the one given now; it cannot change and cannot be the paying account.
    A ``currency`` the caller names (checked with ``registry``) must be the hold's.
    """
    check_text(order_id, "order_id")
    if payee_account_id is not None:
        check_account_id(payee_account_id, field="payee_account_id")
    check_unresolved(hold)
    if now >= hold.expires_at:
        raise HoldExpired(
            f"hold {hold.hold_id!r} expired at {hold.expires_at.isoformat()}", hold_id=hold.hold_id
        )
    if currency is not None:
        assert registry is not None, "a currency is checked against a registry"
        check_currency(currency, hold.currency, registry)
    captured_minor = hold.amount_minor if amount is None else parse_amount(amount, exponent)
    if captured_minor > hold.amount_minor:
        raise CaptureExceedsHold(
            f"capture of {format_minor(captured_minor, exponent)} exceeds the hold's "
            f"{format_minor(hold.amount_minor, exponent)} {hold.currency}",
            hold_id=hold.hold_id,
        )
    payee = hold.payee_account_id
    if payee_account_id is not None:
        if payee is not None and payee != payee_account_id:
            raise InvalidEntry(
                "the payee was set at freeze and cannot change at capture",
                field="payee_account_id",
            )
        payee = str(payee_account_id)
    if payee is None:
        raise PayeeRequired("a payee is needed at freeze or at capture", hold_id=hold.hold_id)
    if payee == hold.account_id:
        raise InvalidEntry("the payee cannot be the paying account", field="payee_account_id")
    return CaptureDecision(
        captured_minor=captured_minor,
        released_minor=hold.amount_minor - captured_minor,
        payee_account_id=payee,
    )


def check_release(hold: Hold) -> None:
    """Release the whole of a hold. Any unresolved hold may be released, even one whose expiry
    has passed and whose timer has not fired yet: the money goes back to the payer either way."""
    check_unresolved(hold)


def check_expire(hold: Hold, *, now: datetime) -> None:
    """Expire a hold: only once its expiry time has come (``now >= expires_at``)."""
    check_unresolved(hold)
    if now < hold.expires_at:
        raise HoldNotExpired(
            f"hold {hold.hold_id!r} expires at {hold.expires_at.isoformat()}", hold_id=hold.hold_id
        )


def check_extend(
    hold: Hold,
    *,
    ttl_seconds: object | None = None,
    expires_at: object | None = None,
    now: datetime,
) -> datetime:
    """Move an active hold's expiry later; returns the new ``expires_at``.

    Exactly one of ``ttl_seconds`` (the hold then expires that long after ``now``, as at freeze)
    and ``expires_at`` (an instant, timezone-aware) is given. The new expiry must be later than
    the current one and within the TTL bounds counted from ``now``; an expired or resolved hold
    cannot be extended.
    """
    if (ttl_seconds is None) == (expires_at is None):
        raise InvalidEntry("give exactly one of ttl_seconds and expires_at", field="ttl_seconds")
    if ttl_seconds is not None:
        new_expires_at = now + timedelta(seconds=check_ttl_seconds(ttl_seconds))
    else:
        new_expires_at = check_instant(expires_at, "expires_at")
    check_unresolved(hold)
    if now >= hold.expires_at:
        raise HoldExpired(
            f"hold {hold.hold_id!r} expired at {hold.expires_at.isoformat()}", hold_id=hold.hold_id
        )
    if new_expires_at <= hold.expires_at:
        raise TtlOutOfRange(
            f"an extension must move the expiry later than {hold.expires_at.isoformat()}",
            hold_id=hold.hold_id,
        )
    if new_expires_at - now > timedelta(seconds=limits.hold_ttl_seconds_max):
        raise TtlOutOfRange(
            f"a hold expires at most {limits.hold_ttl_seconds_max} seconds from now",
            hold_id=hold.hold_id,
        )
    return new_expires_at


def check_fee_bps(fee_bps: object) -> int:
    """The platform fee of a payout, in basis points of the captured amount (0 to 10 000)."""
    if (
        isinstance(fee_bps, bool)
        or not isinstance(fee_bps, int)
        or not 0 <= fee_bps <= limits.fee_basis_points_max
    ):
        raise InvalidEntry(
            f"fee_bps must be a whole number from 0 to {limits.fee_basis_points_max}",
            field="fee_bps",
        )
    return fee_bps


# ---------------------------------------------------------------------------- decisions


def money(amount_minor: int, currency: str, registry: CurrencyRegistry) -> dict[str, Any]:
    """An amount as event payloads carry it: decimal text, minor units and currency."""
    return {
        "amount": registry.to_text(amount_minor, currency),
        "amount_minor": amount_minor,
        "currency": currency,
    }


@dataclass(frozen=True)
class EventDraft:
    """An outbox event decided on: the store gives it its ID, tenant, time and transaction."""

    event_type: EventType
    payload: dict[str, Any]
    hold_id: str | None = None
    order_id: str | None = None
    account_id: str | None = None


@dataclass(frozen=True)
class HoldDecision:
    """What a capture, finalize, release or expiry that passed every check writes: the postings
    of its journal transaction (and the meta hashed with it), the accounts it locks, the hold
    row's new values and its event."""

    postings: list[Posting]
    locked_account_ids: list[str]
    hold_update: dict[str, Any]
    event: EventDraft
    journal_meta: dict[str, Any] = field(default_factory=dict)


def hold_posting_fields(hold: Hold) -> dict[str, Any]:
    """The fields every posting of a hold's movements carries, from the hold as frozen."""
    meta = hold.meta or {}
    return {
        "currency": hold.currency,
        "env": meta.get("env") or "prod",
        "project_id": meta.get("project_id"),
        "task_id": meta.get("task_id"),
        "hold_id": hold.hold_id,
    }


# ------------------------------------------------------------------- freeze


def check_freeze(
    request: FreezeRequest,
    account: AccountRecord | None,
    payee: AccountRecord | None,
    *,
    hold_exists: bool,
    registry: CurrencyRegistry,
) -> int:
    """The checks of a freeze before its accounts are locked; returns the amount in minor units.

    The paying account first (it exists, is an open agent account, of the named currency; the
    amount is valid in its currency), then the payee if one is named (likewise, same currency),
    then the hold ID (unused).
    """
    account_id, payee_account_id = request.account_id, request.payee_account_id
    currency, hold_id = request.currency, request.hold_id
    if account is None:
        raise AccountNotFound(f"account {account_id!r} not found", account_id=account_id)
    check_agent(account)
    check_currency(currency, account.currency, registry)
    amount_minor = registry.to_minor(request.amount, account.currency)
    if payee_account_id is not None:
        if payee is None:
            raise AccountNotFound(
                f"account {payee_account_id!r} not found", account_id=payee_account_id
            )
        check_agent(payee, "payee_account_id")
        check_currency(payee.currency, account.currency, registry)
    if hold_exists:
        raise InvalidEntry(f"hold {hold_id!r} exists already", field="hold_id")
    return amount_minor


@dataclass(frozen=True)
class FreezeDecision:
    """What a freeze writes: its postings (account -> its bucket), the hold row and its event."""

    postings: list[Posting]
    journal_meta: dict[str, Any]
    hold_row: dict[str, Any]
    event: EventDraft
    expires_at: datetime


def decide_freeze(
    request: FreezeRequest,
    account: AccountRecord,
    *,
    amount_minor: int,
    transaction_id: str,
    now: datetime,
    registry: CurrencyRegistry,
) -> FreezeDecision:
    """Under the account's lock: the available balance covers the amount; the hold expires
    ``ttl_seconds`` after ``now``."""
    hold_id, reason, payee_account_id = request.hold_id, request.reason, request.payee_account_id
    labels = request.labels
    project_id, env, task_id = labels["project_id"], labels["env"], labels["task_id"]
    check_available(account, amount_minor, registry)
    expires_at = instant_after(now, request.ttl_seconds, "expires_at")
    common: dict[str, Any] = {
        "amount_minor": amount_minor,
        "currency": account.currency,
        "reason": REASON_HOLD_FREEZE,
        "category": CATEGORY_HOLD,
        "env": env,
        "project_id": project_id,
        "task_id": task_id,
        "hold_id": hold_id,
        "meta": {"freeze_reason": reason},
    }
    account_id = account.account_id
    postings = [
        Posting(account_id=account_id, direction=Direction.OUT, **common),
        Posting(account_id=hold_bucket_id(account_id), direction=Direction.IN, **common),
    ]
    hold_row = {
        "hold_id": hold_id,
        "account_id": account_id,
        "currency": account.currency,
        "amount_minor": amount_minor,
        "state": HoldState.ACTIVE.value,
        "reason": reason,
        "payee_account_id": payee_account_id,
        "order_id": None,
        "captured_minor": 0,
        "released_minor": 0,
        "fee_minor": 0,
        "finalized": False,
        "expires_at": expires_at,
        "created_at": now,
        "resolved_at": None,
        "freeze_transaction_id": transaction_id,
        "meta": {**labels["meta"], "project_id": project_id, "env": env, "task_id": task_id},
    }
    event = EventDraft(
        event_type=EventType.INTENT_CREATED,
        hold_id=hold_id,
        account_id=account_id,
        payload={
            "billing": {
                **money(amount_minor, account.currency, registry),
                "hold_id": hold_id,
                "account_id": account_id,
                "payee_account_id": payee_account_id,
                "reason": reason,
                "expires_at": iso(expires_at),
            }
        },
    )
    return FreezeDecision(
        postings=postings,
        # Hashed with the journal, so that audit can check the hold row's payee and expiry.
        journal_meta={"payee_account_id": payee_account_id, "expires_at": iso(expires_at)},
        hold_row=hold_row,
        event=event,
        expires_at=expires_at,
    )


# ------------------------------------------------------------------- capture


def decide_capture(
    hold: Hold,
    capture: CaptureDecision,
    payee: AccountRecord | None,
    *,
    order_id: str,
    transaction_id: str,
    now: datetime,
    registry: CurrencyRegistry,
) -> HoldDecision:
    """After :func:`check_capture`: the payee account exists, is an open agent account of the
    hold's currency. The captured part goes from the bucket to escrow, the rest back to the
    payer, in one journal transaction."""
    payee_id = capture.payee_account_id
    if payee is None:
        raise AccountNotFound(f"account {payee_id!r} not found", account_id=payee_id)
    check_agent(payee, "payee_account_id")
    check_currency(payee.currency, hold.currency, registry)
    bucket = hold_bucket_id(hold.account_id)
    escrow = system_account_id(AccountKind.ESCROW, hold.currency)
    captured, remainder = capture.captured_minor, capture.released_minor
    common = hold_posting_fields(hold)
    postings = move(
        bucket,
        escrow,
        captured,
        REASON_ORDER_CAPTURE,
        CATEGORY_COMPUTE_COST,
        common,
        meta={"order_id": order_id},
        counterpart="target",
    )
    if remainder:
        postings += move(
            bucket, hold.account_id, remainder, REASON_HOLD_RELEASE, CATEGORY_HOLD, common
        )
    return HoldDecision(
        postings=postings,
        locked_account_ids=[hold.account_id, bucket, escrow],
        # Hashed with the journal, so that audit can check the hold row's settlement.
        journal_meta={
            "order_id": order_id,
            "payee_account_id": payee_id,
            "captured_minor": captured,
            "released_minor": remainder,
        },
        hold_update={
            "state": HoldState.CAPTURED.value,
            "captured_minor": captured,
            "released_minor": remainder,
            "order_id": order_id,
            "payee_account_id": payee_id,
            "resolved_at": now,
            "resolve_transaction_id": transaction_id,
        },
        event=EventDraft(
            event_type=EventType.ORDER_CREATED,
            hold_id=hold.hold_id,
            order_id=order_id,
            account_id=hold.account_id,
            payload={
                "settlement": {
                    "order_id": order_id,
                    "hold_id": hold.hold_id,
                    "payer_account_id": hold.account_id,
                    "payee_account_id": payee_id,
                    "escrow_account_id": escrow,
                    "captured": money(captured, hold.currency, registry),
                    "released": money(remainder, hold.currency, registry) if remainder else None,
                    "held": money(hold.amount_minor, hold.currency, registry),
                }
            },
        ),
    )


# ------------------------------------------------------------------- finalize


def check_finalize(hold: Hold) -> str:
    """Only a captured hold is paid out, once; returns its payee."""
    if hold.state is not HoldState.CAPTURED:
        raise HoldNotCaptured(
            f"hold {hold.hold_id!r} is {hold.state}, not captured", hold_id=hold.hold_id
        )
    if hold.finalized:
        raise HoldAlreadyFinalized(
            f"hold {hold.hold_id!r} was finalized already", hold_id=hold.hold_id
        )
    assert hold.payee_account_id is not None, "a captured hold has a payee"
    return hold.payee_account_id


def finalize_account_ids(hold: Hold) -> list[str]:
    """The accounts a payout locks: escrow, revenue and the payee."""
    return [
        system_account_id(AccountKind.ESCROW, hold.currency),
        system_account_id(AccountKind.REVENUE, hold.currency),
        check_finalize(hold),
    ]


def decide_finalize(
    hold: Hold,
    escrow: AccountRecord,
    *,
    fee_bps: int,
    transaction_id: str,
    registry: CurrencyRegistry,
) -> HoldDecision:
    """Under the locks: escrow covers the captured amount; the payee gets it net of the
    platform fee (rounded down in the payee's favour), revenue gets the fee."""
    payee_id = check_finalize(hold)
    captured = hold.captured_minor
    check_available(escrow, captured, registry)
    fee = platform_fee_minor(captured, fee_bps)
    net = captured - fee
    revenue = system_account_id(AccountKind.REVENUE, hold.currency)
    common = hold_posting_fields(hold)
    meta = {"order_id": hold.order_id, "fee_bps": fee_bps}
    postings: list[Posting] = []
    if net:
        postings += move(
            escrow.account_id,
            payee_id,
            net,
            REASON_SALE_REVENUE,
            CATEGORY_PRODUCT_REVENUE,
            common,
            meta=meta,
            counterpart="source",
        )
    if fee:
        postings += move(
            escrow.account_id,
            revenue,
            fee,
            REASON_PLATFORM_FEE,
            CATEGORY_FEE,
            common,
            meta=meta,
            counterpart="source",
        )
    return HoldDecision(
        postings=postings,
        locked_account_ids=[escrow.account_id, revenue, payee_id],
        journal_meta={**meta, "payee_account_id": payee_id, "fee_minor": fee, "net_minor": net},
        hold_update={
            "finalized": True,
            "fee_minor": fee,
            "finalize_transaction_id": transaction_id,
        },
        event=EventDraft(
            event_type=EventType.PAYMENT_SUCCEEDED,
            hold_id=hold.hold_id,
            order_id=hold.order_id,
            account_id=payee_id,
            payload={
                "payment": {
                    "order_id": hold.order_id,
                    "hold_id": hold.hold_id,
                    "payer_account_id": hold.account_id,
                    "payee_account_id": payee_id,
                    "gross": money(captured, hold.currency, registry),
                    "net": money(net, hold.currency, registry),
                    "fee": money(fee, hold.currency, registry),
                    "fee_bps": fee_bps,
                    "revenue_account_id": revenue,
                }
            },
        ),
    )


# ------------------------------------------------------------------- release, expire, extend


def decide_release(
    hold: Hold,
    *,
    expire: bool,
    transaction_id: str,
    now: datetime,
    registry: CurrencyRegistry,
) -> HoldDecision:
    """Release (or, once its time has come, expire) the whole hold back to the payer."""
    if expire:
        check_expire(hold, now=now)
    else:
        check_release(hold)
    bucket = hold_bucket_id(hold.account_id)
    state = HoldState.EXPIRED if expire else HoldState.RELEASED
    return HoldDecision(
        postings=move(
            bucket,
            hold.account_id,
            hold.amount_minor,
            REASON_HOLD_EXPIRE if expire else REASON_HOLD_RELEASE,
            CATEGORY_HOLD,
            hold_posting_fields(hold),
        ),
        locked_account_ids=[hold.account_id, bucket],
        hold_update={
            "state": state.value,
            "released_minor": hold.amount_minor,
            "resolved_at": now,
            "resolve_transaction_id": transaction_id,
        },
        event=EventDraft(
            event_type=EventType.HOLD_EXPIRED if expire else EventType.HOLD_RELEASED,
            hold_id=hold.hold_id,
            account_id=hold.account_id,
            payload={
                "hold_id": hold.hold_id,
                "account_id": hold.account_id,
                "released": money(hold.amount_minor, hold.currency, registry),
                "expires_at": iso(hold.expires_at),
            },
        ),
    )


def extension_event(hold: Hold, new_expires_at: datetime, registry: CurrencyRegistry) -> EventDraft:
    """The ``HOLD_EXTENDED`` event of an extension :func:`check_extend` allowed."""
    return EventDraft(
        event_type=EventType.HOLD_EXTENDED,
        hold_id=hold.hold_id,
        account_id=hold.account_id,
        payload={
            "hold_id": hold.hold_id,
            "account_id": hold.account_id,
            "held": money(hold.amount_minor, hold.currency, registry),
            "previous_expires_at": iso(hold.expires_at),
            "expires_at": iso(new_expires_at),
        },
    )
