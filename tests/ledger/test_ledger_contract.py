"""The contract of ``docs/ledger-api.md``, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger_db import Ledger, errors
from ledger_db.ids import derive_event_id, derive_hold_id
from ledger_db.models import (
    AccountKind,
    Direction,
    HoldState,
    JournalEntry,
    LedgerEntryInput,
    TransactionKind,
)

Tools = Any  # the ``tools`` fixture of conftest.py


def new_key(prefix: str = "key") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def new_tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _balanced(entries: list[JournalEntry]) -> bool:
    totals: Counter[tuple[str, Direction]] = Counter()
    for entry in entries:
        totals[(entry.currency, entry.direction)] += entry.amount_minor
    currencies = {entry.currency for entry in entries}
    return all(totals[(c, Direction.IN)] == totals[(c, Direction.OUT)] for c in currencies)


def _without_replayed(model: Any) -> dict[str, Any]:
    data = model.model_dump()
    data.pop("replayed", None)
    if isinstance(data.get("hold"), dict):
        data["hold"].pop("replayed", None)
    return data


# --- accounts ---------------------------------------------------------------------------------


def test_open_account_and_get(tools: Tools) -> None:
    ledger, tenant = tools.ledger, tools.tenant_id
    key = tools.key()
    account = ledger.open_account(
        tenant_id=tenant,
        currency="USD",
        idempotency_key=key,
        account_id="agent-alice",
        name="Alice",
        overdraft_limit="5.00",
    )
    assert account.account_id == "agent-alice"
    assert account.kind == AccountKind.AGENT
    assert account.currency == "USD"
    assert account.overdraft_limit_minor == 500
    assert account.overdraft_limit == "5.00"
    assert account.tenant_id == tenant
    assert account.replayed is False

    fetched = ledger.get_account(tenant_id=tenant, account_id="agent-alice")
    assert fetched.account_id == "agent-alice"
    assert fetched.overdraft_limit_minor == 500

    generated = ledger.open_account(tenant_id=tenant, currency="EUR", idempotency_key=tools.key())
    assert generated.account_id.startswith("acct_")

    listed = {a.account_id for a in ledger.list_accounts(tenant_id=tenant)}
    assert {"agent-alice", generated.account_id} <= listed

    balance = ledger.get_balance("agent-alice", tenant_id=tenant)
    assert (balance.posted_minor, balance.held_minor, balance.available_minor) == (0, 0, 0)
    assert balance.available == "0.00"


def test_open_account_same_id_other_key_is_refused(tools: Tools) -> None:
    tools.ledger.open_account(
        tenant_id=tools.tenant_id, currency="USD", idempotency_key=tools.key(), account_id="dup"
    )
    before = tools.snapshot()
    with pytest.raises(errors.LedgerError) as caught:
        tools.ledger.open_account(
            tenant_id=tools.tenant_id, currency="USD", idempotency_key=tools.key(), account_id="dup"
        )
    assert caught.value.code == "account_already_exists"
    assert tools.snapshot() == before


def test_platform_accounts(tools: Tools) -> None:
    accounts = tools.ledger.ensure_platform_accounts(tenant_id=tools.tenant_id, currency="USD")
    ids = {a.account_id: a.kind for a in accounts}
    assert ids == {
        "@escrow:USD": AccountKind.ESCROW,
        "@revenue:USD": AccountKind.REVENUE,
        "@external:USD": AccountKind.EXTERNAL,
    }
    # Calling it again is harmless.
    again = tools.ledger.ensure_platform_accounts(tenant_id=tools.tenant_id, currency="USD")
    assert {a.account_id for a in again} == set(ids)


# --- deposit ----------------------------------------------------------------------------------


def test_deposit(tools: Tools) -> None:
    account = tools.agent()
    result = tools.ledger.deposit(
        account,
        "20.00",
        tenant_id=tools.tenant_id,
        idempotency_key=tools.key(),
        external_ref="stripe_ch_1",
    )
    assert result.kind == TransactionKind.DEPOSIT
    assert result.replayed is False
    assert _balanced(result.entries)
    by_account = {(e.account_id, e.direction): e.amount_minor for e in result.entries}
    assert by_account == {(account, Direction.IN): 2000, ("@external:USD", Direction.OUT): 2000}
    assert all(e.transaction_id == result.transaction_id for e in result.entries)
    assert [e.entry_index for e in result.entries] == sorted(e.entry_index for e in result.entries)
    assert tools.minor(account) == (2000, 0, 2000)
    balance = tools.ledger.get_balance(account, tenant_id=tools.tenant_id)
    assert (balance.posted, balance.held, balance.available) == ("20.00", "0.00", "20.00")
    assert balance.journal_sequence == result.journal_sequence
    assert tools.minor("@external:USD")[0] == -2000

    again = tools.ledger.get_transaction(result.transaction_id, tenant_id=tools.tenant_id)
    assert again.transaction_id == result.transaction_id
    assert sorted(e.ledger_entry_id for e in again.entries) == sorted(
        e.ledger_entry_id for e in result.entries
    )


@pytest.mark.parametrize(
    ("amount", "minor"),
    [("1", 100), ("0.01", 1), (7, 700), (__import__("decimal").Decimal("2.50"), 250)],
)
def test_deposit_amount_forms(tools: Tools, amount: Any, minor: int) -> None:
    account = tools.agent()
    tools.ledger.deposit(account, amount, tenant_id=tools.tenant_id, idempotency_key=tools.key())
    assert tools.minor(account) == (minor, 0, minor)


# --- holds ------------------------------------------------------------------------------------


def _freeze(tools: Tools, account: str, amount: str = "5.00", **kwargs: Any) -> Any:
    kwargs.setdefault("ttl_seconds", 600)
    kwargs.setdefault("now", utc_now())
    kwargs.setdefault("idempotency_key", tools.key("freeze"))
    return tools.ledger.freeze(account, amount, "NEGOTIATION", tenant_id=tools.tenant_id, **kwargs)


def test_freeze(tools: Tools) -> None:
    account = tools.agent(balance="20.00")
    payee = tools.agent()
    now = utc_now()
    key = tools.key()
    hold = _freeze(tools, account, "5.00", idempotency_key=key, now=now, payee_account_id=payee)
    assert hold.hold_id == derive_hold_id(tools.tenant_id, key)
    assert hold.state == HoldState.ACTIVE
    assert hold.amount_minor == 500
    assert hold.amount == "5.00"
    assert hold.currency == "USD"
    assert hold.account_id == account
    assert hold.payee_account_id == payee
    assert hold.expires_at == now + timedelta(seconds=600)
    assert hold.captured_minor == 0 and hold.released_minor == 0
    assert hold.replayed is False
    assert tools.minor(account) == (2000, 500, 1500)
    assert tools.minor(f"@hold:{account}")[0] == 500

    fetched = tools.ledger.get_hold(hold.hold_id, tenant_id=tools.tenant_id)
    assert _without_replayed(fetched) == _without_replayed(hold)

    freeze_txn = tools.ledger.get_transaction(hold.freeze_transaction_id, tenant_id=tools.tenant_id)
    assert freeze_txn.kind == TransactionKind.FREEZE
    assert _balanced(freeze_txn.entries)
    assert {(e.account_id, e.direction, e.amount_minor) for e in freeze_txn.entries} == {
        (account, Direction.OUT, 500),
        (f"@hold:{account}", Direction.IN, 500),
    }


def test_freeze_with_explicit_hold_id(tools: Tools) -> None:
    account = tools.agent(balance="20.00")
    hold_id = str(uuid.uuid4())
    hold = _freeze(tools, account, hold_id=hold_id)
    assert hold.hold_id == hold_id
    assert tools.ledger.get_hold(hold_id, tenant_id=tools.tenant_id).amount_minor == 500


def test_freeze_insufficient_funds_and_overdraft(tools: Tools) -> None:
    poor = tools.agent(balance="1.00")
    before = tools.snapshot()
    with pytest.raises(errors.InsufficientFunds) as caught:
        _freeze(tools, poor, "1.01")
    assert caught.value.code == "insufficient_funds"
    assert tools.snapshot() == before

    overdrawn = tools.agent(balance="1.00", overdraft_limit="2.00")
    _freeze(tools, overdrawn, "3.00")
    assert tools.minor(overdrawn) == (100, 300, -200)
    with pytest.raises(errors.InsufficientFunds):
        _freeze(tools, overdrawn, "0.01")


def test_capture_full(tools: Tools) -> None:
    account = tools.agent(balance="20.00")
    payee = tools.agent()
    hold = _freeze(tools, account, "5.00", payee_account_id=payee)
    captured = tools.ledger.capture_hold(
        hold.hold_id,
        "order-1",
        tenant_id=tools.tenant_id,
        idempotency_key=tools.key(),
        now=utc_now(),
    )
    assert captured.state == HoldState.CAPTURED
    assert captured.order_id == "order-1"
    assert (captured.captured_minor, captured.released_minor) == (500, 0)
    assert captured.resolved_at is not None
    assert captured.resolve_transaction_id is not None
    assert tools.minor(account) == (1500, 0, 1500)
    assert tools.minor("@escrow:USD")[0] == 500
    assert tools.minor(payee) == (0, 0, 0)

    txn = tools.ledger.get_transaction(captured.resolve_transaction_id, tenant_id=tools.tenant_id)
    assert txn.kind == TransactionKind.CAPTURE
    assert _balanced(txn.entries)


def test_capture_partial_releases_remainder_in_same_transaction(tools: Tools) -> None:
    account = tools.agent(balance="20.00")
    payee = tools.agent()
    hold = _freeze(tools, account, "5.00")
    captured = tools.ledger.capture_hold(
        hold.hold_id,
        "order-2",
        tenant_id=tools.tenant_id,
        idempotency_key=tools.key(),
        amount="3.00",
        payee_account_id=payee,
        now=utc_now(),
    )
    assert captured.state == HoldState.CAPTURED
    assert (captured.captured_minor, captured.released_minor) == (300, 200)
    assert captured.captured == "3.00" and captured.released == "2.00"
    assert captured.payee_account_id == payee
    assert tools.minor(account) == (1700, 0, 1700)
    assert tools.minor(f"@hold:{account}")[0] == 0
    assert tools.minor("@escrow:USD")[0] == 300

    txn = tools.ledger.get_transaction(captured.resolve_transaction_id, tenant_id=tools.tenant_id)
    assert _balanced(txn.entries)
    moves = {(e.account_id, e.direction, e.amount_minor) for e in txn.entries}
    assert ("@escrow:USD", Direction.IN, 300) in moves
    assert (account, Direction.IN, 200) in moves
    # Nothing else was written for the remainder: one transaction did both.
    assert {e.transaction_id for e in txn.entries} == {captured.resolve_transaction_id}


def test_capture_needs_a_payee(tools: Tools) -> None:
    account = tools.agent(balance="20.00")
    hold = _freeze(tools, account)
    before = tools.snapshot()
    with pytest.raises(errors.PayeeRequired):
        tools.ledger.capture_hold(
            hold.hold_id, "o", tenant_id=tools.tenant_id, idempotency_key=tools.key(), now=utc_now()
        )
    assert tools.snapshot() == before


def test_finalize_pays_payee_net_of_fee(tools: Tools) -> None:
    account = tools.agent(balance="20.00")
    payee = tools.agent()
    hold = _freeze(tools, account, "5.00", payee_account_id=payee)
    tools.ledger.capture_hold(
        hold.hold_id,
        "order-3",
        tenant_id=tools.tenant_id,
        idempotency_key=tools.key(),
        now=utc_now(),
    )
    final = tools.ledger.finalize_hold(
        hold.hold_id,
        tenant_id=tools.tenant_id,
        idempotency_key=tools.key(),
        fee_bps=250,
        now=utc_now(),
    )
    fee = 500 * 250 // 10_000  # 12.5 rounded down: the contract's floor(captured*bps/10000)
    assert final.finalized is True
    assert final.fee_minor == fee
    assert final.finalize_transaction_id is not None
    assert tools.minor(payee) == (500 - fee, 0, 500 - fee)
    assert tools.minor("@revenue:USD")[0] == fee
    assert tools.minor("@escrow:USD")[0] == 0
    assert tools.minor(account) == (1500, 0, 1500)
    txn = tools.ledger.get_transaction(final.finalize_transaction_id, tenant_id=tools.tenant_id)
    assert txn.kind == TransactionKind.FINALIZE
    assert _balanced(txn.entries)


def test_finalize_before_capture_is_refused(tools: Tools) -> None:
    account = tools.agent(balance="20.00")
    hold = _freeze(tools, account, payee_account_id=tools.agent())
    before = tools.snapshot()
    with pytest.raises(errors.HoldNotCaptured):
        tools.ledger.finalize_hold(
            hold.hold_id, tenant_id=tools.tenant_id, idempotency_key=tools.key(), fee_bps=0
        )
    assert tools.snapshot() == before


def test_release(tools: Tools) -> None:
    account = tools.agent(balance="20.00")
    hold = _freeze(tools, account, "5.00")
    released = tools.ledger.release_hold(
        hold.hold_id, tenant_id=tools.tenant_id, idempotency_key=tools.key(), now=utc_now()
    )
    assert released.state == HoldState.RELEASED
    assert (released.captured_minor, released.released_minor) == (0, 500)
    assert tools.minor(account) == (2000, 0, 2000)
    txn = tools.ledger.get_transaction(released.resolve_transaction_id, tenant_id=tools.tenant_id)
    assert txn.kind == TransactionKind.RELEASE
    assert _balanced(txn.entries)


def test_expire(tools: Tools) -> None:
    account = tools.agent(balance="20.00")
    frozen_at = utc_now()
    hold = _freeze(tools, account, "5.00", now=frozen_at, ttl_seconds=60)
    before = tools.snapshot()
    with pytest.raises(errors.HoldNotExpired) as caught:
        tools.ledger.expire_hold(
            hold.hold_id,
            tenant_id=tools.tenant_id,
            idempotency_key=tools.key(),
            now=frozen_at + timedelta(seconds=59),
        )
    assert caught.value.code == "hold_not_expired"
    assert tools.snapshot() == before

    expired = tools.ledger.expire_hold(
        hold.hold_id,
        tenant_id=tools.tenant_id,
        idempotency_key=tools.key(),
        now=frozen_at + timedelta(seconds=60),
    )
    assert expired.state == HoldState.EXPIRED
    assert (expired.captured_minor, expired.released_minor) == (0, 500)
    assert tools.minor(account) == (2000, 0, 2000)
    txn = tools.ledger.get_transaction(expired.resolve_transaction_id, tenant_id=tools.tenant_id)
    assert txn.kind == TransactionKind.EXPIRE


def test_capture_after_expiry_time_is_refused(tools: Tools) -> None:
    account = tools.agent(balance="20.00")
    frozen_at = utc_now()
    hold = _freeze(tools, account, now=frozen_at, ttl_seconds=60, payee_account_id=tools.agent())
    before = tools.snapshot()
    with pytest.raises(errors.HoldExpired):
        tools.ledger.capture_hold(
            hold.hold_id,
            "late",
            tenant_id=tools.tenant_id,
            idempotency_key=tools.key(),
            now=frozen_at + timedelta(seconds=61),
        )
    assert tools.snapshot() == before


def test_a_hold_resolves_once(tools: Tools) -> None:
    account = tools.agent(balance="20.00")
    payee = tools.agent()
    t = tools.tenant_id
    captured = _freeze(tools, account, payee_account_id=payee)
    tools.ledger.capture_hold(captured.hold_id, "o", tenant_id=t, idempotency_key=tools.key())
    released = _freeze(tools, account)
    tools.ledger.release_hold(released.hold_id, tenant_id=t, idempotency_key=tools.key())
    before = tools.snapshot()
    attempts = [
        (
            lambda: tools.ledger.capture_hold(
                captured.hold_id, "o2", tenant_id=t, idempotency_key=tools.key()
            ),
            "hold_already_captured",
        ),
        (
            lambda: tools.ledger.release_hold(
                captured.hold_id, tenant_id=t, idempotency_key=tools.key()
            ),
            "hold_already_captured",
        ),
        (
            lambda: tools.ledger.release_hold(
                released.hold_id, tenant_id=t, idempotency_key=tools.key()
            ),
            "hold_already_released",
        ),
        (
            lambda: tools.ledger.capture_hold(
                released.hold_id,
                "o3",
                tenant_id=t,
                idempotency_key=tools.key(),
                payee_account_id=payee,
            ),
            "hold_already_released",
        ),
    ]
    for attempt, code in attempts:
        with pytest.raises(errors.LedgerError) as caught:
            attempt()
        assert caught.value.code == code
    assert tools.snapshot() == before


# --- record_entries and reversal --------------------------------------------------------------


def _ip_purchase(**overrides: Any) -> LedgerEntryInput:
    fields: dict[str, Any] = {
        "project_id": "project_qa",
        "env": "prod",
        "task_id": "task-procure-123",
        "external_ref": "ipvendor_tx_789",
        "direction": "OUT",
        "amount": "20.00",
        "currency": "USD",
        "reason": "PROCUREMENT",
        "category": "NETWORK_COST",
        "tags": ["ip", "residential", "uk"],
        "meta": {"provider": "iproyal", "sku": "ip.residential.uk.*", "quantity": 100},
        "occurred_at": utc_now() - timedelta(days=1),
    }
    fields.update(overrides)
    return LedgerEntryInput(**fields)


def _ticket_sale() -> LedgerEntryInput:
    return LedgerEntryInput(
        asset_id="product-ticket-asset-id",
        task_id="task-sale-999",
        external_ref="stripe_charge_abc",
        direction="IN",
        amount="120.00",
        currency="USD",
        reason="SALE_REVENUE",
        category="PRODUCT_REVENUE",
        tags=["taylor_swift", "london"],
        meta={"payment_provider": "stripe", "fee_amount": "3.5", "fee_currency": "USD"},
    )


def test_record_entries_primary_and_counterpart(tools: Tools) -> None:
    entry_id = str(uuid.uuid4())
    purchase = _ip_purchase(ledger_entry_id=entry_id)
    result = tools.ledger.record_entries(
        [purchase, _ticket_sale()], tenant_id=tools.tenant_id, idempotency_key=tools.key()
    )
    assert result.kind == TransactionKind.RECORD
    assert len(result.entries) == 4
    assert _balanced(result.entries)
    primaries = [e for e in result.entries if not e.counterpart]
    counterparts = [e for e in result.entries if e.counterpart]
    assert len(primaries) == 2 and len(counterparts) == 2
    assert {e.account_id for e in primaries} == {"@operating:USD"}
    assert {e.account_id for e in counterparts} == {"@external:USD"}

    primary = next(e for e in primaries if e.ledger_entry_id == entry_id)
    assert primary.project_id == "project_qa"
    assert primary.env == "prod"
    assert primary.task_id == "task-procure-123"
    assert primary.external_ref == "ipvendor_tx_789"
    assert primary.direction == Direction.OUT
    assert primary.amount_minor == 2000 and primary.amount == "20.00"
    assert primary.reason == "PROCUREMENT" and primary.category == "NETWORK_COST"
    assert primary.tags == ["ip", "residential", "uk"]
    assert primary.meta["provider"] == "iproyal" and primary.meta["quantity"] == 100
    assert primary.occurred_at == purchase.occurred_at
    assert primary.recorded_at is not None
    assert primary.tenant_id == tools.tenant_id

    counterpart = next(
        e for e in counterparts if e.amount_minor == 2000 and e.direction == Direction.IN
    )
    assert counterpart.ledger_entry_id != entry_id

    assert tools.minor("@operating:USD")[0] == 12000 - 2000
    assert tools.minor("@external:USD")[0] == 2000 - 12000


def test_record_entries_on_an_agent_account(tools: Tools) -> None:
    account = tools.agent(balance="50.00")
    tools.ledger.record_entries(
        [_ip_purchase(amount="20.00")],
        tenant_id=tools.tenant_id,
        idempotency_key=tools.key(),
        account_id=account,
    )
    assert tools.minor(account) == (3000, 0, 3000)


def test_record_entries_duplicate_ledger_entry_id_is_refused(tools: Tools) -> None:
    entry_id = str(uuid.uuid4())
    tools.ledger.record_entries(
        [_ip_purchase(ledger_entry_id=entry_id)],
        tenant_id=tools.tenant_id,
        idempotency_key=tools.key(),
    )
    before = tools.snapshot()
    with pytest.raises(errors.LedgerError):
        tools.ledger.record_entries(
            [_ip_purchase(ledger_entry_id=entry_id, amount="1.00")],
            tenant_id=tools.tenant_id,
            idempotency_key=tools.key(),
        )
    assert tools.snapshot() == before


def test_reverse_transaction(tools: Tools) -> None:
    account = tools.agent()
    deposit = tools.ledger.deposit(
        account, "20.00", tenant_id=tools.tenant_id, idempotency_key=tools.key()
    )
    reversal = tools.ledger.reverse_transaction(
        deposit.transaction_id, tenant_id=tools.tenant_id, idempotency_key=tools.key()
    )
    assert reversal.kind == TransactionKind.REVERSAL
    assert reversal.reverses_transaction_id == deposit.transaction_id
    assert reversal.transaction_id != deposit.transaction_id
    assert _balanced(reversal.entries)
    flipped = {
        (
            e.account_id,
            Direction.OUT if e.direction == Direction.IN else Direction.IN,
            e.amount_minor,
        )
        for e in deposit.entries
    }
    assert {(e.account_id, e.direction, e.amount_minor) for e in reversal.entries} == flipped
    # Each reversing entry links the original transaction (DESIGN: ``meta.reverses``) and the
    # entry it cancels (LedgerEntry v1.0: "linked through meta").
    originals = {e.ledger_entry_id: e for e in deposit.entries}
    for entry in reversal.entries:
        assert entry.meta["reverses"] == deposit.transaction_id
        original = originals[entry.meta["reverses_ledger_entry_id"]]
        assert (original.account_id, original.amount_minor) == (
            entry.account_id,
            entry.amount_minor,
        )
        assert original.direction != entry.direction
    assert tools.minor(account) == (0, 0, 0)

    before = tools.snapshot()
    with pytest.raises(errors.TransactionAlreadyReversed) as caught:
        tools.ledger.reverse_transaction(
            deposit.transaction_id, tenant_id=tools.tenant_id, idempotency_key=tools.key()
        )
    assert caught.value.code == "transaction_already_reversed"
    assert tools.snapshot() == before
    assert tools.ledger.verify_journal() == []


def test_reverse_a_record(tools: Tools) -> None:
    record = tools.ledger.record_entries(
        [_ip_purchase()], tenant_id=tools.tenant_id, idempotency_key=tools.key()
    )
    tools.ledger.reverse_transaction(
        record.transaction_id, tenant_id=tools.tenant_id, idempotency_key=tools.key()
    )
    assert tools.minor("@operating:USD")[0] == 0
    assert tools.minor("@external:USD")[0] == 0


def test_reverse_unknown_transaction(tools: Tools) -> None:
    with pytest.raises(errors.TransactionNotFound):
        tools.ledger.reverse_transaction(
            str(uuid.uuid4()), tenant_id=tools.tenant_id, idempotency_key=tools.key()
        )


# --- balances in time and entry listing -------------------------------------------------------


def test_get_balance_as_of(tools: Tools) -> None:
    account = tools.agent()
    first = tools.ledger.deposit(
        account, "10.00", tenant_id=tools.tenant_id, idempotency_key=tools.key()
    )
    second = tools.ledger.deposit(
        account, "5.00", tenant_id=tools.tenant_id, idempotency_key=tools.key()
    )
    first_at = first.entries[0].recorded_at
    second_at = second.entries[0].recorded_at
    assert first_at < second_at

    at_first = tools.ledger.get_balance(account, tenant_id=tools.tenant_id, as_of=first_at)
    assert (at_first.posted_minor, at_first.available_minor) == (1000, 1000)
    assert at_first.journal_sequence == first.journal_sequence
    at_second = tools.ledger.get_balance(account, tenant_id=tools.tenant_id, as_of=second_at)
    assert at_second.posted_minor == 1500
    before_all = tools.ledger.get_balance(
        account, tenant_id=tools.tenant_id, as_of=first_at - timedelta(seconds=1)
    )
    assert before_all.posted_minor == 0
    now_balance = tools.ledger.get_balance(account, tenant_id=tools.tenant_id)
    assert now_balance.posted_minor == 1500
    assert now_balance.journal_sequence == second.journal_sequence


def test_get_balance_as_of_sees_holds(tools: Tools) -> None:
    account = tools.agent(balance="10.00")
    hold = _freeze(tools, account, "4.00")
    frozen_at = (
        tools.ledger.get_transaction(hold.freeze_transaction_id, tenant_id=tools.tenant_id)
        .entries[0]
        .recorded_at
    )
    tools.ledger.release_hold(hold.hold_id, tenant_id=tools.tenant_id, idempotency_key=tools.key())
    then = tools.ledger.get_balance(account, tenant_id=tools.tenant_id, as_of=frozen_at)
    assert (then.posted_minor, then.held_minor, then.available_minor) == (1000, 400, 600)
    assert tools.minor(account) == (1000, 0, 1000)


def test_list_ledger_entries_pages(tools: Tools) -> None:
    account = tools.agent()
    start = utc_now() - timedelta(days=10)
    for index in range(11):
        tools.ledger.deposit(
            account,
            f"{index + 1}.00",
            tenant_id=tools.tenant_id,
            idempotency_key=tools.key(),
            occurred_at=start + timedelta(hours=index),
        )
    everything = tools.ledger.list_ledger_entries(account, tenant_id=tools.tenant_id, limit=1000)
    assert everything.next_cursor is None
    assert len(everything.entries) == 11
    order = [(e.journal_sequence, e.entry_index) for e in everything.entries]
    assert order == sorted(order) and len(set(order)) == len(order)
    assert [e.amount_minor for e in everything.entries] == [(i + 1) * 100 for i in range(11)]
    assert all(e.account_id == account for e in everything.entries)

    pages, cursor, seen = 0, None, []
    while True:
        page = tools.ledger.list_ledger_entries(
            account, tenant_id=tools.tenant_id, limit=3, cursor=cursor
        )
        assert len(page.entries) <= 3
        seen.extend(page.entries)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        assert pages < 10, "pagination does not end"
    assert pages in (4, 5)  # 3+3+3+2, and possibly one empty final page
    assert [e.ledger_entry_id for e in seen] == [e.ledger_entry_id for e in everything.entries]

    window = tools.ledger.list_ledger_entries(
        account,
        start + timedelta(minutes=90),
        start + timedelta(minutes=270),
        tenant_id=tools.tenant_id,
    )
    assert [e.amount_minor for e in window.entries] == [300, 400, 500]


def test_list_ledger_entries_pagination_is_stable_under_inserts(tools: Tools) -> None:
    account = tools.agent()
    for _ in range(4):
        tools.ledger.deposit(
            account, "1.00", tenant_id=tools.tenant_id, idempotency_key=tools.key()
        )
    first = tools.ledger.list_ledger_entries(account, tenant_id=tools.tenant_id, limit=2)
    assert first.next_cursor is not None
    for _ in range(2):
        tools.ledger.deposit(
            account, "2.00", tenant_id=tools.tenant_id, idempotency_key=tools.key()
        )
    seen = list(first.entries)
    cursor = first.next_cursor
    while cursor is not None:
        page = tools.ledger.list_ledger_entries(
            account, tenant_id=tools.tenant_id, limit=2, cursor=cursor
        )
        seen.extend(page.entries)
        cursor = page.next_cursor
    assert [e.amount_minor for e in seen] == [100] * 4 + [200] * 2


# --- idempotency ------------------------------------------------------------------------------


def _replay_cases(tools: Tools) -> list[tuple[str, Any, Any]]:
    """(name, call(key), different_call(key)) for every mutating operation."""
    t = tools.tenant_id
    ledger = tools.ledger
    account = tools.agent(balance="100.00")
    payee = tools.agent()
    now = utc_now()

    def hold(**kwargs: Any) -> str:
        return _freeze(tools, account, "1.00", payee_account_id=payee, now=now, **kwargs).hold_id

    captured_for_finalize = hold()
    ledger.capture_hold(captured_for_finalize, "o-f", tenant_id=t, idempotency_key=tools.key())
    capture_target = hold()
    release_target = hold()
    expire_target = hold(ttl_seconds=5)
    deposit_to_reverse = ledger.deposit(account, "1.00", tenant_id=t, idempotency_key=tools.key())
    late = now + timedelta(seconds=10)

    return [
        (
            "open_account",
            lambda k: ledger.open_account(
                tenant_id=t, currency="USD", idempotency_key=k, account_id="idem-acct"
            ),
            lambda k: ledger.open_account(
                tenant_id=t, currency="EUR", idempotency_key=k, account_id="idem-acct"
            ),
        ),
        (
            "deposit",
            lambda k: ledger.deposit(account, "2.00", tenant_id=t, idempotency_key=k),
            lambda k: ledger.deposit(account, "2.01", tenant_id=t, idempotency_key=k),
        ),
        (
            "freeze",
            lambda k: ledger.freeze(
                account,
                "3.00",
                "NEGOTIATION",
                tenant_id=t,
                idempotency_key=k,
                ttl_seconds=60,
                now=now,
            ),
            lambda k: ledger.freeze(
                account,
                "3.01",
                "NEGOTIATION",
                tenant_id=t,
                idempotency_key=k,
                ttl_seconds=60,
                now=now,
            ),
        ),
        (
            "capture_hold",
            lambda k: ledger.capture_hold(
                capture_target, "o-1", tenant_id=t, idempotency_key=k, amount="0.50", now=now
            ),
            lambda k: ledger.capture_hold(
                capture_target, "o-1", tenant_id=t, idempotency_key=k, amount="0.60", now=now
            ),
        ),
        (
            "finalize_hold",
            lambda k: ledger.finalize_hold(
                captured_for_finalize, tenant_id=t, idempotency_key=k, fee_bps=100, now=now
            ),
            lambda k: ledger.finalize_hold(
                captured_for_finalize, tenant_id=t, idempotency_key=k, fee_bps=200, now=now
            ),
        ),
        (
            "release_hold",
            lambda k: ledger.release_hold(release_target, tenant_id=t, idempotency_key=k, now=now),
            lambda k: ledger.release_hold(capture_target, tenant_id=t, idempotency_key=k, now=now),
        ),
        (
            "expire_hold",
            lambda k: ledger.expire_hold(expire_target, tenant_id=t, idempotency_key=k, now=late),
            lambda k: ledger.expire_hold(release_target, tenant_id=t, idempotency_key=k, now=late),
        ),
        (
            "record_entries",
            lambda k: ledger.record_entries(
                [_ip_purchase(occurred_at=now)], tenant_id=t, idempotency_key=k
            ),
            lambda k: ledger.record_entries(
                [_ip_purchase(occurred_at=now, amount="20.01")], tenant_id=t, idempotency_key=k
            ),
        ),
        (
            "reverse_transaction",
            lambda k: ledger.reverse_transaction(
                deposit_to_reverse.transaction_id, tenant_id=t, idempotency_key=k
            ),
            lambda k: ledger.reverse_transaction(
                deposit_to_reverse.transaction_id, tenant_id=t, idempotency_key=k, reason="REFUND"
            ),
        ),
    ]


def test_idempotency_replay_and_reuse(tools: Tools) -> None:
    cases = _replay_cases(tools)
    for name, call, different in cases:
        key = tools.key(name)
        original = call(key)
        assert original.replayed is False, name
        after_first = tools.snapshot()

        replay = call(key)
        assert replay.replayed is True, name
        assert _without_replayed(replay) == _without_replayed(original), name
        assert tools.snapshot() == after_first, f"{name}: a replay wrote something"

        with pytest.raises(errors.IdempotencyKeyReused) as caught:
            different(key)
        assert caught.value.code == "idempotency_key_reused", name
        assert tools.snapshot() == after_first, f"{name}: a reused key wrote something"
    assert tools.ledger.verify_journal() == []


def test_idempotency_key_reused_across_operations(tools: Tools) -> None:
    account = tools.agent(balance="10.00")
    key = tools.key()
    tools.ledger.deposit(account, "1.00", tenant_id=tools.tenant_id, idempotency_key=key)
    before = tools.snapshot()
    with pytest.raises(errors.IdempotencyKeyReused):
        _freeze(tools, account, "1.00", idempotency_key=key)
    assert tools.snapshot() == before


def test_idempotency_keys_are_per_tenant(ledger: Ledger, tools_for: Any) -> None:
    key = new_key()
    results = []
    for tenant in (new_tenant(), new_tenant()):
        tools = tools_for(tenant)
        account = tools.agent(account_id="same-id")
        results.append(ledger.deposit(account, "1.00", tenant_id=tenant, idempotency_key=key))
    assert [r.replayed for r in results] == [False, False]
    assert results[0].transaction_id != results[1].transaction_id


def test_a_rejected_call_does_not_consume_its_key(tools: Tools) -> None:
    account = tools.agent()
    key = tools.key()
    with pytest.raises(errors.InvalidAmount):
        tools.ledger.deposit(account, "0", tenant_id=tools.tenant_id, idempotency_key=key)
    result = tools.ledger.deposit(account, "1.00", tenant_id=tools.tenant_id, idempotency_key=key)
    assert result.replayed is False
    poor = tools.agent()
    key = tools.key()
    with pytest.raises(errors.InsufficientFunds):
        _freeze(tools, poor, "1.00", idempotency_key=key)
    tools.ledger.deposit(poor, "1.00", tenant_id=tools.tenant_id, idempotency_key=tools.key())
    assert _freeze(tools, poor, "1.00", idempotency_key=key).replayed is False


# --- tenants ----------------------------------------------------------------------------------


def test_tenant_isolation(ledger: Ledger, tools_for: Any) -> None:
    owner = tools_for(new_tenant())
    other = tools_for(new_tenant())
    other_payee = other.agent()
    owner_account = owner.agent(balance="10.00", account_id="shared-name")
    hold = _freeze(owner, owner_account, "1.00", payee_account_id=owner.agent())
    deposit = ledger.deposit(
        owner_account, "1.00", tenant_id=owner.tenant_id, idempotency_key=new_key()
    )
    t = other.tenant_id
    before = owner.snapshot()

    account_calls = [
        lambda: ledger.get_account(tenant_id=t, account_id=owner_account),
        lambda: ledger.get_balance(owner_account, tenant_id=t),
        lambda: ledger.deposit(owner_account, "1.00", tenant_id=t, idempotency_key=new_key()),
        lambda: ledger.freeze(
            owner_account, "1.00", "X", tenant_id=t, idempotency_key=new_key(), ttl_seconds=60
        ),
        lambda: ledger.list_ledger_entries(owner_account, tenant_id=t),
        lambda: ledger.record_entries(
            [_ip_purchase()], tenant_id=t, idempotency_key=new_key(), account_id=owner_account
        ),
    ]
    for call in account_calls:
        with pytest.raises(errors.AccountNotFound):
            call()
    hold_calls = [
        lambda: ledger.get_hold(hold.hold_id, tenant_id=t),
        lambda: ledger.capture_hold(
            hold.hold_id, "o", tenant_id=t, idempotency_key=new_key(), payee_account_id=other_payee
        ),
        lambda: ledger.release_hold(hold.hold_id, tenant_id=t, idempotency_key=new_key()),
        lambda: ledger.expire_hold(
            hold.hold_id, tenant_id=t, idempotency_key=new_key(), now=utc_now() + timedelta(days=1)
        ),
        lambda: ledger.finalize_hold(
            hold.hold_id, tenant_id=t, idempotency_key=new_key(), fee_bps=0
        ),
    ]
    for call in hold_calls:
        with pytest.raises(errors.HoldNotFound):
            call()
    for call in (
        lambda: ledger.get_transaction(deposit.transaction_id, tenant_id=t),
        lambda: ledger.reverse_transaction(
            deposit.transaction_id, tenant_id=t, idempotency_key=new_key()
        ),
    ):
        with pytest.raises(errors.TransactionNotFound):
            call()

    assert owner.snapshot() == before
    assert owner_account not in {a.account_id for a in ledger.list_accounts(tenant_id=t)}
    assert ledger.list_events(tenant_id=t) == []
    assert all(h.tenant_id == t for h in ledger.list_holds(tenant_id=t, limit=100))
    # The other tenant may use the same account ID for an account of its own.
    assert other.agent(account_id="shared-name") == "shared-name"
    assert other.minor("shared-name") == (0, 0, 0)
    assert owner.minor("shared-name") == (1100, 100, 1000)


def test_another_tenants_account_is_indistinguishable_from_a_missing_one(
    ledger: Ledger, tools_for: Any
) -> None:
    caller = new_tenant()

    def attempt() -> dict[str, Any]:
        with pytest.raises(errors.LedgerError) as caught:
            ledger.deposit("acct-x", "1.00", tenant_id=caller, idempotency_key="same-key")
        return caught.value.to_dict()

    missing = attempt()
    tools_for(new_tenant()).agent(account_id="acct-x", balance="1.00")
    assert attempt() == missing
    assert missing["code"] == "account_not_found"


# --- audit and events -------------------------------------------------------------------------


def test_verify_journal_is_empty_on_a_healthy_ledger(tools: Tools) -> None:
    assert tools.ledger.verify_journal() == []
    account = tools.agent(balance="30.00")
    payee = tools.agent()
    hold = _freeze(tools, account, "5.00", payee_account_id=payee)
    tools.ledger.capture_hold(
        hold.hold_id, "o", tenant_id=tools.tenant_id, idempotency_key=tools.key(), amount="4.00"
    )
    tools.ledger.finalize_hold(
        hold.hold_id, tenant_id=tools.tenant_id, idempotency_key=tools.key(), fee_bps=1000
    )
    tools.ledger.record_entries(
        [_ip_purchase()], tenant_id=tools.tenant_id, idempotency_key=tools.key()
    )
    assert tools.ledger.verify_journal() == []


def test_outbox_events(tools: Tools) -> None:
    ledger, t = tools.ledger, tools.tenant_id
    account = tools.agent(balance="30.00")
    payee = tools.agent()
    now = utc_now()
    captured = _freeze(tools, account, "5.00", payee_account_id=payee, now=now)
    captured = ledger.capture_hold(
        captured.hold_id, "order-9", tenant_id=t, idempotency_key=tools.key(), now=now
    )
    captured = ledger.finalize_hold(
        captured.hold_id, tenant_id=t, idempotency_key=tools.key(), fee_bps=100, now=now
    )
    released = _freeze(tools, account, "1.00", now=now)
    released = ledger.release_hold(
        released.hold_id, tenant_id=t, idempotency_key=tools.key(), now=now
    )
    expired = _freeze(tools, account, "1.00", now=now, ttl_seconds=1)
    expired = ledger.expire_hold(
        expired.hold_id, tenant_id=t, idempotency_key=tools.key(), now=now + timedelta(seconds=1)
    )

    expected = [
        ("INTENT_CREATED", captured.hold_id, captured.freeze_transaction_id),
        ("ORDER_CREATED", captured.hold_id, captured.resolve_transaction_id),
        ("PAYMENT_SUCCEEDED", captured.hold_id, captured.finalize_transaction_id),
        ("INTENT_CREATED", released.hold_id, released.freeze_transaction_id),
        ("HOLD_RELEASED", released.hold_id, released.resolve_transaction_id),
        ("INTENT_CREATED", expired.hold_id, expired.freeze_transaction_id),
        ("HOLD_EXPIRED", expired.hold_id, expired.resolve_transaction_id),
    ]
    events = ledger.list_events(tenant_id=t)
    assert [(e.type, e.hold_id, e.transaction_id) for e in events] == expected
    for event in events:
        assert event.event_id == derive_event_id(event.transaction_id, event.type)
        assert event.tenant_id == t
        assert event.sent_at is None
    sequences = [e.sequence for e in events]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    order_event = events[1]
    assert order_event.order_id == "order-9"

    # Replays re-emit nothing.
    ledger.list_events(tenant_id=t)
    assert len(ledger.list_events(tenant_id=t)) == len(expected)

    # Paging by sequence and marking as sent.
    later = ledger.list_events(tenant_id=t, after_sequence=events[2].sequence)
    assert [e.event_id for e in later] == [e.event_id for e in events[3:]]
    assert ledger.mark_events_sent([events[0].event_id, events[1].event_id]) == 2
    unsent = ledger.list_events(tenant_id=t, unsent_only=True)
    assert [e.event_id for e in unsent] == [e.event_id for e in events[2:]]


def test_outbox_event_ids_survive_replay(tools: Tools) -> None:
    account = tools.agent(balance="30.00")
    key = tools.key()
    now = utc_now()
    first = _freeze(tools, account, "5.00", idempotency_key=key, now=now)
    again = _freeze(tools, account, "5.00", idempotency_key=key, now=now)
    assert again.replayed is True and again.hold_id == first.hold_id
    events = tools.ledger.list_events(tenant_id=tools.tenant_id)
    assert [e.type for e in events] == ["INTENT_CREATED"]
    assert events[0].event_id == derive_event_id(first.freeze_transaction_id, "INTENT_CREATED")


def test_hold_movements_and_reversals_are_not_reversed(tools: Tools) -> None:
    """Holds resolve through their own operations; a reversal is not reversed again."""
    account = tools.agent(balance="10.00")
    hold = _freeze(tools, account, "1.00")
    deposit = tools.ledger.deposit(
        account, "1.00", tenant_id=tools.tenant_id, idempotency_key=tools.key()
    )
    reversal = tools.ledger.reverse_transaction(
        deposit.transaction_id, tenant_id=tools.tenant_id, idempotency_key=tools.key()
    )
    before = tools.snapshot()
    for transaction_id in (hold.freeze_transaction_id, reversal.transaction_id):
        with pytest.raises(errors.InvalidEntry):
            tools.ledger.reverse_transaction(
                transaction_id, tenant_id=tools.tenant_id, idempotency_key=tools.key()
            )
    assert tools.snapshot() == before
