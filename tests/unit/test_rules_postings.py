"""The posting rules (``ledger_db.rules.postings``) and the sign rule, with no database.

What a deposit, a LedgerEntry v1.0 record and a reversal post; that every decision balances
(a property over generated inputs); that a reversal negates what it reverses; and the order in
which a record's checks refuse.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_db.errors import (
    AccountClosed,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidAmount,
    InvalidEntry,
    TransactionAlreadyReversed,
    UnknownCurrency,
)
from ledger_db.models import AccountKind, Direction, JournalEntry, LedgerEntryInput
from ledger_db.money import default_registry, signed_minor
from ledger_db.rules import postings as rules
from ledger_db.rules.accounts import AccountRecord
from ledger_db.rules.postings import Posting
from ledger_db.vocabulary import LEDGER_ENTRY_FIELDS

REGISTRY = default_registry()
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _account(**changes: Any) -> AccountRecord:
    fields: dict[str, Any] = {
        "account_id": "buyer",
        "kind": AccountKind.AGENT,
        "currency": "USD",
        "balance_minor": 10_000,
    }
    fields.update(changes)
    return AccountRecord(**fields)


def _record(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "direction": "OUT",
        "amount": "12.50",
        "currency": "USD",
        "reason": "GPU",
        "category": "COMPUTE_COST",
        "task_id": "task-1",
    }
    fields.update(changes)
    return fields


def _checked(**changes: Any) -> dict[str, Any]:
    return rules.check_ledger_entry(_record(**changes), tenant_id="t", registry=REGISTRY)


# ---------------------------------------------------------------------------- the sign rule


def test_the_sign_rule() -> None:
    assert signed_minor(Direction.IN, 5) == 5
    assert signed_minor(Direction.OUT, 5) == -5
    assert signed_minor("IN", 5) == 5
    assert signed_minor("OUT", 5) == -5
    with pytest.raises(ValueError, match="IN or OUT"):
        signed_minor("in", 5)


def test_balanced_and_debits() -> None:
    moved = rules.move("a", "b", 700, "R", "C", {"currency": "USD"})
    assert [(p.account_id, p.direction, p.signed_minor) for p in moved] == [
        ("a", Direction.OUT, -700),
        ("b", Direction.IN, 700),
    ]
    assert rules.balanced(moved)
    assert not rules.balanced(moved[:1])
    # Balance is per currency: 7 USD out and 7 EUR in do not balance.
    euro = Posting(
        account_id="b",
        direction=Direction.IN,
        amount_minor=700,
        currency="EUR",
        reason="R",
        category="C",
    )
    assert not rules.balanced([moved[0], euro])
    assert rules.debits(moved + rules.move("b", "a", 200, "R", "C", {"currency": "USD"})) == {
        "a": 500,
        "b": -500,
    }


def test_move_marks_the_counterpart_side() -> None:
    source, target = rules.move("a", "b", 1, "R", "C", {"currency": "USD"}, counterpart="target")
    assert (source.counterpart, target.counterpart) == (False, True)
    source, target = rules.move("a", "b", 1, "R", "C", {"currency": "USD"}, counterpart="source")
    assert (source.counterpart, target.counterpart) == (True, False)


def test_check_debits_refuses_the_account_that_cannot_afford_it() -> None:
    postings = rules.move("buyer", "@external:USD", 10_001, "R", "C", {"currency": "USD"})
    accounts = {
        "buyer": _account(),
        "@external:USD": _account(account_id="@external:USD", kind=AccountKind.EXTERNAL),
    }
    with pytest.raises(InsufficientFunds) as raised:
        rules.check_debits(postings, accounts, REGISTRY)
    assert raised.value.details["account_id"] == "buyer"
    # The same amount moving in is no debit at all.
    incoming = rules.move("@external:USD", "buyer", 10_001, "R", "C", {"currency": "USD"})
    rules.check_debits(incoming, accounts, REGISTRY)
    rules.check_debits(
        rules.move("buyer", "x", 10_000, "R", "C", {"currency": "USD"}), accounts, REGISTRY
    )


# ---------------------------------------------------------------------------- deposit


def test_deposit() -> None:
    amount = rules.check_deposit(_account(), currency=None, amount="1.5", registry=REGISTRY)
    assert amount == 150
    common = {
        "reason": "TOP_UP",
        "category": "FUNDING",
        "env": "prod",
        "project_id": None,
        "external_ref": "bank-1",
        "meta": {"k": "v"},
    }
    external, agent = rules.deposit_postings(_account(), amount, common)
    assert (external.account_id, external.direction, external.counterpart) == (
        "@external:USD",
        Direction.OUT,
        True,
    )
    assert (agent.account_id, agent.direction, agent.counterpart) == ("buyer", Direction.IN, False)
    for posting in (external, agent):
        assert (posting.amount_minor, posting.currency, posting.reason, posting.meta) == (
            150,
            "USD",
            "TOP_UP",
            {"k": "v"},
        )
        assert posting.external_ref == "bank-1"
    assert rules.balanced([external, agent])


def test_deposit_precedence() -> None:
    # A closed account is refused before its kind, its kind before the currency, the currency
    # before the amount.
    with pytest.raises(AccountClosed):
        rules.check_deposit(
            _account(status="closed", kind=AccountKind.ESCROW),
            currency="EUR",
            amount="-1",
            registry=REGISTRY,
        )
    with pytest.raises(InvalidEntry):
        rules.check_deposit(
            _account(kind=AccountKind.ESCROW), currency="EUR", amount="-1", registry=REGISTRY
        )
    with pytest.raises(CurrencyMismatch):
        rules.check_deposit(_account(), currency="EUR", amount="-1", registry=REGISTRY)
    with pytest.raises(InvalidAmount):
        rules.check_deposit(_account(), currency="USD", amount="0.001", registry=REGISTRY)


# ---------------------------------------------------------------------------- LedgerEntry v1.0


def test_a_checked_record() -> None:
    entry_id = str(uuid.uuid4())
    checked = _checked(
        ledger_entry_id=entry_id.upper(),
        tags=["b", "a"],
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert checked["ledger_entry_id"] == entry_id
    assert checked["amount_minor"] == 1250
    assert checked["direction"] == "OUT"
    assert checked["occurred_at"] == "2026-01-02T03:04:05.000000Z"
    assert set(rules.RECORD_POSTING_FIELDS) <= set(checked)
    # A LedgerEntryInput is checked the same as a mapping.
    assert (
        rules.check_ledger_entry(
            LedgerEntryInput.model_validate(_record()), tenant_id="t", registry=REGISTRY
        )
        == _checked()
    )


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"direction": "SIDEWAYS"}, InvalidEntry, "direction"),
        ({"reason": None}, InvalidEntry, "reason"),
        ({"tenant_id": "other"}, InvalidEntry, "tenant_id"),
        ({"ledger_entry_id": "not-a-uuid"}, InvalidEntry, "ledger_entry_id"),
        ({"account_id": "has space"}, InvalidEntry, "account_id"),
        ({"currency": "NOPE1"}, UnknownCurrency, None),
        ({"amount": "0"}, InvalidAmount, None),
        ({"task_id": None}, InvalidEntry, "asset_id"),
        ({"project_id": "bad\x01id"}, InvalidEntry, "project_id"),
        ({"env": "bad\x01env"}, InvalidEntry, "env"),
        ({"tags": ["ok", 3]}, InvalidEntry, None),
    ],
)
def test_record_refusals(
    changes: dict[str, Any], error: type[Exception], field: str | None
) -> None:
    with pytest.raises(error) as raised:
        _checked(**changes)
    if field is not None:
        assert getattr(raised.value, "details", {}).get("field") == field


def test_record_precedence_and_index() -> None:
    # The shape of the record first, then its tenant, then its ID, then the amount, then the
    # references.
    with pytest.raises(InvalidEntry) as shape:
        _checked(direction="X", tenant_id="other", amount="0")
    assert shape.value.details["field"] == "direction"
    with pytest.raises(InvalidEntry) as tenant:
        _checked(tenant_id="other", ledger_entry_id="x", amount="0")
    assert tenant.value.details["field"] == "tenant_id"
    with pytest.raises(InvalidAmount):
        _checked(amount="0", task_id=None)
    with pytest.raises(InvalidEntry) as indexed:
        rules.check_ledger_entry(_record(task_id=None), tenant_id="t", registry=REGISTRY, index=7)
    assert indexed.value.details["index"] == 7
    assert indexed.value.message.startswith("entry 7: ")


def test_record_batches_shape() -> None:
    good = [[_record()]]
    assert rules.check_record_batches(good, single=True) is good
    with pytest.raises(InvalidEntry, match="entries must be a list"):
        rules.check_record_batches("x", single=True)
    with pytest.raises(InvalidEntry, match="batches must be lists"):
        rules.check_record_batches([["x"], "y"], single=False)
    with pytest.raises(InvalidEntry, match="no entries"):
        rules.check_record_batches([[]], single=False)
    with pytest.raises(InvalidEntry, match="each entry must be a record"):
        rules.check_record_batches([[_record(), 3]], single=True)


def test_record_postings_and_targets() -> None:
    assert rules.record_target({"account_id": None, "currency": "EUR"}, None) == "@operating:EUR"
    assert rules.record_target({"account_id": None, "currency": "EUR"}, "call") == "call"
    assert rules.record_target({"account_id": "own", "currency": "EUR"}, "call") == "own"
    checked = _checked()
    primary, counterpart = rules.record_postings(
        checked,
        _account(),
        external_account_id="@external:USD",
        transaction_id="tx",
        position=3,
        at=NOW,
        registry=REGISTRY,
    )
    assert (primary.account_id, primary.direction, primary.counterpart) == ("buyer", "OUT", False)
    assert (counterpart.account_id, counterpart.direction, counterpart.counterpart) == (
        "@external:USD",
        "IN",
        True,
    )
    assert primary.occurred_at == counterpart.occurred_at == NOW
    assert primary.ledger_entry_id is not None and counterpart.ledger_entry_id is not None
    assert counterpart.ledger_entry_id == str(
        uuid.uuid5(uuid.UUID(primary.ledger_entry_id), "counterpart")
    )
    assert rules.balanced([primary, counterpart])


def test_record_system_accounts() -> None:
    batches = [[_checked(), _checked(currency="EUR", account_id="x")]]
    assert rules.record_system_accounts(batches, None) == [
        ("@external:EUR", AccountKind.EXTERNAL, "EUR"),
        ("@external:USD", AccountKind.EXTERNAL, "USD"),
        ("@operating:USD", AccountKind.OPERATING, "USD"),
    ]
    assert rules.record_system_accounts(batches, "call") == [
        ("@external:EUR", AccountKind.EXTERNAL, "EUR"),
        ("@external:USD", AccountKind.EXTERNAL, "USD"),
    ]


def test_decide_records_spends_batch_by_batch() -> None:
    """The second batch is refused on what the first one spent already."""
    out = _checked(amount="60.00")
    accounts = {"buyer": _account(balance_minor=10_000)}
    decided = rules.decide_records(
        [[out]], [["buyer"]], accounts, transaction_ids=["t0"], at=NOW, registry=REGISTRY
    )
    assert len(decided) == 1 and rules.balanced(decided[0])
    with pytest.raises(InsufficientFunds):
        rules.decide_records(
            [[out], [out]],
            [["buyer"], ["buyer"]],
            accounts,
            transaction_ids=["t0", "t1"],
            at=NOW,
            registry=REGISTRY,
        )
    # Money in within the same batch pays for money out.
    income = _checked(amount="60.00", direction="IN")
    rules.decide_records(
        [[out, income], [out]],
        [["buyer", "buyer"], ["buyer"]],
        accounts,
        transaction_ids=["t0", "t1"],
        at=NOW,
        registry=REGISTRY,
    )


# ---------------------------------------------------------------------------- reversal


def _entry(index: int, account_id: str, direction: Direction, amount_minor: int) -> JournalEntry:
    return JournalEntry(
        ledger_entry_id=str(uuid.UUID(int=index + 1)),
        transaction_id="tx",
        journal_sequence=1,
        entry_index=index,
        tenant_id="t",
        account_id=account_id,
        env="prod",
        direction=direction,
        amount_minor=amount_minor,
        currency="USD",
        reason="GPU",
        category="COMPUTE_COST",
        task_id="task",
        meta={"m": 1},
        occurred_at=NOW - timedelta(days=1),
        recorded_at=NOW - timedelta(days=1),
        counterpart=index % 2 == 1,
    )


def test_reversal_negates_every_entry() -> None:
    entries = [
        _entry(0, "buyer", Direction.OUT, 1250),
        _entry(1, "@external:USD", Direction.IN, 1250),
    ]
    reversed_ = rules.reversal_postings(entries, transaction_id="tx", reason="OOPS", at=NOW)
    for entry, posting in zip(entries, reversed_, strict=True):
        assert posting.account_id == entry.account_id
        assert posting.signed_minor == -signed_minor(entry.direction, entry.amount_minor)
        assert posting.counterpart == entry.counterpart
        assert posting.occurred_at == NOW
        assert posting.meta == {
            "m": 1,
            "reverses": "tx",
            "reverses_ledger_entry_id": entry.ledger_entry_id,
            "reversal_reason": "OOPS",
        }
    assert rules.balanced(reversed_)


def test_what_is_reversed() -> None:
    rules.check_reversible("deposit", None, transaction_id="tx")
    rules.check_reversible("record", None, transaction_id="tx")
    for kind, words in [
        ("freeze", "resolved by its hold"),
        ("capture", "resolved by its hold"),
        ("finalize", "refund"),
        ("reversal", "not reversed"),
        ("account_open", "moves no money"),
    ]:
        with pytest.raises(InvalidEntry, match=words):
            rules.check_reversible(kind, None, transaction_id="tx")
    # A kind that is not reversed says so before "already reversed".
    with pytest.raises(InvalidEntry):
        rules.check_reversible("freeze", "other", transaction_id="tx")
    with pytest.raises(TransactionAlreadyReversed) as raised:
        rules.check_reversible("deposit", "rev-1", transaction_id="tx")
    assert raised.value.details["reversed_by"] == "rev-1"


# ---------------------------------------------------------------------------- properties

_amounts = st.integers(min_value=1, max_value=10**15)
_directions = st.sampled_from([Direction.IN, Direction.OUT])


@given(
    records=st.lists(
        st.tuples(_directions, _amounts, st.sampled_from(["USD", "EUR", "JPY"])),
        min_size=1,
        max_size=20,
    )
)
def test_every_recording_balances_and_its_reversal_negates_it(
    records: list[tuple[Direction, int, str]],
) -> None:
    batch = [
        {
            **_checked(currency=currency, amount="12"),
            "direction": direction.value,
            "amount_minor": amount,
            "account_id": f"acct-{currency}",
        }
        for direction, amount, currency in records
    ]
    accounts = {
        f"acct-{currency}": _account(
            account_id=f"acct-{currency}", currency=currency, kind=AccountKind.OPERATING
        )
        for currency in ("USD", "EUR", "JPY")
    }
    targets = [[rules.record_target(record, None) for record in batch]]
    (postings,) = rules.decide_records(
        [batch], targets, accounts, transaction_ids=["tx"], at=NOW, registry=REGISTRY
    )
    assert rules.balanced(postings)
    assert len(postings) == 2 * len(batch)
    entries = [
        _entry(index, p.account_id, p.direction, p.amount_minor).model_copy(
            update={"currency": p.currency}
        )
        for index, p in enumerate(postings)
    ]
    reversal = rules.reversal_postings(entries, transaction_id="tx", reason="R", at=NOW)
    assert rules.balanced(reversal)
    assert {a: -d for a, d in rules.debits(postings).items()} == rules.debits(reversal)


@given(amount=_amounts, payer=st.text("abc", min_size=1, max_size=3))
def test_a_move_always_balances(amount: int, payer: str) -> None:
    assert rules.balanced(rules.move(payer, "@escrow:USD", amount, "R", "C", {"currency": "USD"}))


def test_the_v1_field_list_is_the_models() -> None:
    """The one field list is LedgerEntryInput's fields (bar the ledger's own account_id)."""
    model_fields = set(LedgerEntryInput.model_fields) - {"account_id"}
    assert set(LEDGER_ENTRY_FIELDS) == model_fields
    assert len(LEDGER_ENTRY_FIELDS) == len(set(LEDGER_ENTRY_FIELDS))


def test_deposit_request() -> None:
    from ledger_db.rules.requests import check_deposit_request

    arguments: dict[str, Any] = {
        "tenant_id": "t",
        "account_id": "buyer",
        "idempotency_key": "k",
        "amount": "1.50",
        "currency": None,
        "external_ref": "bank-1",
        "reason": "TOP_UP",
        "category": "FUNDING",
        "meta": None,
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
        "project_id": None,
        "env": "prod",
        "registry": REGISTRY,
    }
    request = check_deposit_request(**arguments)
    assert request.canonical() == {
        "account_id": "buyer",
        "amount": "1.5",
        "currency": None,
        "external_ref": "bank-1",
        "reason": "TOP_UP",
        "category": "FUNDING",
        "env": "prod",
        "project_id": None,
        "meta": {},
        "occurred_at": "2026-01-01T00:00:00.000000Z",
    }
    # The currency before the labels, the labels in signature order, the instant last.
    with pytest.raises(UnknownCurrency):
        check_deposit_request(**{**arguments, "currency": "NOPE1", "reason": None})
    with pytest.raises(InvalidEntry) as raised:
        check_deposit_request(**{**arguments, "external_ref": "a\x01", "reason": None})
    assert raised.value.details["field"] == "external_ref"
    with pytest.raises(InvalidEntry) as naive:
        check_deposit_request(**{**arguments, "occurred_at": datetime(2026, 1, 1)})
    assert naive.value.details["field"] == "occurred_at"
    # A malformed amount is refused when the request is hashed, before anything is read.
    with pytest.raises(InvalidAmount):
        check_deposit_request(**{**arguments, "amount": "1,5"}).canonical()


def test_a_records_postings_carry_the_v1_fields() -> None:
    assert set(rules.RECORD_POSTING_FIELDS) == {
        "project_id",
        "env",
        "asset_id",
        "task_id",
        "external_ref",
        "amount_minor",
        "currency",
        "reason",
        "category",
        "tags",
        "meta",
    }
