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
from hypothesis import given
from hypothesis import strategies as st

from ledger_db import Hold, HoldState, limits
from ledger_db.errors import (
    AccountClosed,
    AccountNotFound,
    CaptureExceedsHold,
    CurrencyMismatch,
    HoldAlreadyCaptured,
    HoldAlreadyFinalized,
    HoldAlreadyReleased,
    HoldExpired,
    HoldNotCaptured,
    HoldNotExpired,
    InsufficientFunds,
    InvalidAmount,
    InvalidEntry,
    LedgerError,
    PayeeRequired,
    TtlOutOfRange,
)
from ledger_db.ids import derive_hold_id
from ledger_db.models import AccountKind, Direction
from ledger_db.money import default_registry
from ledger_db.rules import holds as rules
from ledger_db.rules.accounts import AccountRecord
from ledger_db.rules.postings import balanced, debits
from ledger_db.rules.requests import FreezeRequest, check_freeze_request
from ledger_db.vocabulary import EventType

REGISTRY = default_registry()

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


# ---------------------------------------------------------------------------- decisions


def _account(**changes: Any) -> AccountRecord:
    fields: dict[str, Any] = {
        "account_id": "buyer",
        "kind": AccountKind.AGENT,
        "currency": "USD",
        "balance_minor": 5000,
    }
    fields.update(changes)
    return AccountRecord(**fields)


def _freeze_request(**changes: Any) -> FreezeRequest:
    arguments: dict[str, Any] = {
        "tenant_id": "t",
        "account_id": "buyer",
        "idempotency_key": "k",
        "amount": "30",
        "reason": "NEGOTIATION",
        "ttl_seconds": 600,
        "currency": None,
        "payee_account_id": "seller",
        "hold_id": "h",
        "meta": {"k": "v"},
        "project_id": "p",
        "env": "prod",
        "task_id": "task",
        "registry": REGISTRY,
    }
    arguments.update(changes)
    return check_freeze_request(**arguments)


def _check_freeze(**changes: Any) -> int:
    account = changes.pop("account", _account())
    payee = changes.pop("payee", _account(account_id="seller"))
    hold_exists = changes.pop("hold_exists", False)
    return rules.check_freeze(
        _freeze_request(**changes), account, payee, hold_exists=hold_exists, registry=REGISTRY
    )


def _decide_freeze(account: AccountRecord | None = None, **changes: Any) -> rules.FreezeDecision:
    amount_minor = changes.pop("amount_minor", 3000)
    now = changes.pop("now", NOW)
    return rules.decide_freeze(
        _freeze_request(**changes),
        account or _account(),
        amount_minor=amount_minor,
        transaction_id="tx-freeze",
        now=now,
        registry=REGISTRY,
    )


def test_freeze_checks() -> None:
    assert _check_freeze() == 3000
    assert _check_freeze(payee_account_id=None, payee=None, currency="USD") == 3000


def test_freeze_request() -> None:
    request = _freeze_request(hold_id=None)
    assert request.hold_id == derive_hold_id("t", "k")
    assert request.canonical()["amount"] == "30"
    assert request.labels == {
        "meta": {"k": "v"},
        "project_id": "p",
        "task_id": "task",
        "env": "prod",
    }
    ladder: list[tuple[dict[str, Any], type[LedgerError]]] = [
        ({"tenant_id": "bad.tenant"}, InvalidEntry),
        ({"account_id": "has space"}, InvalidEntry),
        ({"ttl_seconds": 0}, TtlOutOfRange),
        ({"payee_account_id": "buyer"}, InvalidEntry),
        ({"env": "bad\x01"}, InvalidEntry),
    ]
    for changes, error in ladder:
        with pytest.raises(error):
            _freeze_request(**changes)
    # The TTL is checked before the payee, the payee before the labels.
    with pytest.raises(TtlOutOfRange):
        _freeze_request(ttl_seconds=0, payee_account_id="buyer", env="bad\x01")
    with pytest.raises(InvalidEntry) as raised:
        _freeze_request(payee_account_id="buyer", env="bad\x01")
    assert raised.value.details["field"] == "payee_account_id"


