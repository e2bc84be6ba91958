"""Every path of the hold saga on the time-skipping test server: journal, balances, events.

Each test gets a fresh SQLite ledger, a fresh task queue and a funded tenant (buyer 100.00 USD,
a seller, the platform accounts). The platform fee is 1% (100 bps), given at freeze.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from saga_helpers import (
    Saga,
    ServerClock,
    Tenant,
    assert_books_intact,
    balances,
    count_events,
    event_types,
    expected_balances,
    fund_tenant,
    history_of,
    hold_kinds,
    hold_transactions,
    local_activities,
    wait_for_hold,
    workflow_task_failures,
)
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from activities.faults import FaultInjector
from ledger_db import Hold, HoldState, Ledger, LedgerConfig
from ledger_db.errors import (
    CaptureExceedsHold,
    HoldAlreadyCaptured,
    HoldAlreadyReleased,
    HoldExpired,
    HoldNotCaptured,
    HoldNotFound,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidAmount,
    PayeeRequired,
    TtlOutOfRange,
)
from ledger_db.ids import derive_hold_id, hold_workflow_id
from starter.client import ClientConfig, LedgerClient
from worker import build_worker
from workflows.models import FreezeRequest, HoldPhase

pytestmark = [pytest.mark.temporal, pytest.mark.asyncio(loop_scope="session")]

FEE_BPS = 100
TTL_SECONDS = 600


async def freeze(
    saga: Saga,
    tenant: Tenant,
    amount: str = "30.00",
    *,
    key: str = "freeze-1",
    payee: str | None = "seller",
    ttl_seconds: int = TTL_SECONDS,
) -> Hold:
    return await saga.client.freeze(
        tenant.buyer,
        amount,
        "NEGOTIATION",
        tenant_id=tenant.tenant_id,
        idempotency_key=key,
        ttl_seconds=ttl_seconds,
        payee_account_id=payee,
        fee_bps=FEE_BPS,
    )


async def test_full_capture_then_finalize(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant)
    assert hold.state is HoldState.ACTIVE and hold.amount == "30.00" and not hold.replayed
    assert hold.hold_id == derive_hold_id(tenant.tenant_id, "freeze-1")
    assert balances(saga.ledger, tenant) == expected_balances(
        tenant,
        buyer_posted="100.00",
        buyer_held="30.00",
        seller="0.00",
        escrow="0.00",
        revenue="0.00",
    )

    captured = await saga.client.capture_hold(
        hold.hold_id, "order-1", tenant_id=tenant.tenant_id, idempotency_key="capture-1"
    )
    assert captured.state is HoldState.CAPTURED
    assert (captured.captured, captured.released, captured.order_id) == ("30.00", "0.00", "order-1")

    final = await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.finalized and final.fee_minor == 30
    assert balances(saga.ledger, tenant) == expected_balances(
        tenant,
        buyer_posted="70.00",
        buyer_held="0.00",
        seller="29.70",
        escrow="0.00",
        revenue="0.30",
    )
    journal = hold_transactions(saga.ledger, tenant.tenant_id, hold.hold_id)
    assert [kind for kind, _ in journal] == ["freeze", "capture", "finalize"]
    assert sorted(journal[1][1]) == sorted(
        [("@hold:buyer", "OUT", 3000), ("@escrow:USD", "IN", 3000)]
    )
    assert event_types(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "INTENT_CREATED",
        "ORDER_CREATED",
        "PAYMENT_SUCCEEDED",
    ]
    state = await saga.client.hold_state(hold.hold_id, tenant_id=tenant.tenant_id)
    assert state.phase is HoldPhase.CAPTURED and state.resolution == "capture"
    assert_books_intact(saga.ledger)


async def test_partial_capture_releases_the_rest_then_finalizes(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant, payee=None)
    captured = await saga.client.capture_hold(
        hold.hold_id,
        "order-2",
        tenant_id=tenant.tenant_id,
        idempotency_key="capture-1",
        amount="12.50",
        payee_account_id=tenant.seller,
    )
    assert (captured.captured, captured.released) == ("12.50", "17.50")
    final = await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.finalized and final.payee_account_id == tenant.seller
    # Fee: floor(1250 * 100 / 10000) = 12 minor units.
    assert balances(saga.ledger, tenant) == expected_balances(
        tenant,
        buyer_posted="87.50",
        buyer_held="0.00",
        seller="12.38",
        escrow="0.00",
        revenue="0.12",
    )
    journal = hold_transactions(saga.ledger, tenant.tenant_id, hold.hold_id)
    assert [kind for kind, _ in journal] == ["freeze", "capture", "finalize"]
    assert sorted(journal[1][1]) == sorted(
        [
            ("@hold:buyer", "OUT", 1250),
            ("@escrow:USD", "IN", 1250),
            ("@hold:buyer", "OUT", 1750),
            ("buyer", "IN", 1750),
        ]
    )
    assert event_types(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "INTENT_CREATED",
        "ORDER_CREATED",
        "PAYMENT_SUCCEEDED",
    ]
    assert_books_intact(saga.ledger)


async def test_release(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant)
    released = await saga.client.release_hold(
        hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="release-1"
    )
    assert released.state is HoldState.RELEASED and released.released == "30.00"
    final = await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.state is HoldState.RELEASED
    assert balances(saga.ledger, tenant) == expected_balances(
        tenant,
        buyer_posted="100.00",
        buyer_held="0.00",
        seller="0.00",
        escrow="0.00",
        revenue="0.00",
    )
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold.hold_id) == ["freeze", "release"]
    assert event_types(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "INTENT_CREATED",
        "HOLD_RELEASED",
    ]
    # The same release again is the original result; a capture now is refused.
    again = await saga.client.release_hold(
        hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="release-1"
    )
    assert again.state is HoldState.RELEASED and again.replayed
    with pytest.raises(HoldAlreadyReleased):
        await saga.client.capture_hold(
            hold.hold_id, "order-x", tenant_id=tenant.tenant_id, idempotency_key="capture-late"
        )
    assert_books_intact(saga.ledger)


async def test_expiry(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant, ttl_seconds=60)
    # Waiting for the result lets the test server skip time to the expiry timer.
    final = await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.state is HoldState.EXPIRED and final.released == "30.00"
    assert final.resolved_at is not None and final.resolved_at >= hold.expires_at
    assert balances(saga.ledger, tenant) == expected_balances(
        tenant,
        buyer_posted="100.00",
        buyer_held="0.00",
        seller="0.00",
        escrow="0.00",
        revenue="0.00",
    )
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold.hold_id) == ["freeze", "expire"]
    assert event_types(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "INTENT_CREATED",
        "HOLD_EXPIRED",
    ]
    state = await saga.client.hold_state(hold.hold_id, tenant_id=tenant.tenant_id)
    assert state.phase is HoldPhase.EXPIRED and state.resolution == "expire"
    assert_books_intact(saga.ledger)


async def test_capture_after_expiry(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant, ttl_seconds=60)
    await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    with pytest.raises(HoldExpired):
        await saga.client.capture_hold(
            hold.hold_id, "order-late", tenant_id=tenant.tenant_id, idempotency_key="capture-1"
        )
    with pytest.raises(HoldExpired):
        await saga.client.release_hold(
            hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="release-1"
        )
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold.hold_id) == ["freeze", "expire"]
    assert event_types(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "INTENT_CREATED",
        "HOLD_EXPIRED",
    ]
    assert balances(saga.ledger, tenant)[tenant.buyer] == ("100.00", "0.00", "100.00")


async def test_capture_at_the_expiry_instant_is_refused(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant, ttl_seconds=60)
    await saga.env.sleep(timedelta(seconds=60))
    with pytest.raises(HoldExpired):
        await saga.client.capture_hold(
            hold.hold_id, "order-late", tenant_id=tenant.tenant_id, idempotency_key="capture-1"
        )
    final = await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.state is HoldState.EXPIRED
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold.hold_id) == ["freeze", "expire"]


async def test_capture_racing_expiry_resolves_once(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant, ttl_seconds=60)
    await saga.env.sleep(timedelta(seconds=59))
    capture, _ = await asyncio.gather(
        saga.client.capture_hold(
            hold.hold_id, "order-race", tenant_id=tenant.tenant_id, idempotency_key="capture-1"
        ),
        saga.env.sleep(timedelta(seconds=2)),
        return_exceptions=True,
    )
    final = await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    kinds = hold_kinds(saga.ledger, tenant.tenant_id, hold.hold_id)
    if isinstance(capture, Hold):
        assert final.state is HoldState.CAPTURED and final.finalized
        assert kinds == ["freeze", "capture", "finalize"]
        assert balances(saga.ledger, tenant)[tenant.buyer] == ("70.00", "0.00", "70.00")
    else:
        assert isinstance(capture, HoldExpired), capture
        assert final.state is HoldState.EXPIRED
        assert kinds == ["freeze", "expire"]
        assert balances(saga.ledger, tenant)[tenant.buyer] == ("100.00", "0.00", "100.00")
    assert final.captured_minor + final.released_minor == final.amount_minor
    assert_books_intact(saga.ledger)


async def test_double_capture(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant)
    first = await saga.client.capture_hold(
        hold.hold_id,
        "order-1",
        tenant_id=tenant.tenant_id,
        idempotency_key="capture-1",
        amount="10",
    )
    # The same request under the same key: the original result, nothing posted again.
    again = await saga.client.capture_hold(
        hold.hold_id,
        "order-1",
        tenant_id=tenant.tenant_id,
        idempotency_key="capture-1",
        amount="10.00",
    )
    assert again.replayed and again.captured == first.captured == "10.00"
    with pytest.raises(IdempotencyKeyReused):
        await saga.client.capture_hold(
            hold.hold_id,
            "order-1",
            tenant_id=tenant.tenant_id,
            idempotency_key="capture-1",
            amount="11.00",
        )
    with pytest.raises(HoldAlreadyCaptured):
        await saga.client.capture_hold(
            hold.hold_id, "order-2", tenant_id=tenant.tenant_id, idempotency_key="capture-2"
        )
    await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    # After the workflow ended the answers are the same.
    ended = await saga.client.capture_hold(
        hold.hold_id,
        "order-1",
        tenant_id=tenant.tenant_id,
        idempotency_key="capture-1",
        amount="10",
    )
    assert ended.replayed and ended.captured == "10.00"
    with pytest.raises(HoldAlreadyCaptured):
        await saga.client.capture_hold(
            hold.hold_id, "order-2", tenant_id=tenant.tenant_id, idempotency_key="capture-2"
        )
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "freeze",
        "capture",
        "finalize",
    ]
    assert event_types(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "INTENT_CREATED",
        "ORDER_CREATED",
        "PAYMENT_SUCCEEDED",
    ]
    assert balances(saga.ledger, tenant) == expected_balances(
        tenant,
        buyer_posted="90.00",
        buyer_held="0.00",
        seller="9.90",
        escrow="0.00",
        revenue="0.10",
    )
    assert_books_intact(saga.ledger)


async def test_release_after_capture(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant)
    await saga.client.capture_hold(
        hold.hold_id, "order-1", tenant_id=tenant.tenant_id, idempotency_key="capture-1"
    )
    with pytest.raises(HoldAlreadyCaptured):
        await saga.client.release_hold(
            hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="release-1"
        )
    await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    with pytest.raises(HoldAlreadyCaptured):
        await saga.client.release_hold(
            hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="release-1"
        )
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "freeze",
        "capture",
        "finalize",
    ]
    assert "HOLD_RELEASED" not in event_types(saga.ledger, tenant.tenant_id, hold.hold_id)
    assert balances(saga.ledger, tenant)[tenant.seller] == ("29.70", "0.00", "29.70")


async def test_idempotent_freeze(saga: Saga, tenant: Tenant) -> None:
    first = await freeze(saga, tenant)
    second = await freeze(saga, tenant, amount="30")
    assert second.hold_id == first.hold_id and second.replayed
    assert second.expires_at == first.expires_at
    await saga.client.release_hold(first.hold_id, tenant_id=tenant.tenant_id, idempotency_key="r")
    await wait_for_hold(saga, first.hold_id, tenant_id=tenant.tenant_id)
    # After the hold ended, the same freeze still answers with the same hold, no new workflow.
    third = await freeze(saga, tenant)
    assert third.hold_id == first.hold_id and third.replayed and third.state is HoldState.ACTIVE
    assert hold_kinds(saga.ledger, tenant.tenant_id, first.hold_id) == ["freeze", "release"]
    assert event_types(saga.ledger, tenant.tenant_id) == ["INTENT_CREATED", "HOLD_RELEASED"]
    assert balances(saga.ledger, tenant)[tenant.buyer] == ("100.00", "0.00", "100.00")


async def test_reused_key_with_a_different_freeze(saga: Saga, tenant: Tenant) -> None:
    first = await freeze(saga, tenant)
    with pytest.raises(IdempotencyKeyReused):
        await freeze(saga, tenant, amount="31.00")
    with pytest.raises(IdempotencyKeyReused):
        await freeze(saga, tenant, payee=None)
    await saga.client.release_hold(first.hold_id, tenant_id=tenant.tenant_id, idempotency_key="r")
    await wait_for_hold(saga, first.hold_id, tenant_id=tenant.tenant_id)
    with pytest.raises(IdempotencyKeyReused):
        await freeze(saga, tenant, amount="31.00")
    assert hold_kinds(saga.ledger, tenant.tenant_id, first.hold_id) == ["freeze", "release"]
    assert balances(saga.ledger, tenant)[tenant.buyer] == ("100.00", "0.00", "100.00")


async def test_insufficient_funds_leaves_no_hold_and_no_workflow(
    saga: Saga, tenant: Tenant
) -> None:
    with pytest.raises(InsufficientFunds):
        await freeze(saga, tenant, amount="1000.00")
    hold_id = derive_hold_id(tenant.tenant_id, "freeze-1")
    with pytest.raises(HoldNotFound):
        saga.ledger.get_hold(hold_id, tenant_id=tenant.tenant_id)
    handle = saga.env.client.get_workflow_handle(hold_workflow_id(hold_id))
    description = await handle.describe()
    assert description.status is not None and description.status.name == "FAILED"
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold_id) == []
    assert event_types(saga.ledger, tenant.tenant_id) == []
    assert balances(saga.ledger, tenant)[tenant.buyer] == ("100.00", "0.00", "100.00")
    # Nothing was written, not even the key: after a top-up the same freeze goes through.
    saga.ledger.deposit(
        tenant.buyer, "900.00", tenant_id=tenant.tenant_id, idempotency_key="top-up"
    )
    hold = await freeze(saga, tenant, amount="1000.00")
    assert hold.hold_id == hold_id and hold.state is HoldState.ACTIVE


async def test_unknown_account_is_rejected(saga: Saga, tenant: Tenant) -> None:
    from ledger_db.errors import AccountNotFound

    with pytest.raises(AccountNotFound):
        await saga.client.freeze(
            "nobody",
            "1.00",
            "NEGOTIATION",
            tenant_id=tenant.tenant_id,
            idempotency_key="freeze-x",
            ttl_seconds=60,
        )


async def test_validators_reject_bad_requests_before_history(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant, payee=None)
    capture = saga.client.capture_hold
    with pytest.raises(CaptureExceedsHold):
        await capture(
            hold.hold_id,
            "o",
            tenant_id=tenant.tenant_id,
            idempotency_key="c",
            amount="30.01",
            payee_account_id="seller",
        )
    with pytest.raises(InvalidAmount):
        await capture(
            hold.hold_id,
            "o",
            tenant_id=tenant.tenant_id,
            idempotency_key="c",
            amount="1.001",
            payee_account_id="seller",
        )
    with pytest.raises(InvalidAmount):
        await capture(
            hold.hold_id,
            "o",
            tenant_id=tenant.tenant_id,
            idempotency_key="c",
            amount="0",
            payee_account_id="seller",
        )
    with pytest.raises(PayeeRequired):
        await capture(hold.hold_id, "o", tenant_id=tenant.tenant_id, idempotency_key="c")
    with pytest.raises(HoldNotFound):
        await capture(
            hold.hold_id,
            "o",
            tenant_id="another-tenant",
            idempotency_key="c",
            payee_account_id="seller",
        )
    with pytest.raises(HoldNotFound):
        await saga.client.hold_state(hold.hold_id, tenant_id="another-tenant")
    handle = saga.env.client.get_workflow_handle(hold_workflow_id(hold.hold_id))
    history = await handle.fetch_history()
    accepted = [
        event
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert len(accepted) == 1  # the freeze only
    state = await saga.client.hold_state(hold.hold_id, tenant_id=tenant.tenant_id)
    assert state.phase is HoldPhase.ACTIVE and state.resolution is None
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold.hold_id) == ["freeze"]
    await saga.client.release_hold(hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="r")


async def test_a_ledger_rejection_of_a_capture_keeps_the_hold_active(
    saga: Saga, tenant: Tenant
) -> None:
    from ledger_db.errors import AccountNotFound

    hold = await freeze(saga, tenant, payee=None)
    with pytest.raises(AccountNotFound):
        await saga.client.capture_hold(
            hold.hold_id,
            "o",
            tenant_id=tenant.tenant_id,
            idempotency_key="c1",
            payee_account_id="ghost",
        )
    captured = await saga.client.capture_hold(
        hold.hold_id,
        "o",
        tenant_id=tenant.tenant_id,
        idempotency_key="c2",
        payee_account_id="seller",
    )
    assert captured.state is HoldState.CAPTURED
    final = await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.finalized
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "freeze",
        "capture",
        "finalize",
    ]


async def test_signals_confirm_and_cancel(saga: Saga, tenant: Tenant) -> None:
    confirmed = await freeze(saga, tenant, amount="10.00", key="freeze-a")
    cancelled = await freeze(saga, tenant, amount="20.00", key="freeze-b")
    # A signal that cannot apply is kept in the state; the hold stays active.
    await saga.client.confirm_order(
        confirmed.hold_id, "order-a", tenant_id=tenant.tenant_id, amount="99.00"
    )
    await saga.client.confirm_order(confirmed.hold_id, "order-a", tenant_id=tenant.tenant_id)
    await saga.client.cancel_order(cancelled.hold_id, tenant_id=tenant.tenant_id)
    final_a = await wait_for_hold(saga, confirmed.hold_id, tenant_id=tenant.tenant_id)
    final_b = await wait_for_hold(saga, cancelled.hold_id, tenant_id=tenant.tenant_id)
    assert final_a.state is HoldState.CAPTURED and final_a.finalized
    assert final_a.order_id == "order-a"
    assert final_b.state is HoldState.RELEASED
    state = await saga.client.hold_state(confirmed.hold_id, tenant_id=tenant.tenant_id)
    assert state.last_signal_error_code == "capture_exceeds_hold"
    assert balances(saga.ledger, tenant) == expected_balances(
        tenant,
        buyer_posted="90.00",
        buyer_held="0.00",
        seller="9.90",
        escrow="0.00",
        revenue="0.10",
    )


async def test_search_attributes_and_details(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant)
    await saga.client.capture_hold(
        hold.hold_id, "order-9", tenant_id=tenant.tenant_id, idempotency_key="c", amount="5.5"
    )
    await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    handle = saga.env.client.get_workflow_handle(hold_workflow_id(hold.hold_id))
    description = await handle.describe()
    attributes = {key.name: value for key, value in description.typed_search_attributes}
    assert attributes["LedgerTenant"] == tenant.tenant_id
    assert attributes["LedgerAccount"] == tenant.buyer
    assert attributes["LedgerHoldState"] == "captured"
    assert attributes["LedgerAmount"] == "30.00"
    assert attributes["LedgerAmountMinor"] == 3000
    assert attributes["LedgerCurrency"] == "USD"
    assert attributes["LedgerOrder"] == "order-9"
    assert attributes["LedgerPayee"] == tenant.seller
    assert attributes["LedgerExpiresAt"] == hold.expires_at


@pytest.mark.postgres
async def test_lifecycles_on_postgresql(
    time_skipping_env: WorkflowEnvironment, postgres_url: str, task_queue: str
) -> None:
    """The same saga on PostgreSQL: partial capture with payout, release, expiry."""
    clock = ServerClock()
    ledger = Ledger.from_url(postgres_url, clock=clock)
    try:
        tenant = fund_tenant(ledger)
        config = ClientConfig(task_queue=task_queue, update_with_start=False)
        client = await LedgerClient.connect(
            config, temporal=time_skipping_env.client, ledger=ledger
        )
        saga = Saga(time_skipping_env, client, ledger, task_queue, None, FaultInjector())  # type: ignore[arg-type]
        async with build_worker(
            time_skipping_env.client,
            ledger,
            task_queue=task_queue,
            interceptors=[clock.interceptor()],
        ):
            captured = await freeze(saga, tenant, key="a")
            released = await freeze(saga, tenant, "10.00", key="b")
            expiring = await freeze(saga, tenant, "5.00", key="c", ttl_seconds=2)
            await client.capture_hold(
                captured.hold_id,
                "o",
                tenant_id=tenant.tenant_id,
                idempotency_key="c",
                amount="20.00",
            )
            await client.release_hold(
                released.hold_id, tenant_id=tenant.tenant_id, idempotency_key="r"
            )
            for hold in (expiring, captured, released):
                await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
        assert hold_kinds(ledger, tenant.tenant_id, captured.hold_id) == [
            "freeze",
            "capture",
            "finalize",
        ]
        assert hold_kinds(ledger, tenant.tenant_id, released.hold_id) == ["freeze", "release"]
        assert hold_kinds(ledger, tenant.tenant_id, expiring.hold_id) == ["freeze", "expire"]
        assert balances(ledger, tenant) == expected_balances(
            tenant,
            buyer_posted="80.00",
            buyer_held="0.00",
            seller="19.80",
            escrow="0.00",
            revenue="0.20",
        )
        assert len(event_types(ledger, tenant.tenant_id)) == 7
        assert_books_intact(ledger)
    finally:
        ledger.close()


# ---------------------------------------------------------------------------------------------
# The lean shape, the extension, the payout, the fee, cancellation, new runs, the first version.
# ---------------------------------------------------------------------------------------------


def _shape(history: WorkflowHistory) -> tuple[int, int, int]:
    """(workflow tasks, regular activity tasks, search attribute upserts) of a history."""
    return (
        count_events(history, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        count_events(history, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        count_events(history, EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES),
    )


async def test_a_complete_hold_is_two_workflow_tasks_and_no_activity_task(
    saga: Saga, tenant: Tenant
) -> None:
    captured = await freeze(saga, tenant, "10.00", key="capture")
    released = await freeze(saga, tenant, "10.00", key="release")
    expiring = await freeze(saga, tenant, "10.00", key="expire", ttl_seconds=30)
    await saga.client.capture_hold(
        captured.hold_id, "o", tenant_id=tenant.tenant_id, idempotency_key="c"
    )
    await saga.client.release_hold(
        released.hold_id, tenant_id=tenant.tenant_id, idempotency_key="r"
    )
    for hold in (captured, released, expiring):
        await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
        history = await history_of(saga, hold.hold_id)
        # Freeze in the start's task; capture + payout (or release, or expiry) in the next one.
        # Search attributes: set at start, upserted when active and when final.
        assert _shape(history) == (2, 0, 2), hold.hold_id
        assert workflow_task_failures(history) == []
    steps = [
        step["activity_type"] for step in local_activities(await history_of(saga, captured.hold_id))
    ]
    assert steps == ["ledger.freeze_hold", "ledger.capture_hold", "ledger.finalize_hold"]


async def test_extend_moves_the_expiry_and_the_timer_follows(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant, ttl_seconds=60)
    extended = await saga.client.extend_hold(
        hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="e1", ttl_seconds=600
    )
    assert extended.expires_at > hold.expires_at + timedelta(seconds=500)
    # The same extension again answers the same; the key with another request is refused.
    again = await saga.client.extend_hold(
        hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="e1", ttl_seconds=600
    )
    assert again.replayed and again.expires_at == extended.expires_at
    with pytest.raises(IdempotencyKeyReused):
        await saga.client.extend_hold(
            hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="e1", ttl_seconds=900
        )
    with pytest.raises(TtlOutOfRange):  # an extension that would shorten the hold
        await saga.client.extend_hold(
            hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="e2", ttl_seconds=30
        )
    # Past the first expiry the hold is still active...
    await saga.env.sleep(timedelta(seconds=120))
    state = await saga.client.hold_state(hold.hold_id, tenant_id=tenant.tenant_id)
    assert state.phase is HoldPhase.ACTIVE and state.hold is not None
    assert state.hold.expires_at == extended.expires_at
    # ...and it expires at the new time, found by its LedgerExpiresAt.
    description = await saga.env.client.get_workflow_handle(
        hold_workflow_id(hold.hold_id)
    ).describe()
    attributes = {key.name: value for key, value in description.typed_search_attributes}
    assert attributes["LedgerExpiresAt"] == extended.expires_at
    final = await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.state is HoldState.EXPIRED and final.resolved_at is not None
    assert final.resolved_at >= extended.expires_at
    assert event_types(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "INTENT_CREATED",
        "HOLD_EXTENDED",
        "HOLD_EXPIRED",
    ]
    with pytest.raises(HoldExpired):
        await saga.client.extend_hold(
            hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="e3", ttl_seconds=600
        )
    assert_books_intact(saga.ledger)


async def test_a_refused_payout_waits_in_payout_failed_for_retry_payout(
    saga: Saga, tenant: Tenant
) -> None:
    saga.faults.refuse("finalize", "account_closed")
    hold = await freeze(saga, tenant)
    await saga.client.capture_hold(
        hold.hold_id, "order-1", tenant_id=tenant.tenant_id, idempotency_key="c"
    )
    state = await saga.client.hold_state(hold.hold_id, tenant_id=tenant.tenant_id)
    assert state.phase is HoldPhase.PAYOUT_FAILED and state.payout_error_code == "account_closed"
    assert state.hold is not None and state.hold.state is HoldState.CAPTURED
    assert not state.hold.finalized
    # The money waits in escrow; the workflow waits for a person, findable by its state.
    description = await saga.env.client.get_workflow_handle(
        hold_workflow_id(hold.hold_id)
    ).describe()
    attributes = {key.name: value for key, value in description.typed_search_attributes}
    assert attributes["LedgerHoldState"] == "payout_failed"
    assert description.status is not None and description.status.name == "RUNNING"
    assert balances(saga.ledger, tenant)["@escrow:USD"] == ("30.00", "0.00", "30.00")
    with pytest.raises(HoldAlreadyCaptured):
        await saga.client.release_hold(
            hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="r"
        )
    paid = await saga.client.retry_payout(
        hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="retry-1"
    )
    assert paid.finalized and paid.fee_minor == 30 and not paid.replayed
    final = await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.finalized
    again = await saga.client.retry_payout(
        hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="retry-2"
    )
    assert again.replayed and again.finalized
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "freeze",
        "capture",
        "finalize",
    ]
    assert balances(saga.ledger, tenant)[tenant.seller] == ("29.70", "0.00", "29.70")
    with pytest.raises(HoldNotCaptured):
        active = await freeze(saga, tenant, "1.00", key="not-captured")
        await saga.client.retry_payout(
            active.hold_id, tenant_id=tenant.tenant_id, idempotency_key="retry-3"
        )
    assert_books_intact(saga.ledger)


async def test_the_fee_is_fixed_at_freeze(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """A hold frozen while the default fee was 1% pays out at 1%, whatever the worker that pays
    it out has configured; the fee is in the hold's data from the freeze on."""
    clock = ServerClock()
    frozen_under = Ledger.from_url(
        sqlite_url, config=LedgerConfig(platform_fee_bps=100), clock=clock
    )
    paid_under = Ledger.from_url(sqlite_url, config=LedgerConfig(platform_fee_bps=900), clock=clock)
    try:
        tenant = fund_tenant(frozen_under)
        client = await LedgerClient.connect(
            ClientConfig(task_queue=task_queue),
            temporal=time_skipping_env.client,
            ledger=paid_under,
        )
        # No sticky cache: the next workflow task goes straight to whichever worker polls.
        async with build_worker(
            time_skipping_env.client,
            frozen_under,
            task_queue=task_queue,
            max_cached_workflows=0,
            interceptors=[clock.interceptor()],
        ):
            hold = await client.freeze(
                tenant.buyer,
                "50.00",
                "NEGOTIATION",
                tenant_id=tenant.tenant_id,
                idempotency_key="f",
                ttl_seconds=600,
                payee_account_id=tenant.seller,
            )
        assert hold.meta["fee_bps"] == 100
        # The workers are replaced by ones configured with 9%.
        async with build_worker(
            time_skipping_env.client,
            paid_under,
            task_queue=task_queue,
            interceptors=[clock.interceptor()],
        ):
            await client.capture_hold(
                hold.hold_id, "o", tenant_id=tenant.tenant_id, idempotency_key="c"
            )
            final = await client.wait_for_hold(hold.hold_id, tenant_id=tenant.tenant_id)
        assert final.finalized and final.fee_minor == 50  # 1% of 50.00, not 9%
        payment = [
            event
            for event in paid_under.list_events(tenant_id=tenant.tenant_id)
            if event.type == "PAYMENT_SUCCEEDED"
        ]
        assert payment[0].payload["payment"]["fee_bps"] == 100
        await client.close()
    finally:
        frozen_under.close()
        paid_under.close()


