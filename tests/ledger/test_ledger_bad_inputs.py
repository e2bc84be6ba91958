"""Every bad input of issue 2 item 3: a typed error with a stable code, and nothing written.

"Nothing written" is checked on every row of every table of ``ledger_db.schema.metadata``
(content, not just counts), so a stray idempotency row, event or snapshot update shows up too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from ledger_data import sample_record

from ledger_db import Ledger, errors, limits
from ledger_db.models import Direction, LedgerEntryInput


def new_key() -> str:
    return f"bad-{uuid.uuid4().hex}"


NOW = datetime.now(UTC).replace(microsecond=0)
TTL_SECONDS = 600


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """The cases pass ``now=NOW``; the ledger's clock stands at NOW too (a caller's ``now``
    must lie near the ledger's clock, and this module may run long after it was imported)."""
    instance = Ledger.from_url(database_url, clock=lambda: NOW)
    try:
        yield instance
    finally:
        instance.close()


@dataclass
class World:
    ledger: Ledger
    tenant_id: str
    account: str  # USD agent, balance 100.00
    payee: str  # USD agent
    euro: str  # EUR agent, balance 10.00
    credits: str  # CREDIT agent (exponent 0), balance 10
    hold: str  # active, 10.00, payee set, frozen at NOW
    hold_without_payee: str  # active, 1.00
    captured: str  # captured
    released: str  # released
    other_tenant_account: str  # an account of another tenant


def _record(**overrides: Any) -> dict[str, Any]:
    return sample_record(**{"tags": ["ok"], "meta": {}, **overrides})


@pytest.fixture
def world(ledger: Ledger, tools_for: Any) -> World:
    tools = tools_for(f"tenant-{uuid.uuid4().hex[:12]}")
    t = tools.tenant_id
    account = tools.agent(balance="100.00", account_id="agent-a")
    payee = tools.agent(account_id="agent-payee")
    euro = tools.agent(balance="10.00", currency="EUR", account_id="agent-eur")
    credits = tools.agent(balance="10", currency="CREDIT", account_id="agent-credit")

    def freeze(amount: str, **kwargs: Any) -> str:
        return ledger.freeze(
            account,
            amount,
            "NEGOTIATION",
            tenant_id=t,
            idempotency_key=new_key(),
            ttl_seconds=TTL_SECONDS,
            now=NOW,
            **kwargs,
        ).hold_id

    hold = freeze("10.00", payee_account_id=payee)
    hold_without_payee = freeze("1.00")
    captured = freeze("1.00", payee_account_id=payee)
    ledger.capture_hold(captured, "order-c", tenant_id=t, idempotency_key=new_key(), now=NOW)
    released = freeze("1.00", payee_account_id=payee)
    ledger.release_hold(released, tenant_id=t, idempotency_key=new_key(), now=NOW)
    other = tools_for(f"tenant-{uuid.uuid4().hex[:12]}").agent(
        balance="5.00", account_id="agent-other"
    )
    return World(
        ledger,
        t,
        account,
        payee,
        euro,
        credits,
        hold,
        hold_without_payee,
        captured,
        released,
        other,
    )


Case = Callable[[World], object]


def _deposit(amount: Any, account: str | None = None, **fixed: Any) -> Case:
    def call(w: World) -> object:
        kwargs = {"idempotency_key": new_key(), **fixed}
        return w.ledger.deposit(account or w.account, amount, tenant_id=w.tenant_id, **kwargs)

    return call


def _freeze(amount: Any = "1.00", **fixed: Any) -> Case:
    def call(w: World) -> object:
        kwargs = {"idempotency_key": new_key(), "ttl_seconds": TTL_SECONDS, "now": NOW, **fixed}
        account = kwargs.pop("account", None) or w.account
        return w.ledger.freeze(account, amount, "NEGOTIATION", tenant_id=w.tenant_id, **kwargs)

    return call