def test_freeze_refusals_in_precedence_order() -> None:
    """Payer (found, open, agent, currency, amount), then payee (found, open agent, currency),
    then the hold ID: each refusal below also breaks every later rung."""
    closed_payee = _account(account_id="seller", status="closed")
    everything_wrong: dict[str, Any] = {
        "amount": "0.001",
        "currency": "EUR",
        "payee": closed_payee,
        "hold_exists": True,
    }
    ladder: list[tuple[dict[str, Any], type[LedgerError]]] = [
        ({"account": None}, AccountNotFound),
        ({"account": _account(status="closed", kind=AccountKind.ESCROW)}, AccountClosed),
        ({"account": _account(kind=AccountKind.ESCROW)}, InvalidEntry),
        ({}, CurrencyMismatch),
        ({"currency": None}, InvalidAmount),
        ({"currency": None, "amount": "30", "payee": None}, AccountNotFound),
        ({"currency": None, "amount": "30"}, AccountClosed),
        (
            {"currency": None, "amount": "30", "payee": _account(account_id="s", currency="EUR")},
            CurrencyMismatch,
        ),
        ({"currency": None, "amount": "30", "payee": _account(account_id="s")}, InvalidEntry),
    ]
    for changes, error in ladder:
        with pytest.raises(error):
            _check_freeze(**{**everything_wrong, **changes})


def test_freeze_decision() -> None:
    decision = _decide_freeze()
    assert decision.expires_at == NOW + timedelta(seconds=600)
    out, into = decision.postings
    assert (out.account_id, out.direction, into.account_id, into.direction) == (
        "buyer",
        Direction.OUT,
        "@hold:buyer",
        Direction.IN,
    )
    assert {p.reason for p in decision.postings} == {"HOLD_FREEZE"}
    assert {p.category for p in decision.postings} == {"HOLD"}
    assert all(p.hold_id == "h" and p.meta == {"freeze_reason": "NEGOTIATION"} for p in (out, into))
    assert balanced(decision.postings)
    assert decision.hold_row["state"] == "active"
    assert decision.hold_row["amount_minor"] == 3000
    assert decision.hold_row["meta"] == {
        "k": "v",
        "project_id": "p",
        "env": "prod",
        "task_id": "task",
    }
    assert decision.journal_meta == {
        "payee_account_id": "seller",
        "expires_at": "2026-03-01T12:10:00.000000Z",
    }
    assert decision.event.event_type is EventType.INTENT_CREATED
    assert decision.event.payload["billing"]["amount"] == "30.00"


def test_freeze_decision_refuses_what_the_balance_cannot_cover() -> None:
    with pytest.raises(InsufficientFunds):
        _decide_freeze(_account(balance_minor=2999))
    _decide_freeze(_account(balance_minor=0, overdraft_limit_minor=3000))
    with pytest.raises(InvalidEntry):  # the expiry leaves the stored range
        _decide_freeze(now=datetime(9999, 12, 31, 23, 59, tzinfo=UTC))


def test_capture_checks_a_named_currency_after_the_expiry() -> None:
    with pytest.raises(HoldExpired):
        _capture(_hold(), currency="EUR", registry=REGISTRY, now=NOW + timedelta(hours=1))
    with pytest.raises(CurrencyMismatch):
        _capture(_hold(), currency="EUR", registry=REGISTRY, amount="99")
    _capture(_hold(), currency="USD", registry=REGISTRY)


def _decide_capture(hold: Hold, payee: AccountRecord | None, **changes: Any) -> rules.HoldDecision:
    capture = _capture(hold, **changes)
    return rules.decide_capture(
        hold,
        capture,
        payee,
        order_id="order-1",
        transaction_id="tx-capture",
        now=NOW,
        registry=REGISTRY,
    )


def test_capture_decision_in_part() -> None:
    seller = _account(account_id="seller")
    decision = _decide_capture(_hold(), seller, amount="12.50")
    assert [(p.account_id, p.direction, p.amount_minor, p.reason) for p in decision.postings] == [
        ("@hold:buyer", Direction.OUT, 1250, "ORDER_CAPTURE"),
        ("@escrow:USD", Direction.IN, 1250, "ORDER_CAPTURE"),
        ("@hold:buyer", Direction.OUT, 1750, "HOLD_RELEASE"),
        ("buyer", Direction.IN, 1750, "HOLD_RELEASE"),
    ]
    assert [p.counterpart for p in decision.postings] == [False, True, False, False]
    assert balanced(decision.postings)
    assert debits(decision.postings)["@hold:buyer"] == 3000  # the bucket is emptied
    assert decision.locked_account_ids == ["buyer", "@hold:buyer", "@escrow:USD"]
    assert decision.hold_update["state"] == "captured"
    assert (decision.hold_update["captured_minor"], decision.hold_update["released_minor"]) == (
        1250,
        1750,
    )
    assert decision.journal_meta["payee_account_id"] == "seller"
    assert decision.event.event_type is EventType.ORDER_CREATED
    assert decision.event.payload["settlement"]["released"]["amount"] == "17.50"
    # In full: no release leg, no released amount in the event.
    full = _decide_capture(_hold(), seller)
    assert len(full.postings) == 2 and full.event.payload["settlement"]["released"] is None


