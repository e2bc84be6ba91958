"""Random operation sequences against a plain Python model of the ledger, on both engines.

After every step each invariant of DESIGN section 2 is checked: balances (posted, held,
available) equal the model's; every agent's available balance stays at or above minus its
overdraft; a hold resolves once and captured + released = amount; the outbox holds exactly one
event per applied hold step; ``verify_journal()`` (hash chain, balance per transaction, replay
of every snapshot from zero) finds nothing. Retries with the same key must replay the original
result and change nothing; a reused key with a different request must be refused and change
nothing.

One ``Ledger`` (one database) serves a whole test; every example is a fresh tenant.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger_db import Ledger, errors
from ledger_db.models import HoldState, LedgerEntryInput

AGENTS = {"agent-a": 0, "agent-b": 500, "agent-p": 0}  # account -> overdraft limit (minor)
PAYERS = ("agent-a", "agent-b")
PLATFORM = ("@escrow:USD", "@revenue:USD", "@external:USD")
OPERATING = "@operating:USD"

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def text(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


class Clock:
    """The ledger's clock in these tests: time moves only when the model says so."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ModelHold:
    hold_id: str
    account: str
    amount: int
    expires_at: datetime
    payee: str | None
    state: HoldState = HoldState.ACTIVE
    captured: int = 0
    released: int = 0
    finalized: bool = False


@dataclass
class ModelTransaction:
    transaction_id: str
    effects: dict[str, int]  # account -> change of its own posted balance
    reversed: bool = False


@dataclass
class Call:
    """A call that succeeded, kept so that it can be retried or its key reused."""

    name: str
    key: str
    run: Callable[[str], Any]
    result: Any


@dataclass
class Model:
    own: Counter[str] = field(default_factory=Counter)  # own posted balance per account
    holds: dict[str, ModelHold] = field(default_factory=dict)
    transactions: list[ModelTransaction] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    calls: list[Call] = field(default_factory=list)
    operating_used: bool = False

    def bucket(self, account: str) -> int:
        return sum(
            h.amount
            for h in self.holds.values()
            if h.account == account and h.state == HoldState.ACTIVE
        )

    def can_spend(self, account: str, amount: int) -> bool:
        if account not in AGENTS:
            return True
        return self.own[account] - amount >= -AGENTS[account]


def _comparable(result: Any) -> Any:
    return result.model_dump(exclude={"replayed"})