async def test_a_cancelled_workflow_releases_an_active_hold(saga: Saga, tenant: Tenant) -> None:
    hold = await freeze(saga, tenant)
    handle = saga.env.client.get_workflow_handle(hold_workflow_id(hold.hold_id))
    await handle.cancel()
    final = await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.state is HoldState.RELEASED
    description = await handle.describe()
    assert description.status is not None and description.status.name == "CANCELED"
    state = await saga.client.hold_state(hold.hold_id, tenant_id=tenant.tenant_id)
    assert state.cancel_requested and state.phase is HoldPhase.RELEASED
    assert balances(saga.ledger, tenant)[tenant.buyer] == ("100.00", "0.00", "100.00")
    with pytest.raises(HoldAlreadyReleased):
        await saga.client.capture_hold(
            hold.hold_id, "late", tenant_id=tenant.tenant_id, idempotency_key="c"
        )
    assert workflow_task_failures(await handle.fetch_history()) == []


async def test_a_cancelled_workflow_finishes_a_committed_captures_payout(
    saga: Saga, tenant: Tenant
) -> None:
    # The payout's database is slow to answer: the capture is committed, its payout is being
    # retried by a regular activity, when the workflow is cancelled. The payout still happens.
    saga.faults.make_unavailable("finalize", 4)
    hold = await freeze(saga, tenant)
    handle = saga.env.client.get_workflow_handle(hold_workflow_id(hold.hold_id))
    await saga.client.capture_hold(
        hold.hold_id, "order-1", tenant_id=tenant.tenant_id, idempotency_key="c"
    )
    await handle.cancel()
    final = await wait_for_hold(saga, hold.hold_id, tenant_id=tenant.tenant_id)
    assert final.state is HoldState.CAPTURED and final.finalized
    description = await handle.describe()
    assert description.status is not None and description.status.name == "CANCELED"
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold.hold_id) == [
        "freeze",
        "capture",
        "finalize",
    ]
    assert balances(saga.ledger, tenant)["@escrow:USD"] == ("0.00", "0.00", "0.00")
    assert workflow_task_failures(await handle.fetch_history()) == []