def test_capture_decision_refuses_a_bad_payee() -> None:
    with pytest.raises(AccountNotFound):
        _decide_capture(_hold(), None)
    with pytest.raises(AccountClosed):
        _decide_capture(_hold(), _account(account_id="seller", status="closed", currency="EUR"))
    with pytest.raises(InvalidEntry):
        _decide_capture(_hold(), _account(account_id="seller", kind=AccountKind.REVENUE))
    with pytest.raises(CurrencyMismatch):
        _decide_capture(_hold(), _account(account_id="seller", currency="EUR"))


def _captured(**changes: Any) -> Hold:
    fields: dict[str, Any] = {
        "state": HoldState.CAPTURED,
        "captured_minor": 1001,
        "payee_account_id": "seller",
        "order_id": "order-1",
    }
    fields.update(changes)
    return _hold(**fields)


def test_finalize_checks() -> None:
    assert rules.check_finalize(_captured()) == "seller"
    assert rules.finalize_account_ids(_captured()) == ["@escrow:USD", "@revenue:USD", "seller"]
    with pytest.raises(HoldNotCaptured):
        rules.check_finalize(_hold(finalized=True))
    with pytest.raises(HoldAlreadyFinalized):
        rules.check_finalize(_captured(finalized=True))


def test_finalize_decision_splits_net_and_fee() -> None:
    escrow = _account(account_id="@escrow:USD", kind=AccountKind.ESCROW, balance_minor=1001)
    decision = rules.decide_finalize(
        _captured(), escrow, fee_bps=250, transaction_id="tx-f", registry=REGISTRY
    )
    # 2.5% of 10.01 is 0.25025: the fee rounds down, in the payee's favour.
    assert [(p.account_id, p.direction, p.amount_minor, p.reason) for p in decision.postings] == [
        ("@escrow:USD", Direction.OUT, 976, "SALE_REVENUE"),
        ("seller", Direction.IN, 976, "SALE_REVENUE"),
        ("@escrow:USD", Direction.OUT, 25, "PLATFORM_FEE"),
        ("@revenue:USD", Direction.IN, 25, "PLATFORM_FEE"),
    ]
    assert balanced(decision.postings)
    assert decision.hold_update == {
        "finalized": True,
        "fee_minor": 25,
        "finalize_transaction_id": "tx-f",
    }
    assert decision.journal_meta == {
        "order_id": "order-1",
        "fee_bps": 250,
        "payee_account_id": "seller",
        "fee_minor": 25,
        "net_minor": 976,
    }
    assert decision.event.payload["payment"]["net"]["amount"] == "9.76"
    # No fee: no fee leg; all fee: no payee leg.
    assert (
        len(
            rules.decide_finalize(
                _captured(), escrow, fee_bps=0, transaction_id="t", registry=REGISTRY
            ).postings
        )
        == 2
    )
    all_fee = rules.decide_finalize(
        _captured(), escrow, fee_bps=10_000, transaction_id="t", registry=REGISTRY
    )
    assert [p.account_id for p in all_fee.postings] == ["@escrow:USD", "@revenue:USD"]
    with pytest.raises(InsufficientFunds):
        rules.decide_finalize(
            _captured(),
            escrow.__class__(**{**escrow.__dict__, "balance_minor": 1000}),
            fee_bps=0,
            transaction_id="t",
            registry=REGISTRY,
        )


def test_release_and_expire_decisions() -> None:
    hold = _hold()
    released = rules.decide_release(
        hold, expire=False, transaction_id="tx", now=NOW, registry=REGISTRY
    )
    assert [(p.account_id, p.direction, p.amount_minor, p.reason) for p in released.postings] == [
        ("@hold:buyer", Direction.OUT, 3000, "HOLD_RELEASE"),
        ("buyer", Direction.IN, 3000, "HOLD_RELEASE"),
    ]
    assert released.hold_update["state"] == "released"
    assert released.event.event_type is EventType.HOLD_RELEASED
    with pytest.raises(HoldNotExpired):
        rules.decide_release(hold, expire=True, transaction_id="tx", now=NOW, registry=REGISTRY)
    expired = rules.decide_release(
        hold, expire=True, transaction_id="tx", now=hold.expires_at, registry=REGISTRY
    )
    assert {p.reason for p in expired.postings} == {"HOLD_EXPIRE"}
    assert expired.hold_update["state"] == "expired"
    assert expired.event.event_type is EventType.HOLD_EXPIRED
    assert balanced(expired.postings)
    with pytest.raises(HoldAlreadyCaptured):
        rules.decide_release(
            _captured(), expire=False, transaction_id="t", now=NOW, registry=REGISTRY
        )


