"""The account rules (``ledger_db.rules.accounts``) on plain records: no database, no clock.

Each ladder is walked rung by rung, and where two rungs would both refuse a request the test
pins which one speaks first (the contract and bad-input suites pin the same order end to end).
"""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_db.errors import (
    AccountAlreadyExists,
    AccountClosed,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidAmount,
    InvalidEntry,
    UnknownCurrency,
)
from ledger_db.models import AccountKind
from ledger_db.money import default_registry
from ledger_db.rules import accounts as rules
from ledger_db.rules.accounts import AccountRecord

REGISTRY = default_registry()
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def _account(**changes: Any) -> AccountRecord:
    fields: dict[str, Any] = {
        "account_id": "buyer",
        "kind": AccountKind.AGENT,
        "currency": "USD",
        "status": "open",
        "overdraft_limit_minor": 0,
        "balance_minor": 10_000,
    }
    fields.update(changes)
    return AccountRecord(**fields)


def _open(**changes: Any) -> rules.AccountOpening:
    arguments: dict[str, Any] = {
        "tenant_id": "t",
        "idempotency_key": "k",
        "currency": "USD",
        "exponent": 2,
        "account_id": None,
        "kind": "agent",
        "name": None,
        "overdraft_limit": "0",
    }
    arguments.update(changes)
    return rules.check_open(**arguments)


def _project_imports(module_path: Path) -> set[str]:
    tree = ast.parse(module_path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _module_path(name: str) -> Path | None:
    path = ROOT / Path(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file() and name != "ledger_db":
        return path / "__init__.py"
    return None


def test_the_rules_and_the_vocabulary_are_pure_all_the_way_down() -> None:
    """No SQLAlchemy, temporalio, clock or I/O module anywhere below the rules (the workflow
    sandbox imports them); ``ledger_db``'s own ``__init__`` is not followed: the sandbox passes
    the package through."""
    start = ["ledger_db.rules.accounts", "ledger_db.rules.holds", "ledger_db.rules.postings"]
    seen: set[str] = set()
    pending = [*start, "ledger_db.vocabulary"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_path(name)
        if path is None:
            continue
        for imported in _project_imports(path):
            assert not imported.startswith(
                ("sqlalchemy", "temporalio", "psycopg", "ledger_db.schema", "ledger_db.journal")
            ), f"{name} imports {imported}"
            if imported.startswith("ledger_db."):
                pending.append(imported)
    assert "ledger_db.models" in seen and "ledger_db.money" in seen


# ---------------------------------------------------------------------------- open


def test_open_an_agent_account() -> None:
    opening = _open(account_id="buyer", name="Buyer", overdraft_limit="5")
    assert opening == rules.AccountOpening(
        account_id="buyer",
        kind=AccountKind.AGENT,
        currency="USD",
        name="Buyer",
        overdraft_limit_minor=500,
    )
    # Without an ID the account's ID is derived from the tenant and the idempotency key.
    derived = _open()
    assert derived.account_id.startswith("acct_")
    assert derived.account_id == _open().account_id != _open(idempotency_key="k2").account_id


def test_open_a_platform_account_returns_its_fixed_id() -> None:
    for kind in ("escrow", "revenue", "external"):
        assert _open(kind=kind).account_id == f"@{kind}:USD"


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"kind": "bogus"}, InvalidEntry, "kind"),
        ({"kind": 3}, InvalidEntry, "kind"),
        ({"kind": "hold"}, InvalidEntry, "kind"),
        ({"kind": "operating"}, InvalidEntry, "kind"),
        ({"name": "bad\x00name"}, InvalidEntry, "name"),
        ({"overdraft_limit": "-1"}, InvalidAmount, None),
        ({"overdraft_limit": "0.001"}, InvalidAmount, None),
        ({"account_id": "@escrow:USD"}, InvalidEntry, "account_id"),
        ({"account_id": "has space"}, InvalidEntry, "account_id"),
        ({"kind": "escrow", "account_id": "mine"}, InvalidEntry, "account_id"),
        ({"kind": "escrow", "overdraft_limit": "1"}, InvalidEntry, "overdraft_limit"),
    ],
)
def test_open_refusals(changes: dict[str, Any], error: type[Exception], field: str | None) -> None:
    with pytest.raises(error) as raised:
        _open(**changes)
    if field is not None:
        assert getattr(raised.value, "details", {}).get("field") == field


def test_open_precedence() -> None:
    # The kind speaks before the name, the name before the amount, the amount before the ID.
    with pytest.raises(InvalidEntry) as first:
        _open(kind="hold", name="bad\x00", overdraft_limit="-1")
    assert first.value.details["field"] == "kind"
    with pytest.raises(InvalidEntry) as raised:
        _open(name="bad\x00", overdraft_limit="-1", account_id="@x")
    assert raised.value.details["field"] == "name"
    with pytest.raises(InvalidAmount):
        _open(overdraft_limit="-1", account_id="@x")


def test_decide_open_agent_inserts_the_account_and_its_bucket() -> None:
    opening = _open(account_id="buyer", overdraft_limit="1")
    rows = rules.decide_open_agent(opening, exists=False, tenant_id="t", recorded_at=NOW)
    assert [(r["account_id"], r["kind"], r["parent_account_id"]) for r in rows] == [
        ("buyer", "agent", None),
        ("@hold:buyer", "hold", "buyer"),
    ]
    assert [r["overdraft_limit_minor"] for r in rows] == [100, 0]
    assert all(r["balance_minor"] == 0 and r["created_at"] == NOW for r in rows)
    with pytest.raises(AccountAlreadyExists):
        rules.decide_open_agent(opening, exists=True, tenant_id="t", recorded_at=NOW)


