"""Pure pieces of the saga: canonical requests, the resolution rule, configuration, subjects."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activities.events import NatsSettings, event_message, event_subject
from activities.faults import FaultInjector, InjectedFault
from activities.ledger import activity_idempotency_key
from ledger_db import Event
from starter.client import ClientConfig, ledger_error_from
from workflows.models import (
    ActivityStep,
    CaptureRequest,
    FreezeRequest,
    HoldPhase,
    HoldWorkflowState,
    canonical_amount,
    resolution_conflict,
)


def _freeze(**changes: object) -> FreezeRequest:
    fields: dict[str, object] = {
        "tenant_id": "t",
        "idempotency_key": "k",
        "account_id": "buyer",
        "amount": "20.00",
        "reason": "NEGOTIATION",
        "ttl_seconds": 60,
    }
    fields.update(changes)
    return FreezeRequest.model_validate(fields)


def test_canonical_amount() -> None:
    assert canonical_amount("20.00") == canonical_amount("20") == "20"
    assert canonical_amount("0.50") == "0.5"
    # Outside the ledger's one grammar: kept as sent (so hashing never raises in a workflow),
    # and refused with invalid_amount by the validators and the ledger.
    for outside in (" 1E+2 ", "1e1", "1_0", "+5", ".5", "abc", "\uff11\uff12"):
        assert canonical_amount(outside) == outside
    assert canonical_amount(None) is None


def test_freeze_hash_ignores_spelling_not_substance() -> None:
    assert _freeze().canonical_hash() == _freeze(amount="20").canonical_hash()
    assert _freeze().canonical_hash() != _freeze(amount="20.01").canonical_hash()
    assert _freeze().canonical_hash() != _freeze(payee_account_id="seller").canonical_hash()
    assert _freeze().canonical_hash() != _freeze(ttl_seconds=61).canonical_hash()


def test_capture_hash() -> None:
    one = CaptureRequest(tenant_id="t", idempotency_key="c", order_id="o", amount="1.0")
    two = CaptureRequest(tenant_id="t", idempotency_key="c", order_id="o", amount="1")
    assert one.canonical_hash() == two.canonical_hash()
    other = CaptureRequest(tenant_id="t", idempotency_key="c", order_id="p", amount="1")
    assert one.canonical_hash() != other.canonical_hash()


def _state(**changes: object) -> HoldWorkflowState:
    fields: dict[str, object] = {
        "workflow_id": "hold-h",
        "hold_id": "h",
        "tenant_id": "t",
        "account_id": "buyer",
        "phase": HoldPhase.ACTIVE,
        "request_hash": "x",
    }
    fields.update(changes)
    return HoldWorkflowState.model_validate(fields)


def test_resolution_rule() -> None:
    active = _state()
    assert resolution_conflict(active, "capture", "c", "h1") is None
    captured = _state(
        phase=HoldPhase.CAPTURED,
        resolution="capture",
        resolution_idempotency_key="c",
        resolution_request_hash="h1",
    )
    assert resolution_conflict(captured, "capture", "c", "h1") is None
    assert resolution_conflict(captured, "capture", "c", "h2")[0] == "idempotency_key_reused"  # type: ignore[index]
    assert resolution_conflict(captured, "capture", "d", "h1")[0] == "hold_already_captured"  # type: ignore[index]
    assert resolution_conflict(captured, "release", "c", "h1")[0] == "hold_already_captured"  # type: ignore[index]
    expired = _state(phase=HoldPhase.EXPIRED, resolution="expire")
    assert resolution_conflict(expired, "capture", "c", "h1")[0] == "hold_expired"  # type: ignore[index]
    released = _state(
        phase=HoldPhase.RELEASED, resolution="release", resolution_idempotency_key="r"
    )
    assert resolution_conflict(released, "capture", "c", "h")[0] == "hold_already_released"  # type: ignore[index]
    rejected = _state(phase=HoldPhase.REJECTED)
    assert resolution_conflict(rejected, "capture", "c", "h")[0] == "hold_not_found"  # type: ignore[index]


def test_activity_idempotency_keys() -> None:
    assert activity_idempotency_key("hold-h", ActivityStep.CAPTURE) == "hold-h:capture"


def test_fault_injector() -> None:
    faults = FaultInjector.from_env({"LEDGER_TEST_FAULTS": "capture:2, finalize"})
    for _ in range(2):
        with pytest.raises(InjectedFault):
            faults.after_commit("capture")
    faults.after_commit("capture")
    with pytest.raises(InjectedFault):
        faults.after_commit("finalize")
    faults.after_commit("freeze")
    assert (faults.injected("capture"), faults.injected("finalize")) == (2, 1)


def test_configuration_from_environment() -> None:
    config = ClientConfig.from_env(
        {
            "TEMPORAL_ADDRESS": "temporal:7233",
            "TEMPORAL_NAMESPACE": "ledger",
            "LEDGER_TASK_QUEUE": "q",
            "LEDGER_DATABASE_URL": "sqlite:///x.db",
            "NATS_URL": "nats://bus:4222",
        }
    )
    assert (config.temporal_address, config.namespace, config.task_queue) == (
        "temporal:7233",
        "ledger",
        "q",
    )
    assert config.database_url == "sqlite:///x.db" and config.nats_url == "nats://bus:4222"
    assert config.nats.stream == "BILLING" and config.nats.subject_prefix == "billing"
    default = ClientConfig.from_env({})
    assert default.task_queue == "compute-ledger" and default.temporal_address == "127.0.0.1:7233"
    assert not default.nats.enabled


def test_subjects_and_messages() -> None:
    event = Event(
        event_id="e1",
        type="HOLD_RELEASED",
        tenant_id="acme.eu",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        hold_id="h",
        sequence=7,
    )
    assert event_subject(NatsSettings(), event) == "billing.acme%2Eeu.HOLD_RELEASED"
    body = event_message(event)
    assert b'"event_id":"e1"' in body and b"sequence" not in body


def test_ledger_error_mapping() -> None:
    from temporalio.exceptions import ApplicationError

    from ledger_db.errors import InsufficientFunds

    error = ledger_error_from(ApplicationError("no money", type="insufficient_funds"))
    assert isinstance(error, InsufficientFunds) and error.message == "no money"
    assert ledger_error_from(ValueError("x")) is None


def test_extension_keys_fit_the_ledgers_key_length() -> None:
    from ledger_db import limits

    short = activity_idempotency_key("hold-h", ActivityStep.EXTEND, "e1")
    assert short == "hold-h:extend:e1"
    long_key = "k" * limits.idempotency_key_length_max
    derived = activity_idempotency_key("hold-h", ActivityStep.EXTEND, long_key)
    assert len(derived) <= limits.idempotency_key_length_max
    assert derived == activity_idempotency_key("hold-h", ActivityStep.EXTEND, long_key)
    assert derived != activity_idempotency_key("hold-h", ActivityStep.EXTEND, long_key[:-1] + "j")


def test_a_step_never_runs_earlier_than_this_hosts_clock() -> None:
    from datetime import timedelta

    from activities.ledger import step_now

    ahead = datetime.now(UTC) + timedelta(days=3)  # the time-skipping server's workflow time
    assert step_now(ahead) == ahead
    behind = datetime.now(UTC) - timedelta(hours=1)  # a step retried after an outage
    assert step_now(behind) > behind + timedelta(minutes=59)


def test_wire_models_ignore_fields_they_do_not_know() -> None:
    newer = _freeze(loyalty_points=3)
    assert newer == _freeze()
    assert newer.canonical_hash() == _freeze().canonical_hash()
    capture = CaptureRequest.model_validate(
        {"tenant_id": "t", "idempotency_key": "c", "order_id": "o", "routing": {"x": 1}}
    )
    assert capture.order_id == "o"


def test_an_extension_is_one_instant_whatever_its_time_zone() -> None:
    from datetime import timedelta, timezone

    from workflows.models import ExtendRequest

    instant = datetime(2026, 5, 1, 12, tzinfo=UTC)
    paris = instant.astimezone(timezone(timedelta(hours=2)))
    one = ExtendRequest(tenant_id="t", idempotency_key="e", expires_at=instant)
    two = ExtendRequest(tenant_id="t", idempotency_key="e", expires_at=paris)
    assert one.canonical_hash() == two.canonical_hash()
    assert (
        one.canonical_hash()
        != ExtendRequest(tenant_id="t", idempotency_key="e", ttl_seconds=60).canonical_hash()
    )


def test_the_state_guards_the_single_resolution_and_follows_the_ledger() -> None:
    from ledger_db import Hold, HoldState

    state = _state()
    state.claim_resolution("capture", "c", "h1")
    with pytest.raises(AssertionError):
        state.claim_resolution("release", "r", "h2")
    state.give_back_resolution()
    state.claim_resolution("release", "r", "h2")
    assert (state.resolution, state.resolution_idempotency_key) == ("release", "r")
    hold = Hold(
        tenant_id="t",
        hold_id="h",
        account_id="buyer",
        currency="USD",
        amount_minor=100,
        state=HoldState.CAPTURED,
        reason="N",
        expires_at=datetime(2026, 1, 1, tzinfo=UTC),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        freeze_transaction_id="tx",
        captured_minor=100,
        order_id="o",
    )
    fresh = _state()
    fresh.adopt(hold)  # captured outside this run: it takes the ledger's word
    assert (fresh.phase, fresh.resolution, fresh.order_id) == (HoldPhase.FINALIZING, "capture", "o")
    fresh.phase = HoldPhase.PAYOUT_FAILED
    fresh.adopt(hold)  # a refused payout stays refused until a retry says otherwise
    assert fresh.phase is HoldPhase.PAYOUT_FAILED
    fresh.adopt(hold.model_copy(update={"finalized": True}))
    assert fresh.phase is HoldPhase.CAPTURED