def test_hold_postings_carry_the_hold_labels() -> None:
    hold = _hold(meta={"project_id": "p", "task_id": "t", "env": "staging", "other": 1})
    assert rules.hold_posting_fields(hold) == {
        "currency": "USD",
        "env": "staging",
        "project_id": "p",
        "task_id": "t",
        "hold_id": "h",
    }
    assert rules.hold_posting_fields(_hold())["env"] == "prod"


def test_extension_event() -> None:
    later = NOW + timedelta(hours=1)
    event = rules.extension_event(_hold(), later, REGISTRY)
    assert event.event_type is EventType.HOLD_EXTENDED
    assert event.payload["previous_expires_at"] == "2026-03-01T12:10:00.000000Z"
    assert event.payload["expires_at"] == "2026-03-01T13:00:00.000000Z"
    assert event.payload["held"]["amount"] == "30.00"


@given(
    amounts=st.integers(1, 10**15).flatmap(
        lambda amount: st.tuples(st.just(amount), st.integers(1, amount))
    ),
    fee_bps=st.integers(0, 10_000),
)
def test_every_hold_decision_balances(amounts: tuple[int, int], fee_bps: int) -> None:
    """Freeze, capture (any part), finalize (any fee) and release all balance; the captured
    and released parts add up to the hold, net and fee to the captured part."""
    amount_minor, captured_minor = amounts
    hold = _hold(amount_minor=amount_minor)
    decision = rules.decide_capture(
        hold,
        rules.CaptureDecision(
            captured_minor=captured_minor,
            released_minor=amount_minor - captured_minor,
            payee_account_id="seller",
        ),
        _account(account_id="seller"),
        order_id="o",
        transaction_id="t",
        now=NOW,
        registry=REGISTRY,
    )
    assert balanced(decision.postings)
    assert (
        decision.hold_update["captured_minor"] + decision.hold_update["released_minor"]
        == amount_minor
    )
    escrow = _account(
        account_id="@escrow:USD", kind=AccountKind.ESCROW, balance_minor=captured_minor
    )
    finalize = rules.decide_finalize(
        _captured(amount_minor=amount_minor, captured_minor=captured_minor),
        escrow,
        fee_bps=fee_bps,
        transaction_id="t",
        registry=REGISTRY,
    )
    assert balanced(finalize.postings)
    assert finalize.journal_meta["net_minor"] + finalize.journal_meta["fee_minor"] == captured_minor
    assert 0 <= finalize.journal_meta["fee_minor"] <= captured_minor * fee_bps // 10_000
    freeze = _decide_freeze(_account(balance_minor=amount_minor), amount_minor=amount_minor)
    release = rules.decide_release(
        hold, expire=False, transaction_id="t", now=NOW, registry=REGISTRY
    )
    assert balanced(freeze.postings) and balanced(release.postings)


def test_capture_request() -> None:
    from ledger_db.rules.requests import check_capture_request

    arguments: dict[str, Any] = {
        "tenant_id": "t",
        "hold_id": "h",
        "order_id": "o",
        "idempotency_key": "k",
        "amount": "1.0",
        "currency": "USD",
        "payee_account_id": "seller",
        "registry": REGISTRY,
    }
    assert check_capture_request(**arguments).canonical() == {
        "hold_id": "h",
        "order_id": "o",
        "amount": "1",
        "currency": "USD",
        "payee_account_id": "seller",
    }
    assert check_capture_request(**{**arguments, "amount": None}).canonical()["amount"] is None
    with pytest.raises(InvalidEntry) as raised:
        check_capture_request(**{**arguments, "order_id": "", "payee_account_id": "a b"})
    assert raised.value.details["field"] == "order_id"
    with pytest.raises(InvalidEntry) as payee:
        check_capture_request(**{**arguments, "payee_account_id": "a b"})
    assert payee.value.details["field"] == "payee_account_id"