def _typed(entry: dict[str, Any]) -> Any:
    """A LedgerEntryInput when the record passes the model's own validation; the raw mapping
    otherwise (what a JSON import or the CLI hands over)."""
    try:
        return LedgerEntryInput.model_validate(entry)
    except ValueError:
        return entry


def _records(*entries: Any, account: str | None = None) -> Case:
    def call(w: World) -> object:
        return w.ledger.record_entries(
            [_typed(entry) for entry in entries],
            tenant_id=w.tenant_id,
            idempotency_key=new_key(),
            account_id=getattr(w, account) if account else None,
        )

    return call


def _capture(
    hold: str, *, amount: Any = None, now: datetime = NOW, payee: str | None = None
) -> Case:
    def call(w: World) -> object:
        return w.ledger.capture_hold(
            getattr(w, hold),
            f"order-{uuid.uuid4().hex[:6]}",
            tenant_id=w.tenant_id,
            idempotency_key=new_key(),
            amount=amount,
            payee_account_id=getattr(w, payee) if payee else None,
            now=now,
        )

    return call


def _release(hold: str, now: datetime = NOW) -> Case:
    def call(w: World) -> object:
        return w.ledger.release_hold(
            getattr(w, hold), tenant_id=w.tenant_id, idempotency_key=new_key(), now=now
        )

    return call


def _other_tenant(operation: str) -> Case:
    def call(w: World) -> object:
        if operation == "deposit":
            return w.ledger.deposit(
                w.other_tenant_account, "1.00", tenant_id=w.tenant_id, idempotency_key=new_key()
            )
        return w.ledger.freeze(
            w.other_tenant_account,
            "1.00",
            "NEGOTIATION",
            tenant_id=w.tenant_id,
            idempotency_key=new_key(),
            ttl_seconds=TTL_SECONDS,
            now=NOW,
        )

    return call


def _payee(payee: str) -> Case:
    def call(w: World) -> object:
        return w.ledger.freeze(
            w.account,
            "1.00",
            "NEGOTIATION",
            tenant_id=w.tenant_id,
            idempotency_key=new_key(),
            ttl_seconds=TTL_SECONDS,
            now=NOW,
            payee_account_id=getattr(w, payee),
        )

    return call


def _open(currency: str) -> Case:
    def call(w: World) -> object:
        return w.ledger.open_account(
            tenant_id=w.tenant_id, currency=currency, idempotency_key=new_key()
        )

    return call


OVER_MAX_USD = str(Decimal(limits.amount_minor_max + 1).scaleb(-2))  # 92233720368547758.08
AT_MAX_USD = str(Decimal(limits.amount_minor_max).scaleb(-2))
BIG_META = {"blob": "x" * (limits.meta_bytes_max + 1)}