class LedgerMachine(RuleBasedStateMachine):
    """Subclassed per test with ``ledger`` and ``clock`` set."""

    ledger: Ledger
    clock: Clock

    def __init__(self) -> None:
        super().__init__()
        self.tenant = f"tenant-{uuid.uuid4().hex[:12]}"
        self.model = Model()
        # Every example starts at midnight of a later day: time only moves forward (recorded_at
        # follows the journal order) and each example sees the same times of day.
        start = self.clock.now.replace(hour=0, minute=0, second=0) + timedelta(days=1)
        self.clock.now = start

    # --- helpers --------------------------------------------------------------------------

    def key(self) -> str:
        return uuid.uuid4().hex

    def expect_error(self, codes: set[str], run: Callable[[], Any]) -> None:
        """The call must fail with one of ``codes`` (the invariants then show nothing moved)."""
        try:
            result = run()
        except errors.LedgerError as error:
            assert error.code in codes, f"expected {codes}, got {error.code}: {error}"
        else:
            raise AssertionError(f"expected {codes}, got success {result!r}")

    def succeed(self, name: str, run: Callable[[str], Any]) -> Any:
        key = self.key()
        result = run(key)
        assert result.replayed is False
        self.model.calls.append(Call(name, key, run, result))
        return result

    def hold_at(self, index: int, *wanted: HoldState) -> ModelHold:
        """A hold picked by ``index``, among those in a ``wanted`` state when there are any (so
        that the interesting steps are not starved by resolved holds)."""
        holds = list(self.model.holds.values())
        preferred = [h for h in holds if h.state in wanted and not h.finalized]
        pool = preferred or holds
        return pool[index % len(pool)]

    # --- rules ----------------------------------------------------------------------------

    @initialize()
    def open_accounts(self) -> None:
        for account, overdraft in AGENTS.items():
            self.ledger.open_account(
                tenant_id=self.tenant,
                currency="USD",
                idempotency_key=f"open-{account}",
                account_id=account,
                overdraft_limit=text(overdraft),
            )
        self.ledger.ensure_platform_accounts(tenant_id=self.tenant, currency="USD")
        for account in PAYERS:  # starting money, so that holds are the common case
            self.deposit(account, 10_000)

    @rule(seconds=st.sampled_from([1, 2, 30, 300, 3000]))
    def advance_time(self, seconds: int) -> None:
        self.clock.now += timedelta(seconds=seconds)

    @rule(account=st.sampled_from(sorted(AGENTS)), amount=st.integers(1, 50_000))
    def deposit(self, account: str, amount: int) -> None:
        def run(key: str) -> Any:
            return self.ledger.deposit(
                account, text(amount), tenant_id=self.tenant, idempotency_key=key
            )

        result = self.succeed("deposit", run)
        effects = {account: amount, "@external:USD": -amount}
        self.apply(effects)
        self.model.transactions.append(ModelTransaction(result.transaction_id, effects))

    @rule(
        account=st.sampled_from(PAYERS),
        amount=st.integers(1, 3000),
        ttl=st.sampled_from([1, 5, 60, 600, 3600]),
        with_payee=st.booleans(),
    )
    def freeze(self, account: str, amount: int, ttl: int, with_payee: bool) -> None:
        payee = "agent-p" if with_payee else None
        now = self.clock.now

        def run(key: str) -> Any:
            return self.ledger.freeze(
                account,
                text(amount),
                "NEGOTIATION",
                tenant_id=self.tenant,
                idempotency_key=key,
                ttl_seconds=ttl,
                payee_account_id=payee,
                now=now,
            )

        if not self.model.can_spend(account, amount):
            self.expect_error({"insufficient_funds"}, lambda: run(self.key()))
            return
        hold = self.succeed("freeze", run)
        assert hold.state == HoldState.ACTIVE and hold.amount_minor == amount
        assert hold.expires_at == now + timedelta(seconds=ttl)
        self.model.own[account] -= amount
        self.model.holds[hold.hold_id] = ModelHold(
            hold.hold_id, account, amount, hold.expires_at, payee
        )
        self.model.events["INTENT_CREATED"] += 1

    @precondition(lambda self: self.model.holds)
    @rule(
        index=st.integers(0, 10_000),
        part=st.one_of(st.just(100), st.integers(0, 110)),
        payee_at_capture=st.booleans(),
        any_hold=st.booleans(),
        then_finalize=st.booleans(),
    )
    def capture(
        self, index: int, part: int, payee_at_capture: bool, any_hold: bool, then_finalize: bool
    ) -> None:
        """``part`` is the captured share in percent: 100 is a full capture (no amount given),
        above 100 asks for more than the hold."""
        hold = self.hold_at(index) if any_hold else self.hold_at(index, HoldState.ACTIVE)
        now = self.clock.now
        amount = None if part == 100 else max(1, hold.amount * part // 100 + (part > 100))
        payee = "agent-p" if payee_at_capture else None

        def run(key: str) -> Any:
            return self.ledger.capture_hold(
                hold.hold_id,
                f"order-{key[:8]}",
                tenant_id=self.tenant,
                idempotency_key=key,
                amount=None if amount is None else text(amount),
                payee_account_id=payee,
                now=now,
            )

        final_codes = {
            HoldState.CAPTURED: {"hold_already_captured"},
            HoldState.RELEASED: {"hold_already_released"},
            HoldState.EXPIRED: {"hold_expired"},
        }
        if hold.state != HoldState.ACTIVE:
            self.expect_error(final_codes[hold.state], lambda: run(self.key()))
            return
        problems = set()
        if now >= hold.expires_at:
            problems.add("hold_expired")
        if amount is not None and amount > hold.amount:
            problems.add("capture_exceeds_hold")
        if hold.payee is None and payee is None:
            problems.add("payee_required")
        if problems:
            self.expect_error(problems, lambda: run(self.key()))
            return
        result = self.succeed("capture", run)
        captured = hold.amount if amount is None else amount
        assert (result.state, result.captured_minor) == (HoldState.CAPTURED, captured)
        assert result.released_minor == hold.amount - captured
        hold.state, hold.captured, hold.released = (
            HoldState.CAPTURED,
            captured,
            hold.amount - captured,
        )
        hold.payee = hold.payee or payee
        self.model.own[hold.account] += hold.released
        self.model.own["@escrow:USD"] += captured
        self.model.events["ORDER_CREATED"] += 1
        if then_finalize:  # what the saga does next; the finalize rule alone rarely finds one
            self.finalize(index=0, fee_bps=part * 7, any_hold=False)

    @precondition(lambda self: self.model.holds)
    @rule(index=st.integers(0, 10_000), fee_bps=st.integers(0, 1000), any_hold=st.booleans())
    def finalize(self, index: int, fee_bps: int, any_hold: bool) -> None:
        hold = self.hold_at(index) if any_hold else self.hold_at(index, HoldState.CAPTURED)
        now = self.clock.now

        def run(key: str) -> Any:
            return self.ledger.finalize_hold(
                hold.hold_id, tenant_id=self.tenant, idempotency_key=key, fee_bps=fee_bps, now=now
            )

        if hold.finalized:
            return  # what a second finalize under a new key answers is not part of the contract
        if hold.state != HoldState.CAPTURED:
            codes = {"hold_not_captured"}
            if hold.state == HoldState.RELEASED:
                codes.add("hold_already_released")
            if hold.state == HoldState.EXPIRED:
                codes |= {"hold_expired", "hold_already_released"}
            self.expect_error(codes, lambda: run(self.key()))
            return
        result = self.succeed("finalize", run)
        fee = hold.captured * fee_bps // 10_000
        assert result.finalized and result.fee_minor == fee
        hold.finalized = True
        assert hold.payee is not None
        self.apply(
            {"@escrow:USD": -hold.captured, hold.payee: hold.captured - fee, "@revenue:USD": fee}
        )
        self.model.events["PAYMENT_SUCCEEDED"] += 1

    @precondition(lambda self: self.model.holds)
    @rule(index=st.integers(0, 10_000), by_timer=st.booleans(), any_hold=st.booleans())
    def release_or_expire(self, index: int, by_timer: bool, any_hold: bool) -> None:
        hold = self.hold_at(index) if any_hold else self.hold_at(index, HoldState.ACTIVE)
        now = self.clock.now
        operation = self.ledger.expire_hold if by_timer else self.ledger.release_hold

        def run(key: str) -> Any:
            return operation(hold.hold_id, tenant_id=self.tenant, idempotency_key=key, now=now)

        if hold.state != HoldState.ACTIVE:
            codes = {
                HoldState.CAPTURED: {"hold_already_captured"},
                HoldState.RELEASED: {"hold_already_released"},
                HoldState.EXPIRED: {"hold_expired", "hold_already_released"},
            }[hold.state]
            self.expect_error(codes, lambda: run(self.key()))
            return
        expired_by_time = now >= hold.expires_at
        if by_timer and not expired_by_time:
            self.expect_error({"hold_not_expired"}, lambda: run(self.key()))
            return
        if not by_timer and expired_by_time:
            return  # releasing a hold whose timer has run out is not pinned by the contract
        result = self.succeed("expire" if by_timer else "release", run)
        state = HoldState.EXPIRED if by_timer else HoldState.RELEASED
        assert (result.state, result.released_minor, result.captured_minor) == (
            state,
            hold.amount,
            0,
        )
        hold.state, hold.released = state, hold.amount
        self.model.own[hold.account] += hold.amount
        self.model.events["HOLD_EXPIRED" if by_timer else "HOLD_RELEASED"] += 1

    @rule(
        account=st.sampled_from([None, *sorted(AGENTS)]),
        incoming=st.booleans(),
        amount=st.integers(1, 3000),
    )
    def record(self, account: str | None, incoming: bool, amount: int) -> None:
        entry = LedgerEntryInput(
            task_id="task-stateful",
            direction="IN" if incoming else "OUT",
            amount=text(amount),
            currency="USD",
            reason="SALE_REVENUE" if incoming else "TASK_BURN",
            category="PRODUCT_REVENUE" if incoming else "CLOUD_COST",
            tags=["stateful"],
            occurred_at=self.clock.now - timedelta(hours=1),
        )

        def run(key: str) -> Any:
            return self.ledger.record_entries(
                [entry], tenant_id=self.tenant, idempotency_key=key, account_id=account
            )

        primary = account or OPERATING
        delta = amount if incoming else -amount
        if not self.model.can_spend(primary, -delta):
            self.expect_error({"insufficient_funds"}, lambda: run(self.key()))
            return
        result = self.succeed("record", run)
        if account is None:
            self.model.operating_used = True
        effects = {primary: delta, "@external:USD": -delta}
        self.apply(effects)
        self.model.transactions.append(ModelTransaction(result.transaction_id, effects))

    @precondition(lambda self: self.model.transactions)
    @rule(index=st.integers(0, 10_000))
    def reverse(self, index: int) -> None:
        transaction = self.model.transactions[index % len(self.model.transactions)]

        def run(key: str) -> Any:
            return self.ledger.reverse_transaction(
                transaction.transaction_id, tenant_id=self.tenant, idempotency_key=key
            )

        if transaction.reversed:
            self.expect_error({"transaction_already_reversed"}, lambda: run(self.key()))
            return
        undo = {account: -delta for account, delta in transaction.effects.items()}
        if not all(self.model.can_spend(a, -d) for a, d in undo.items()):
            self.expect_error({"insufficient_funds"}, lambda: run(self.key()))
            return
        result = self.succeed("reverse", run)
        assert result.reverses_transaction_id == transaction.transaction_id
        transaction.reversed = True
        self.apply(undo)

    @precondition(lambda self: self.model.calls)
    @rule(index=st.integers(0, 10_000))
    def retry(self, index: int) -> None:
        call = self.model.calls[index % len(self.model.calls)]
        replay = call.run(call.key)
        assert replay.replayed is True, call.name
        assert _comparable(replay) == _comparable(call.result), call.name

    @precondition(lambda self: self.model.calls)
    @rule(index=st.integers(0, 10_000), operation=st.sampled_from(["deposit", "freeze", "release"]))
    def reuse_key(self, index: int, operation: str) -> None:
        call = self.model.calls[index % len(self.model.calls)]
        marker = f"reuse-{uuid.uuid4().hex[:8]}"  # makes the request unlike any earlier one
        if operation == "deposit":
            run = lambda: self.ledger.deposit(  # noqa: E731
                "agent-p",
                "1.00",
                tenant_id=self.tenant,
                idempotency_key=call.key,
                external_ref=marker,
            )
        elif operation == "freeze":
            run = lambda: self.ledger.freeze(  # noqa: E731
                "agent-a",
                "0.01",
                marker,
                tenant_id=self.tenant,
                idempotency_key=call.key,
                ttl_seconds=60,
                now=self.clock.now,
            )
        elif self.model.holds:
            hold = self.hold_at(index)
            run = lambda: self.ledger.release_hold(  # noqa: E731
                hold.hold_id, tenant_id=self.tenant, idempotency_key=call.key, now=self.clock.now
            )
            if call.name == "release" and call.result.hold_id == hold.hold_id:
                return  # that would be the very same request: a replay, not a reuse
        else:
            return
        self.expect_error({"idempotency_key_reused"}, run)

    def apply(self, effects: dict[str, int]) -> None:
        for account, delta in effects.items():
            self.model.own[account] += delta

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def balances_match_the_model(self) -> None:
        for account, overdraft in AGENTS.items():
            balance = self.ledger.get_balance(account, tenant_id=self.tenant)
            held = self.model.bucket(account)
            own = self.model.own[account]
            assert (balance.posted_minor, balance.held_minor, balance.available_minor) == (
                own + held,
                held,
                own,
            ), account
            assert balance.available_minor >= -overdraft, account
        for account in PLATFORM:
            balance = self.ledger.get_balance(account, tenant_id=self.tenant)
            assert balance.posted_minor == self.model.own[account], account
            assert balance.held_minor == 0, account
        if self.model.operating_used:
            operating = self.ledger.get_balance(OPERATING, tenant_id=self.tenant)
            assert operating.posted_minor == self.model.own[OPERATING]
        # Double entry: the tenant's money sums to zero.
        assert sum(self.model.own.values()) + sum(self.model.bucket(a) for a in AGENTS) == 0

    @invariant()
    def holds_resolve_once(self) -> None:
        for expected in self.model.holds.values():
            hold = self.ledger.get_hold(expected.hold_id, tenant_id=self.tenant)
            assert hold.state == expected.state, hold
            assert (hold.captured_minor, hold.released_minor) == (
                expected.captured,
                expected.released,
            )
            assert hold.finalized == expected.finalized
            if hold.state == HoldState.ACTIVE:
                assert hold.captured_minor == hold.released_minor == 0
            else:
                assert hold.captured_minor + hold.released_minor == hold.amount_minor

    @invariant()
    def one_event_per_applied_hold_step(self) -> None:
        events = self.ledger.list_events(tenant_id=self.tenant, limit=1000)
        assert Counter(e.type for e in events) == +self.model.events
        assert len({e.event_id for e in events}) == len(events)

    @invariant()
    def journal_verifies(self) -> None:
        assert self.ledger.verify_journal() == []


@pytest.fixture
def machine_ledger(database_url: str) -> Iterator[tuple[Ledger, Clock]]:
    base = Ledger.from_url(database_url)
    clock = Clock()
    ledger = Ledger(base.engine, clock=clock)
    try:
        yield ledger, clock
    finally:
        base.close()


def test_random_operation_sequences_keep_every_invariant(
    machine_ledger: tuple[Ledger, Clock],
) -> None:
    ledger, clock = machine_ledger

    class Machine(LedgerMachine):
        pass

    Machine.ledger = ledger
    Machine.clock = clock
    run_state_machine_as_test(Machine, settings=SETTINGS)