# ---------------------------------------------------------------------------- overdraft


def test_overdraft_change() -> None:
    change = rules.check_overdraft_change(_account(overdraft_limit_minor=300), "12.5", REGISTRY)
    assert (change.limit_minor, change.previous_minor) == (1250, 300)
    assert change.journal_meta() == {
        "account_id": "buyer",
        "set": {"overdraft_limit_minor": 1250},
        "previous": {"overdraft_limit_minor": 300},
    }
    # A limit below what the account overdraws already is accepted.
    assert (
        rules.check_overdraft_change(_account(balance_minor=-500), "0", REGISTRY).limit_minor == 0
    )


def test_overdraft_change_refusals_and_precedence() -> None:
    with pytest.raises(InvalidEntry, match="only agent"):
        rules.check_overdraft_change(
            _account(kind=AccountKind.ESCROW, status="closed"), "1", REGISTRY
        )
    with pytest.raises(AccountClosed):
        rules.check_overdraft_change(_account(status="closed"), "-1", REGISTRY)
    with pytest.raises(InvalidAmount):
        rules.check_overdraft_change(_account(), "-1", REGISTRY)


# ---------------------------------------------------------------------------- agents, currency


def test_check_agent() -> None:
    rules.check_agent(_account())
    with pytest.raises(AccountClosed):
        rules.check_agent(_account(status="closed", kind=AccountKind.ESCROW))
    with pytest.raises(InvalidEntry) as raised:
        rules.check_agent(_account(kind=AccountKind.REVENUE), "payee_account_id")
    assert raised.value.details["field"] == "payee_account_id"
    assert "is a revenue account, not an agent account" in raised.value.message


def test_check_currency() -> None:
    rules.check_currency(None, "USD", REGISTRY)
    rules.check_currency("USD", "USD", REGISTRY)
    with pytest.raises(CurrencyMismatch) as mismatch:
        rules.check_currency("EUR", "USD", REGISTRY)
    assert mismatch.value.details == {"given": "EUR", "expected": "USD"}
    # An unknown code is unknown before it is a mismatch.
    with pytest.raises(UnknownCurrency):
        rules.check_currency("XXXXX", "USD", REGISTRY)


# ---------------------------------------------------------------------------- available balance


def test_available_balance_and_overdraft() -> None:
    rules.check_available(_account(balance_minor=1000), 1000, REGISTRY)
    rules.check_available(_account(balance_minor=1000, overdraft_limit_minor=500), 1500, REGISTRY)
    with pytest.raises(InsufficientFunds) as raised:
        rules.check_available(
            _account(balance_minor=1000, overdraft_limit_minor=500), 1501, REGISTRY
        )
    assert raised.value.message == (
        "account 'buyer' has 10.00 USD available (overdraft 5.00), needs 15.01"
    )
    assert raised.value.details["account_id"] == "buyer"


def test_only_agents_have_an_overdraft_and_external_accounts_are_unbounded() -> None:
    # An escrow's stored limit does not count: system accounts other than external and
    # operating may never go below zero.
    escrow = _account(kind=AccountKind.ESCROW, balance_minor=100, overdraft_limit_minor=10_000)
    with pytest.raises(InsufficientFunds):
        rules.check_available(escrow, 101, REGISTRY)
    for kind in (AccountKind.EXTERNAL, AccountKind.OPERATING):
        rules.check_available(_account(kind=kind, balance_minor=-(10**15)), 10**15, REGISTRY)


@given(
    balance=st.integers(-(10**12), 10**12),
    limit=st.integers(0, 10**12),
    debit=st.integers(1, 10**12),
)
def test_available_is_exactly_balance_plus_overdraft(balance: int, limit: int, debit: int) -> None:
    account = _account(balance_minor=balance, overdraft_limit_minor=limit)
    if balance - debit >= -limit:
        rules.check_available(account, debit, REGISTRY)
    else:
        with pytest.raises(InsufficientFunds):
            rules.check_available(account, debit, REGISTRY)


# ---------------------------------------------------------------------------- record targets


def test_record_target() -> None:
    rules.check_record_target(_account(), "USD", REGISTRY)
    rules.check_record_target(_account(kind=AccountKind.OPERATING), "USD", REGISTRY)
    with pytest.raises(InvalidEntry, match="not escrow"):
        rules.check_record_target(
            _account(kind=AccountKind.ESCROW, status="closed"), "EUR", REGISTRY
        )
    with pytest.raises(AccountClosed):
        rules.check_record_target(_account(status="closed"), "EUR", REGISTRY)
    with pytest.raises(CurrencyMismatch):
        rules.check_record_target(_account(), "EUR", REGISTRY)


def test_account_record_from_a_row_mapping() -> None:
    record = AccountRecord.from_mapping(
        {
            "account_id": "a",
            "kind": "agent",
            "currency": "USD",
            "status": "open",
            "overdraft_limit_minor": 5,
            "balance_minor": -3,
            "name": "ignored",
        }
    )
    assert record == _account(account_id="a", overdraft_limit_minor=5, balance_minor=-3)