CASES: list[tuple[str, Case, str]] = [
    # amounts
    ("deposit_zero", _deposit("0"), "invalid_amount"),
    ("deposit_zero_decimals", _deposit("0.00"), "invalid_amount"),
    ("deposit_zero_int", _deposit(0), "invalid_amount"),
    ("freeze_zero", _freeze("0.00"), "invalid_amount"),
    ("deposit_negative", _deposit("-1.00"), "invalid_amount"),
    ("deposit_negative_int", _deposit(-1), "invalid_amount"),
    ("freeze_negative", _freeze("-0.01"), "invalid_amount"),
    ("deposit_over_max", _deposit(OVER_MAX_USD), "invalid_amount"),
    ("deposit_over_max_credit_int", _deposit(2**63, account="agent-credit"), "invalid_amount"),
    ("freeze_over_max", _freeze(OVER_MAX_USD), "invalid_amount"),
    ("deposit_float", _deposit(1.5), "invalid_amount"),
    ("deposit_float_whole", _deposit(1.0), "invalid_amount"),
    ("freeze_float", _freeze(0.5), "invalid_amount"),
    ("deposit_bool", _deposit(True), "invalid_amount"),
    ("freeze_bool", _freeze(True), "invalid_amount"),
    ("deposit_not_a_number", _deposit("1e3"), "invalid_amount"),
    ("deposit_nan", _deposit(Decimal("NaN")), "invalid_amount"),
    ("deposit_three_decimals", _deposit("1.001"), "invalid_amount"),
    ("deposit_decimal_three_decimals", _deposit(Decimal("0.005")), "invalid_amount"),
    ("deposit_credit_decimals", _deposit("1.5", account="agent-credit"), "invalid_amount"),
    ("freeze_three_decimals", _freeze("0.001"), "invalid_amount"),
    ("capture_three_decimals", _capture("hold", amount="1.001"), "invalid_amount"),
    ("capture_zero", _capture("hold", amount="0"), "invalid_amount"),
    ("capture_float", _capture("hold", amount=1.0), "invalid_amount"),
    ("record_zero", _records(_record(amount="0.00")), "invalid_amount"),
    ("record_three_decimals", _records(_record(amount="0.001")), "invalid_amount"),
    # currencies
    ("open_unknown_currency", _open("ABC"), "unknown_currency"),
    ("open_lowercase_currency", _open("usd"), "unknown_currency"),
    ("record_unknown_currency", _records(_record(currency="ABC")), "unknown_currency"),
    (
        "record_currency_mismatch",
        _records(_record(currency="EUR"), account="account"),
        "currency_mismatch",
    ),
    ("freeze_payee_currency_mismatch", _payee("euro"), "currency_mismatch"),
    (
        "capture_payee_currency_mismatch",
        _capture("hold_without_payee", payee="euro"),
        "currency_mismatch",
    ),
    # accounts
    ("deposit_unknown_account", _deposit("1.00", account="agent-missing"), "account_not_found"),
    ("freeze_unknown_account", _freeze(account="agent-missing"), "account_not_found"),
    ("freeze_unknown_payee", _freeze(payee_account_id="agent-missing"), "account_not_found"),
    (
        "record_other_tenant_account",
        _records(_record(), account="other_tenant_account"),
        "account_not_found",
    ),
    ("deposit_other_tenant_account", _other_tenant("deposit"), "account_not_found"),
    ("freeze_other_tenant_account", _other_tenant("freeze"), "account_not_found"),
    ("freeze_other_tenant_payee", _freeze(payee_account_id="agent-other"), "account_not_found"),
    # holds
    ("freeze_insufficient_funds", _freeze("100.01"), "insufficient_funds"),
    ("capture_above_hold", _capture("hold", amount="10.01"), "capture_exceeds_hold"),
    ("capture_twice", _capture("captured"), "hold_already_captured"),
    ("capture_released", _capture("released"), "hold_already_released"),
    ("release_after_capture", _release("captured"), "hold_already_captured"),
    ("release_twice", _release("released"), "hold_already_released"),
    (
        "capture_after_expiry",
        _capture("hold", now=NOW + timedelta(seconds=TTL_SECONDS + 1)),
        "hold_expired",
    ),
    ("capture_without_payee", _capture("hold_without_payee"), "payee_required"),
    # TTL
    ("ttl_zero", _freeze(ttl_seconds=0), "ttl_out_of_range"),
    ("ttl_below_min", _freeze(ttl_seconds=limits.hold_ttl_seconds_min - 1), "ttl_out_of_range"),
    ("ttl_negative", _freeze(ttl_seconds=-60), "ttl_out_of_range"),
    ("ttl_above_max", _freeze(ttl_seconds=limits.hold_ttl_seconds_max + 1), "ttl_out_of_range"),
    # idempotency keys
    ("deposit_empty_key", _deposit("1.00", idempotency_key=""), "idempotency_key_invalid"),
    ("freeze_empty_key", _freeze(idempotency_key=""), "idempotency_key_invalid"),
    (
        "deposit_long_key",
        _deposit("1.00", idempotency_key="k" * (limits.idempotency_key_length_max + 1)),
        "idempotency_key_invalid",
    ),
    (
        "freeze_long_key",
        _freeze(idempotency_key="k" * (limits.idempotency_key_length_max + 1)),
        "idempotency_key_invalid",
    ),
    # meta and tags
    ("deposit_oversized_meta", _deposit("1.00", meta=BIG_META), "invalid_entry"),
    ("freeze_oversized_meta", _freeze(meta=BIG_META), "invalid_entry"),
    ("record_oversized_meta", _records(_record(meta=BIG_META)), "invalid_entry"),
    ("record_int_tag", _records(_record(tags=["ok", 1])), "invalid_entry"),
    ("record_none_tag", _records(_record(tags=[None])), "invalid_entry"),
    ("record_dict_tag", _records(_record(tags=[{"a": "b"}])), "invalid_entry"),
    ("record_tags_not_a_list", _records(_record(tags="ip")), "invalid_entry"),
    (
        "record_too_many_tags",
        _records(_record(tags=[f"t{i}" for i in range(limits.tags_per_entry_max + 1)])),
        "invalid_entry",
    ),
    (
        "record_tag_too_long",
        _records(_record(tags=["x" * (limits.tag_length_max + 1)])),
        "invalid_entry",
    ),
    ("record_no_entries", _records(), "invalid_entry"),
]