async def test_a_freeze_replayed_into_a_new_run_reads_the_hold(saga: Saga, tenant: Tenant) -> None:
    active = await freeze(saga, tenant, "10.00", key="terminated-active")
    resolved = await freeze(saga, tenant, "20.00", key="terminated-resolved")
    for hold in (active, resolved):
        await saga.env.client.get_workflow_handle(hold_workflow_id(hold.hold_id)).terminate("ops")
    # While no workflow owned it, someone released the second hold in the ledger itself.
    saga.ledger.release_hold(resolved.hold_id, tenant_id=tenant.tenant_id, idempotency_key="ops")
    again_active = await freeze(saga, tenant, "10.00", key="terminated-active")
    again_resolved = await freeze(saga, tenant, "20.00", key="terminated-resolved")
    assert again_active.replayed and again_active.state is HoldState.ACTIVE
    # Not the stored answer of the first freeze (active), but the hold as it is.
    assert again_resolved.replayed and again_resolved.state is HoldState.RELEASED
    # (Capture first: waiting lets the test server skip time to the next timer, any hold's.)
    captured = await saga.client.capture_hold(
        active.hold_id, "o", tenant_id=tenant.tenant_id, idempotency_key="c"
    )
    assert captured.state is HoldState.CAPTURED
    final = await wait_for_hold(saga, resolved.hold_id, tenant_id=tenant.tenant_id)
    assert final.state is HoldState.RELEASED
    await wait_for_hold(saga, active.hold_id, tenant_id=tenant.tenant_id)
    assert hold_kinds(saga.ledger, tenant.tenant_id, active.hold_id) == [
        "freeze",
        "capture",
        "finalize",
    ]
    assert hold_kinds(saga.ledger, tenant.tenant_id, resolved.hold_id) == ["freeze", "release"]
    assert_books_intact(saga.ledger)


