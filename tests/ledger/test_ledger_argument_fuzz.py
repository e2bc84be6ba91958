"""Any value in any argument of the public API: the call succeeds or raises a ``LedgerError``
(a stable code), never a raw ``TypeError``/``ValueError``/``OverflowError`` or a driver error.
A modest property test on both engines; issue 12 runs the large fuzz."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_data import sample_record as _record

from ledger_db import Ledger, errors
from ledger_db.finops.records import FIELDS

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=4),
    st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=3),
    st.dictionaries(
        st.text(max_size=3), st.one_of(st.integers(), st.floats(), st.text(max_size=3))
    ),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [None, UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-11))]
        ),
    ),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\udc80",
            "acme\n",
            "1e999999",
            "9" * 100,
            "0.001",
            "1.00",
            "-1",
            "@",
            "@hold:",
            "@escrow:USD",
            "USD",
            "active",
            "1.0",
            "9" * 30 + ".1",
            "x" * 300,
            set(),
            (),
            object(),
        ]
    ),
)


@dataclass
class Context:
    ledger: Ledger
    tenant_id: str
    account: str
    hold: str
    transaction: str


def _key() -> str:
    return uuid.uuid4().hex


Call = Callable[[Context, Any], object]
# Every field a caller may give a record (recorded_at is the ledger's own), and account_id.
RECORD_FIELDS = (*(name for name in FIELDS if name != "recorded_at"), "account_id")


def _calls() -> dict[str, Call]:
    calls: dict[str, Call] = {
        "open.tenant": lambda c, v: c.ledger.open_account(
            tenant_id=v, currency="USD", idempotency_key=_key()
        ),
        "open.currency": lambda c, v: c.ledger.open_account(
            tenant_id=c.tenant_id, currency=v, idempotency_key=_key()
        ),
        "open.key": lambda c, v: c.ledger.open_account(
            tenant_id=c.tenant_id, currency="USD", idempotency_key=v
        ),
        "open.account": lambda c, v: c.ledger.open_account(
            tenant_id=c.tenant_id, currency="USD", idempotency_key=_key(), account_id=v
        ),
        "open.kind": lambda c, v: c.ledger.open_account(
            tenant_id=c.tenant_id, currency="USD", idempotency_key=_key(), kind=v
        ),
        "open.name": lambda c, v: c.ledger.open_account(
            tenant_id=c.tenant_id, currency="USD", idempotency_key=_key(), name=v
        ),
        "open.overdraft": lambda c, v: c.ledger.open_account(
            tenant_id=c.tenant_id, currency="USD", idempotency_key=_key(), overdraft_limit=v
        ),
        "overdraft.account": lambda c, v: c.ledger.set_overdraft_limit(
            v, "1", tenant_id=c.tenant_id, idempotency_key=_key()
        ),
        "overdraft.limit": lambda c, v: c.ledger.set_overdraft_limit(
            c.account, v, tenant_id=c.tenant_id, idempotency_key=_key()
        ),
        "platform.currency": lambda c, v: c.ledger.ensure_platform_accounts(
            tenant_id=c.tenant_id, currency=v
        ),
        "get_account.account": lambda c, v: c.ledger.get_account(
            tenant_id=c.tenant_id, account_id=v
        ),
        "list_accounts.internal": lambda c, v: c.ledger.list_accounts(
            tenant_id=c.tenant_id, include_internal=v
        ),
        "balance.account": lambda c, v: c.ledger.get_balance(v, tenant_id=c.tenant_id),
        "balance.as_of": lambda c, v: c.ledger.get_balance(
            c.account, tenant_id=c.tenant_id, as_of=v
        ),
        "get_hold.hold": lambda c, v: c.ledger.get_hold(v, tenant_id=c.tenant_id),
        "get_transaction.id": lambda c, v: c.ledger.get_transaction(v, tenant_id=c.tenant_id),
        "list_holds.tenant": lambda c, v: c.ledger.list_holds(tenant_id=v),
        "list_holds.state": lambda c, v: c.ledger.list_holds(tenant_id=c.tenant_id, state=v),
        "list_holds.before": lambda c, v: c.ledger.list_holds(
            tenant_id=c.tenant_id, expires_before=v
        ),
        "list_holds.account": lambda c, v: c.ledger.list_holds(tenant_id=c.tenant_id, account_id=v),
        "list_holds.limit": lambda c, v: c.ledger.list_holds(tenant_id=c.tenant_id, limit=v),
        "entries.from": lambda c, v: c.ledger.list_ledger_entries(
            c.account, v, tenant_id=c.tenant_id
        ),
        "entries.to": lambda c, v: c.ledger.list_ledger_entries(
            c.account, None, v, tenant_id=c.tenant_id
        ),
        "entries.cursor": lambda c, v: c.ledger.list_ledger_entries(
            c.account, tenant_id=c.tenant_id, cursor=v
        ),
        "entries.limit": lambda c, v: c.ledger.list_ledger_entries(
            c.account, tenant_id=c.tenant_id, limit=v
        ),
        "entries.time_field": lambda c, v: c.ledger.list_ledger_entries(
            c.account, tenant_id=c.tenant_id, time_field=v
        ),
        "transactions.hold": lambda c, v: c.ledger.list_transactions(
            tenant_id=c.tenant_id, hold_id=v
        ),
        "transactions.after": lambda c, v: c.ledger.list_transactions(
            tenant_id=c.tenant_id, after_sequence=v
        ),
        "transactions.limit": lambda c, v: c.ledger.list_transactions(
            tenant_id=c.tenant_id, limit=v
        ),
        "events.tenant": lambda c, v: c.ledger.list_events(tenant_id=v),
        "events.after": lambda c, v: c.ledger.list_events(tenant_id=c.tenant_id, after_sequence=v),
        "events.limit": lambda c, v: c.ledger.list_events(tenant_id=c.tenant_id, limit=v),
        "events.unsent": lambda c, v: c.ledger.list_events(tenant_id=c.tenant_id, unsent_only=v),
        "events.transaction": lambda c, v: c.ledger.list_events(
            tenant_id=c.tenant_id, transaction_id=v
        ),
        "events.hold": lambda c, v: c.ledger.list_events(tenant_id=c.tenant_id, hold_id=v),
        "relay.after": lambda c, v: c.ledger.list_unsent_events_all_tenants(after_sequence=v),
        "relay.limit": lambda c, v: c.ledger.list_unsent_events_all_tenants(limit=v),
        "mark_sent.ids": lambda c, v: c.ledger.mark_events_sent(v),
        "mark_sent.at": lambda c, v: c.ledger.mark_events_sent(["none"], sent_at=v),
        "capture.hold": lambda c, v: c.ledger.capture_hold(
            v, "o", tenant_id=c.tenant_id, idempotency_key=_key()
        ),
        "capture.order": lambda c, v: c.ledger.capture_hold(
            c.hold, v, tenant_id=c.tenant_id, idempotency_key=_key()
        ),
        "capture.amount": lambda c, v: c.ledger.capture_hold(
            c.hold, "o", tenant_id=c.tenant_id, idempotency_key=_key(), amount=v
        ),
        "capture.currency": lambda c, v: c.ledger.capture_hold(
            c.hold, "o", tenant_id=c.tenant_id, idempotency_key=_key(), currency=v
        ),
        "capture.payee": lambda c, v: c.ledger.capture_hold(
            c.hold, "o", tenant_id=c.tenant_id, idempotency_key=_key(), payee_account_id=v
        ),
        "capture.now": lambda c, v: c.ledger.capture_hold(
            c.hold, "o", tenant_id=c.tenant_id, idempotency_key=_key(), now=v
        ),
        "finalize.bps": lambda c, v: c.ledger.finalize_hold(
            c.hold, tenant_id=c.tenant_id, idempotency_key=_key(), fee_bps=v
        ),
        "finalize.now": lambda c, v: c.ledger.finalize_hold(
            c.hold, tenant_id=c.tenant_id, idempotency_key=_key(), now=v
        ),
        "release.hold": lambda c, v: c.ledger.release_hold(
            v, tenant_id=c.tenant_id, idempotency_key=_key()
        ),
        "release.now": lambda c, v: c.ledger.release_hold(
            c.hold, tenant_id=c.tenant_id, idempotency_key=_key(), now=v
        ),
        "expire.now": lambda c, v: c.ledger.expire_hold(
            c.hold, tenant_id=c.tenant_id, idempotency_key=_key(), now=v
        ),
        "reverse.id": lambda c, v: c.ledger.reverse_transaction(
            v, tenant_id=c.tenant_id, idempotency_key=_key()
        ),
        "reverse.reason": lambda c, v: c.ledger.reverse_transaction(
            c.transaction, tenant_id=c.tenant_id, idempotency_key=_key(), reason=v
        ),
        "reverse.now": lambda c, v: c.ledger.reverse_transaction(
            c.transaction, tenant_id=c.tenant_id, idempotency_key=_key(), now=v
        ),
        "record.entries": lambda c, v: c.ledger.record_entries(
            v, tenant_id=c.tenant_id, idempotency_key=_key()
        ),
        "record.entry": lambda c, v: c.ledger.record_entries(
            [v], tenant_id=c.tenant_id, idempotency_key=_key()
        ),
        "record.account": lambda c, v: c.ledger.record_entries(
            [_record()], tenant_id=c.tenant_id, idempotency_key=_key(), account_id=v
        ),
        "record.now": lambda c, v: c.ledger.record_entries(
            [_record()], tenant_id=c.tenant_id, idempotency_key=_key(), now=v
        ),
        "record_many.batches": lambda c, v: c.ledger.record_entries_many(
            v, tenant_id=c.tenant_id, idempotency_key=_key()
        ),
        "check_entry.entry": lambda c, v: c.ledger.check_entry(v, tenant_id=c.tenant_id),
    }
    for name in (
        "account_id",
        "amount",
        "currency",
        "external_ref",
        "reason",
        "category",
        "meta",
        "occurred_at",
        "project_id",
        "env",
        "idempotency_key",
    ):
        calls[f"deposit.{name}"] = lambda c, v, name=name: c.ledger.deposit(
            **{
                "account_id": c.account,
                "amount": "0.01",
                "tenant_id": c.tenant_id,
                "idempotency_key": _key(),
                name: v,
            }
        )
    for name in (
        "account_id",
        "amount",
        "reason",
        "ttl_seconds",
        "currency",
        "payee_account_id",
        "hold_id",
        "now",
        "meta",
        "project_id",
        "env",
        "task_id",
    ):
        calls[f"freeze.{name}"] = lambda c, v, name=name: c.ledger.freeze(
            **{
                "account_id": c.account,
                "amount": "0.01",
                "reason": "N",
                "tenant_id": c.tenant_id,
                "idempotency_key": _key(),
                "ttl_seconds": 60,
                name: v,
            }
        )
    for name in RECORD_FIELDS:
        calls[f"record.field.{name}"] = lambda c, v, name=name: c.ledger.record_entries(
            [_record(**{name: v})], tenant_id=c.tenant_id, idempotency_key=_key()
        )
    return calls


CALLS = _calls()


@pytest.fixture
def context(ledger: Ledger) -> Context:
    tenant = f"tenant-{uuid.uuid4().hex[:10]}"
    ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="o", account_id="agent")
    ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="p", account_id="payee")
    deposit = ledger.deposit("agent", "1000.00", tenant_id=tenant, idempotency_key="d")
    hold = ledger.freeze(
        "agent",
        "1.00",
        "N",
        tenant_id=tenant,
        idempotency_key="f",
        ttl_seconds=600,
        payee_account_id="payee",
    )
    return Context(ledger, tenant, "agent", hold.hold_id, deposit.transaction_id)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.sampled_from(sorted(CALLS)), value=JUNK)
def test_any_argument_is_a_result_or_a_typed_error(context: Context, name: str, value: Any) -> None:
    # Anything but a LedgerError escaping fails the test (and Hypothesis shrinks it).
    try:
        CALLS[name](context, value)
    except errors.LedgerError as error:
        assert error.code in errors.ERROR_CODES


def test_the_journal_stays_intact_after_the_fuzz(context: Context) -> None:
    """The same calls, each with one junk value, then the books still verify."""
    for _name, call in sorted(CALLS.items()):
        for value in (
            None,
            "\x00",
            2**70,
            float("nan"),
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
        ):
            with contextlib.suppress(errors.LedgerError):
                call(context, value)
    assert context.ledger.verify_journal() == []