@pytest.mark.parametrize(("case", "code"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_writes_nothing(
    world: World, snapshot: Any, case: Case, code: str
) -> None:
    before = snapshot(world.ledger)
    with pytest.raises(errors.LedgerError) as caught:
        case(world)
    assert caught.value.code == code, caught.value
    assert isinstance(caught.value, errors.error_class_for_code(code))
    assert caught.value.to_dict()["code"] == code
    assert snapshot(world.ledger) == before


def test_largest_amount_is_accepted(ledger: Ledger) -> None:
    """The bound is inclusive: 2^63 - 1 minor units is a valid amount."""
    tenant = f"tenant-{uuid.uuid4().hex[:12]}"
    result = ledger.record_entries(
        [_typed(_record(direction="IN", amount=AT_MAX_USD))],
        tenant_id=tenant,
        idempotency_key=new_key(),
    )
    assert {e.amount_minor for e in result.entries} == {limits.amount_minor_max}
    assert ledger.get_balance("@operating:USD", tenant_id=tenant).posted_minor == (
        limits.amount_minor_max
    )


@pytest.mark.parametrize("second", ["0.01", "0.02", "1.00"])
def test_balance_leaving_the_64_bit_range_is_a_typed_error(
    ledger: Ledger, snapshot: Any, second: str
) -> None:
    """Each amount is valid; the balance they add up to is not. A typed error, nothing written
    (and never a raw database error such as PostgreSQL's 'bigint out of range')."""
    tenant = f"tenant-{uuid.uuid4().hex[:12]}"
    ledger.record_entries(
        [_typed(_record(direction="IN", amount=AT_MAX_USD))],
        tenant_id=tenant,
        idempotency_key=new_key(),
    )
    before = snapshot(ledger)
    with pytest.raises(errors.LedgerError) as caught:
        ledger.record_entries(
            [_typed(_record(direction="IN", amount=second))],
            tenant_id=tenant,
            idempotency_key=new_key(),
        )
    assert caught.value.code == "invalid_amount"
    assert snapshot(ledger) == before
    assert ledger.verify_journal() == []


def test_ledger_entry_input_rejects_non_string_tags() -> None:
    """The typed input refuses a non-string tag before it reaches the ledger."""
    with pytest.raises(ValueError):
        LedgerEntryInput.model_validate(_record(tags=[1]))


def test_bad_typed_input_is_refused_by_the_ledger(world: World, snapshot: Any) -> None:
    """A LedgerEntryInput built without validation (model_construct) is still checked."""
    bad = LedgerEntryInput.model_construct(**{**_record(tags=[1]), "direction": Direction.OUT})
    before = snapshot(world.ledger)
    with pytest.raises(errors.LedgerError) as caught:
        world.ledger.record_entries([bad], tenant_id=world.tenant_id, idempotency_key=new_key())
    assert caught.value.code == "invalid_entry"
    assert snapshot(world.ledger) == before
