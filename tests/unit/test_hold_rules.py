"""The hold rules (``ledger_db.rules.holds``) on plain records: no database, no clock.

Each check is a ladder in precedence order; these tests walk every rung, and pin the order where
two rungs would both refuse the same request.
"""

from __future__ import annotations

import ast
import inspect
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger_db import Hold, HoldState, limits
from ledger_db.errors import (
    CaptureExceedsHold,
    HoldAlreadyCaptured,
    HoldAlreadyReleased,
    HoldExpired,
    HoldNotExpired,
    InvalidAmount,
    InvalidEntry,
    LedgerError,
    PayeeRequired,
    TtlOutOfRange,
)
from ledger_db.rules import holds as rules

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _hold(**changes: Any) -> Hold:
    fields: dict[str, Any] = {
        "tenant_id": "t",
        "hold_id": "h",
        "account_id": "buyer",
        "currency": "USD",
        "amount_minor": 3000,
        "state": HoldState.ACTIVE,
        "reason": "NEGOTIATION",
        "expires_at": NOW + timedelta(minutes=10),
        "created_at": NOW - timedelta(minutes=1),
        "freeze_transaction_id": "tx",
    }
    fields.update(changes)
    return Hold.model_validate(fields)


def _capture(hold: Hold, **changes: Any) -> rules.CaptureDecision:
    arguments: dict[str, Any] = {
        "order_id": "order-1",
        "amount": None,
        "exponent": 2,
        "payee_account_id": "seller",
        "now": NOW,
    }
    arguments.update(changes)
    return rules.check_capture(hold, **arguments)


def test_the_rules_module_is_pure() -> None:
    tree = ast.parse(inspect.getsource(rules))
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    for module in imported:
        assert not module.startswith(("sqlalchemy", "temporalio", "time", "os", "workflows"))
    assert "datetime.now" not in inspect.getsource(rules)


def test_capture_in_full_and_in_part() -> None:
    full = _capture(_hold())
    assert (full.captured_minor, full.released_minor, full.payee_account_id) == (3000, 0, "seller")
    part = _capture(_hold(), amount="12.50")
    assert (part.captured_minor, part.released_minor) == (1250, 1750)
    # The payee fixed at freeze is the payee; giving the same one again is fine.
    fixed = _capture(_hold(payee_account_id="seller"), payee_account_id=None)
    assert fixed.payee_account_id == "seller"
    assert _capture(_hold(payee_account_id="seller")).payee_account_id == "seller"


@pytest.mark.parametrize(
    ("hold_changes", "capture_changes", "error"),
    [
        ({}, {"order_id": "  "}, InvalidEntry),
        ({}, {"payee_account_id": "bad id!"}, InvalidEntry),
        ({"state": HoldState.CAPTURED}, {}, HoldAlreadyCaptured),
        ({"state": HoldState.RELEASED}, {}, HoldAlreadyReleased),
        ({"state": HoldState.EXPIRED}, {}, HoldExpired),
        ({}, {"now": NOW + timedelta(minutes=10)}, HoldExpired),  # at the instant: expired
        ({}, {"amount": "30.01"}, CaptureExceedsHold),
        ({}, {"amount": "1.001"}, InvalidAmount),
        ({}, {"amount": "0"}, InvalidAmount),
        ({}, {"amount": "1e999999"}, InvalidAmount),
        ({}, {"amount": "1e400000"}, InvalidAmount),
        ({}, {"amount": "9" * 100_000}, InvalidAmount),
        ({}, {"amount": 12.5}, InvalidAmount),
        ({"payee_account_id": "seller"}, {"payee_account_id": "other"}, InvalidEntry),
        ({}, {"payee_account_id": None}, PayeeRequired),
        ({}, {"payee_account_id": "buyer"}, InvalidEntry),
    ],
)
def test_capture_refusals(
    hold_changes: dict[str, Any], capture_changes: dict[str, Any], error: type[LedgerError]
) -> None:
    with pytest.raises(error):
        _capture(_hold(**hold_changes), **capture_changes)


def test_capture_precedence() -> None:
    # Resolved beats expired beats amount beats payee: the first rung that fails answers.
    late = NOW + timedelta(hours=1)
    with pytest.raises(HoldAlreadyReleased):
        _capture(_hold(state=HoldState.RELEASED), now=late, amount="99", payee_account_id=None)
    with pytest.raises(HoldExpired):
        _capture(_hold(), now=late, amount="99", payee_account_id=None)
    with pytest.raises(CaptureExceedsHold):
        _capture(_hold(), amount="99", payee_account_id=None)
    with pytest.raises(InvalidEntry):  # the request's shape before the hold's state
        _capture(_hold(state=HoldState.RELEASED), order_id="")


def test_release() -> None:
    rules.check_release(_hold())
    # An expired hold whose timer has not fired yet may still be released.
    rules.check_release(_hold(expires_at=NOW - timedelta(seconds=1)))
    for state, error in [
        (HoldState.CAPTURED, HoldAlreadyCaptured),
        (HoldState.RELEASED, HoldAlreadyReleased),
        (HoldState.EXPIRED, HoldExpired),
    ]:
        with pytest.raises(error):
            rules.check_release(_hold(state=state))


def test_expire() -> None:
    hold = _hold()
    with pytest.raises(HoldNotExpired):
        rules.check_expire(hold, now=hold.expires_at - timedelta(microseconds=1))
    rules.check_expire(hold, now=hold.expires_at)
    with pytest.raises(HoldAlreadyCaptured):
        rules.check_expire(_hold(state=HoldState.CAPTURED), now=hold.expires_at)


def test_extend() -> None:
    hold = _hold()
    assert rules.check_extend(hold, ttl_seconds=3600, now=NOW) == NOW + timedelta(hours=1)
    later = NOW + timedelta(days=2)
    assert rules.check_extend(hold, expires_at=later, now=NOW) == later
    refusals: list[tuple[dict[str, Any], type[LedgerError]]] = [
        ({}, InvalidEntry),  # neither
        ({"ttl_seconds": 60, "expires_at": later}, InvalidEntry),  # both
        ({"ttl_seconds": 0}, TtlOutOfRange),
        ({"ttl_seconds": True}, TtlOutOfRange),
        ({"expires_at": datetime(2026, 3, 2)}, InvalidEntry),  # naive
        ({"ttl_seconds": 60}, TtlOutOfRange),  # earlier than the current expiry
        ({"expires_at": hold.expires_at}, TtlOutOfRange),  # not later
        (
            {"expires_at": NOW + timedelta(seconds=limits.hold_ttl_seconds_max + 1)},
            TtlOutOfRange,
        ),
    ]
    for arguments, error in refusals:
        with pytest.raises(error):
            rules.check_extend(hold, now=NOW, **arguments)
    with pytest.raises(HoldExpired):
        rules.check_extend(hold, ttl_seconds=3600, now=hold.expires_at)
    with pytest.raises(HoldAlreadyCaptured):
        rules.check_extend(_hold(state=HoldState.CAPTURED), ttl_seconds=3600, now=NOW)


def test_fee() -> None:
    assert rules.check_fee_bps(0) == 0 and rules.check_fee_bps(10_000) == 10_000
    for bad in (-1, 10_001, True, 1.5, "100", None):
        with pytest.raises(InvalidEntry):
            rules.check_fee_bps(bad)
