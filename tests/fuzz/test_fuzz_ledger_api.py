"""Hypothesis fuzz of the ledger's public write API, every argument at once.

tests/ledger/test_ledger_argument_fuzz.py puts one junk value into one argument of a valid call;
this suite draws every argument of a call together (valid, junk of the argument's own kind, or
junk of any type: any unicode with NUL and lone surrogates, sizes around the limits, amounts at
the 2^63 - 1 boundary and past it, instants at 1970, 9999, and a caller's ``now`` just inside and
just outside its window) against a ledger whose state grows as calls succeed, and checks:

- the outcome is a result or a ``LedgerError`` with a stable code, never a raw exception;
- a refused call writes nothing: every table is identical before and after;
- a replayed call (same key, same request) writes nothing either;
- the journal verifies after every successful write.

Both engines; ``make fuzz`` runs ten times the examples.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from fuzz_helpers import (
    AMOUNTS,
    INSTANTS,
    JUNK,
    META,
    NOW,
    TEXT,
    TTLS,
    FixedClock,
    changed_tables,
    examples,
    take_snapshot,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger_db import Ledger, errors

pytestmark = pytest.mark.fuzz


@dataclass
class World:
    """The objects the fuzz refers to, growing as its calls succeed."""

    ledger: Ledger
    tenant_id: str
    accounts: list[str] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    ledger = Ledger.from_url(database_url, clock=FixedClock())
    tenant = f"fz-{uuid.uuid4().hex[:10]}"
    ledger.ensure_platform_accounts(tenant_id=tenant, currency="USD")
    world = World(ledger, tenant)
    for account in ("buyer", "payee"):
        ledger.open_account(
            tenant_id=tenant, currency="USD", idempotency_key=f"open-{account}", account_id=account
        )
        world.accounts.append(account)
    deposit = ledger.deposit("buyer", "100000.00", tenant_id=tenant, idempotency_key="dep")
    world.transactions.append(deposit.transaction_id)
    hold = ledger.freeze(
        "buyer",
        "5.00",
        "NEGOTIATION",
        tenant_id=tenant,
        idempotency_key="frz",
        ttl_seconds=600,
        payee_account_id="payee",
        now=NOW,
    )
    world.holds.append(hold.hold_id)
    try:
        yield world
    finally:
        ledger.close()
        if os.environ.get("FUZZ_REPORT"):
            print(f"\noutcomes: {dict(sorted(world.outcomes.items()))}")


def _one_of_list(values: list[str]) -> st.SearchStrategy[str]:
    """One of a list that grows between examples, drawn as an index so that the same choices
    replay as the same draws (``sampled_from`` of a longer list would not)."""
    return st.integers(0, 2**16).map(lambda index: values[index % len(values)])


def _minor_text(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


ANY = st.one_of(TEXT, JUNK)
OMIT = object()
Arg = tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]  # (valid, junk)

VALID_AMOUNT = st.one_of(
    st.integers(1, 50_000).map(_minor_text),
    st.sampled_from(["0.01", "1", "12.5", "92233720368547758.07"]),
)
VALID_NOW = st.one_of(
    st.just(OMIT),
    st.none(),
    st.timedeltas(min_value=timedelta(seconds=-299), max_value=timedelta(days=30)).map(
        lambda delta: NOW + delta
    ),
)
VALID_TEXT = st.text(st.sampled_from("abcdefXYZ0123456789-_"), min_size=1, max_size=20)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(OMIT), strategy)


def _operations(world: World) -> dict[str, tuple[Callable[..., Any], dict[str, Arg]]]:
    """Each write method of the public API with, per argument, a valid strategy and a junk one."""
    ledger = world.ledger
    tenant: Arg = (st.just(world.tenant_id), ANY)
    account: Arg = (_one_of_list(world.accounts), ANY)
    hold: Arg = (_one_of_list(world.holds), ANY)
    key: Arg = (
        st.integers(0, 3).flatmap(
            lambda choice: (
                _one_of_list(world.keys)
                if choice == 0 and world.keys
                else st.just(uuid.uuid4().hex)
            )
        ),
        st.one_of(TEXT, JUNK),
    )
    amount: Arg = (VALID_AMOUNT, AMOUNTS)
    now: Arg = (VALID_NOW, st.one_of(INSTANTS, JUNK))
    currency: Arg = (_optional(st.just("USD")), ANY)
    text: Arg = (_optional(VALID_TEXT), ANY)
    meta: Arg = (
        _optional(st.dictionaries(VALID_TEXT, st.integers(-1000, 1000), max_size=2)),
        META,
    )
    return {
        "open_account": (
            ledger.open_account,
            {
                "tenant_id": tenant,
                "currency": (st.just("USD"), ANY),
                "idempotency_key": key,
                "account_id": (_optional(VALID_TEXT.map(lambda t: f"acct-{t}")), ANY),
                "kind": (
                    _optional(st.sampled_from(["agent", "escrow", "revenue", "external"])),
                    st.one_of(st.sampled_from(["hold", "operating", "AGENT"]), ANY),
                ),
                "name": text,
                "overdraft_limit": (_optional(VALID_AMOUNT), AMOUNTS),
            },
        ),
        "deposit": (
            ledger.deposit,
            {
                "account_id": account,
                "amount": amount,
                "tenant_id": tenant,
                "idempotency_key": key,
                "currency": currency,
                "external_ref": text,
                "reason": (_optional(st.just("TOP_UP")), ANY),
                "category": (_optional(st.just("FUNDING")), ANY),
                "meta": meta,
                "occurred_at": (VALID_NOW, st.one_of(INSTANTS, JUNK)),
                "project_id": text,
                "env": (_optional(st.sampled_from(["prod", "dev"])), ANY),
            },
        ),
        "freeze": (
            ledger.freeze,
            {
                "account_id": account,
                "amount": amount,
                "reason": (st.just("NEGOTIATION"), ANY),
                "tenant_id": tenant,
                "idempotency_key": key,
                "ttl_seconds": (st.integers(1, 86_400), TTLS),
                "currency": currency,
                "payee_account_id": (_optional(_one_of_list(world.accounts)), ANY),
                "hold_id": (st.just(OMIT), ANY),
                "now": now,
                "meta": meta,
                "project_id": text,
                "env": (_optional(st.just("prod")), ANY),
                "task_id": text,
            },
        ),
        "capture_hold": (
            ledger.capture_hold,
            {
                "hold_id": hold,
                "order_id": (VALID_TEXT, ANY),
                "tenant_id": tenant,
                "idempotency_key": key,
                "amount": (_optional(VALID_AMOUNT), AMOUNTS),
                "currency": currency,
                "payee_account_id": (_optional(_one_of_list(world.accounts)), ANY),
                "now": now,
            },
        ),
        "finalize_hold": (
            ledger.finalize_hold,
            {
                "hold_id": hold,
                "tenant_id": tenant,
                "idempotency_key": key,
                "fee_bps": (
                    _optional(st.sampled_from([0, 1, 100, 9999, 10000])),
                    st.one_of(st.integers(-(2**40), 2**40), st.just(10001), ANY),
                ),
                "now": now,
            },
        ),
        "release_hold": (
            ledger.release_hold,
            {"hold_id": hold, "tenant_id": tenant, "idempotency_key": key, "now": now},
        ),
        "expire_hold": (
            ledger.expire_hold,
            {"hold_id": hold, "tenant_id": tenant, "idempotency_key": key, "now": now},
        ),
        "extend_hold": (
            ledger.extend_hold,
            {
                "hold_id": hold,
                "tenant_id": tenant,
                "idempotency_key": key,
                "ttl_seconds": (_optional(st.integers(1, 86_400)), TTLS),
                "expires_at": (st.just(OMIT), st.one_of(INSTANTS, JUNK)),
                "now": now,
            },
        ),
        "set_overdraft_limit": (
            ledger.set_overdraft_limit,
            {
                "account_id": account,
                "overdraft_limit": (st.one_of(st.just("0"), VALID_AMOUNT), AMOUNTS),
                "tenant_id": tenant,
                "idempotency_key": key,
            },
        ),
        "reverse_transaction": (
            ledger.reverse_transaction,
            {
                "transaction_id": (_one_of_list(world.transactions), ANY),
                "tenant_id": tenant,
                "idempotency_key": key,
                "reason": (_optional(st.just("ADJUSTMENT")), ANY),
                "now": now,
            },
        ),
        "record_entries": (
            ledger.record_entries,
            {
                "entries": (
                    st.lists(_record_entry(world, junk=False), min_size=1, max_size=3),
                    st.one_of(st.lists(_record_entry(world, junk=True), max_size=3), JUNK, TEXT),
                ),
                "tenant_id": tenant,
                "idempotency_key": key,
                "account_id": (st.just(OMIT), ANY),
                "now": now,
            },
        ),
    }


def _record_entry(world: World, *, junk: bool) -> st.SearchStrategy[Any]:
    """A LedgerEntry v1.0 mapping; with ``junk``, some fields junk, some missing, one extra."""
    field_value = {
        "account_id": st.one_of(_one_of_list(world.accounts), ANY),
        "direction": st.one_of(st.sampled_from(["IN", "OUT", "in", "SIDEWAYS"]), ANY),
        "amount": AMOUNTS,
        "currency": st.one_of(st.just("EUR"), ANY),
        "reason": ANY,
        "category": ANY,
        "occurred_at": st.one_of(INSTANTS, INSTANTS.map(lambda t: t.isoformat()), ANY),
        "external_ref": ANY,
        "project_id": ANY,
        "env": ANY,
    }

    @st.composite
    def entry(draw: st.DrawFn) -> Any:
        record: dict[Any, Any] = {
            "account_id": draw(_one_of_list(world.accounts)),
            "direction": draw(st.sampled_from(["IN", "OUT"])),
            "amount": draw(st.integers(1, 10_000).map(_minor_text)),
            "currency": "USD",
            "reason": "TASK_BURN",
            "category": "CLOUD_COST",
            "occurred_at": (NOW - timedelta(hours=1)).isoformat(),
            "external_ref": f"bill-{draw(VALID_TEXT)}",
            "project_id": "p1",
            "env": "prod",
        }
        if not junk:
            return record
        for name in draw(
            st.lists(st.sampled_from(sorted(field_value)), min_size=1, max_size=3, unique=True)
        ):
            if draw(st.booleans()):
                record[name] = draw(field_value[name])
            else:
                del record[name]
        if draw(st.integers(0, 4)) == 0:
            record[draw(TEXT)] = draw(ANY)
        return record

    return entry() if not junk else st.one_of(entry(), entry(), JUNK)


def _draw_call(world: World, data: st.DataObject) -> tuple[str, Callable[..., Any], dict[str, Any]]:
    """An operation and its arguments: all valid, one junk, or several junk."""
    operations = _operations(world)
    name = data.draw(st.sampled_from(sorted(operations)), label="operation")
    method, arguments = operations[name]
    names = sorted(arguments)
    mode = data.draw(st.sampled_from(["valid", "valid", "one", "several"]), label="mode")
    junk: set[str] = set()
    if mode == "one":
        junk = {data.draw(st.sampled_from(names), label="junk argument")}
    elif mode == "several":
        junk = set(data.draw(st.lists(st.sampled_from(names), min_size=2, unique=True)))
    drawn = {}
    for argument in names:
        valid, bad = arguments[argument]
        value = data.draw(bad if argument in junk else valid, label=argument)
        if value is not OMIT:
            drawn[argument] = value
    return name, method, drawn


def _remember(world: World, name: str, arguments: dict[str, Any], result: Any) -> None:
    key = arguments.get("idempotency_key")
    if isinstance(key, str):
        world.keys.append(key)
    hold_id = getattr(result, "hold_id", None)
    if isinstance(hold_id, str) and hold_id not in world.holds:
        world.holds.append(hold_id)
    transaction_id = getattr(result, "transaction_id", None)
    if isinstance(transaction_id, str) and transaction_id not in world.transactions:
        world.transactions.append(transaction_id)
    account_id = getattr(result, "account_id", None)
    if name == "open_account" and isinstance(account_id, str) and account_id not in world.accounts:
        world.accounts.append(account_id)


@settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
def test_any_call_is_a_result_or_a_typed_error_and_a_refusal_writes_nothing(
    world: World, data: st.DataObject
) -> None:
    name, method, arguments = _draw_call(world, data)
    before = take_snapshot(world.ledger)
    try:
        result = method(**arguments)
    except errors.LedgerError as error:
        assert error.code in errors.ERROR_CODES, error.code
        after = take_snapshot(world.ledger)
        assert after == before, (
            f"{name} refused ({error.code}) but wrote {changed_tables(before, after)}"
        )
        world.outcomes[f"{name}:{error.code}"] = world.outcomes.get(f"{name}:{error.code}", 0) + 1
        return
    # Anything but a LedgerError propagates and fails the example (Hypothesis shrinks it).
    world.outcomes[f"{name}:ok"] = world.outcomes.get(f"{name}:ok", 0) + 1
    if getattr(result, "replayed", False):
        after = take_snapshot(world.ledger)
        assert after == before, f"{name} replayed but wrote {changed_tables(before, after)}"
    _remember(world, name, arguments, result)
    assert world.ledger.verify_journal() == []
