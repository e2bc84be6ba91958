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

from dataclasses import dataclass
from datetime import datetime, timedelta

from ledger_db import limits
from ledger_db.errors import (
    CaptureExceedsHold,
    HoldAlreadyCaptured,
    HoldAlreadyReleased,
    HoldExpired,
    HoldNotExpired,
    InvalidEntry,
    PayeeRequired,
    TtlOutOfRange,
)
from ledger_db.models import Hold, HoldState
from ledger_db.money import format_minor, parse_amount
from ledger_db.validation import check_account_id, check_instant, check_text, check_ttl_seconds

__all__ = [
    "CaptureDecision",
    "check_capture",
    "check_expire",
    "check_extend",
    "check_fee_bps",
    "check_release",
    "check_unresolved",
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
) -> CaptureDecision:
    """Capture ``amount`` (decimal text in major units; None: all of it) for ``order_id``.

    ``exponent`` is the hold currency's number of decimals. The payee is the one fixed at freeze
    or, if none was, the one given now; it cannot change and cannot be the paying account.
    """
    check_text(order_id, "order_id")
    if payee_account_id is not None:
        check_account_id(payee_account_id, field="payee_account_id")
    check_unresolved(hold)
    if now >= hold.expires_at:
        raise HoldExpired(
            f"hold {hold.hold_id!r} expired at {hold.expires_at.isoformat()}", hold_id=hold.hold_id
        )
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