async def test_a_hold_started_by_the_first_version_completes_on_this_worker(
    saga: Saga, tenant: Tenant
) -> None:
    """What the first version's client did: start ``HoldWorkflow`` and send it ``freeze``."""
    request = FreezeRequest(
        tenant_id=tenant.tenant_id,
        idempotency_key="old",
        account_id=tenant.buyer,
        amount="30.00",
        reason="NEGOTIATION",
        ttl_seconds=600,
        payee_account_id=tenant.seller,
        fee_bps=100,
    )
    hold_id = derive_hold_id(tenant.tenant_id, "old")
    handle = await saga.env.client.start_workflow(
        "HoldWorkflow", request, id=hold_workflow_id(hold_id), task_queue=saga.task_queue
    )
    hold = await handle.execute_update("freeze", request, result_type=Hold)
    assert hold.state is HoldState.ACTIVE
    # Today's client captures it; the first version's code (regular activities) finishes it.
    captured = await saga.client.capture_hold(
        hold_id, "order-1", tenant_id=tenant.tenant_id, idempotency_key="c"
    )
    assert captured.state is HoldState.CAPTURED
    final = await wait_for_hold(saga, hold_id, tenant_id=tenant.tenant_id)
    assert final.finalized and final.fee_minor == 30
    history = await handle.fetch_history()
    assert history.events[0].workflow_execution_started_event_attributes.workflow_type.name == (
        "HoldWorkflow"
    )
    assert count_events(history, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) >= 3
    assert hold_kinds(saga.ledger, tenant.tenant_id, hold_id) == ["freeze", "capture", "finalize"]
    # Its answers to a repeated freeze, after it ended, are the first version's too.
    again = await freeze(saga, tenant, key="old")
    assert again.hold_id == hold_id and again.replayed
