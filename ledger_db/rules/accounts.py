"""The rules of accounts: opening one, changing its overdraft limit, and whether it may be
debited, credited or named in an operation.

Each function takes accounts as loaded (:class:`AccountRecord`, a row's columns including its
balance snapshot) and the request, runs its checks in precedence order and raises the typed
error of the first one that fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger_db.errors import (
    AccountAlreadyExists,
    AccountClosed,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidEntry,
)
from ledger_db.models import AccountKind
from ledger_db.money import CurrencyRegistry, format_minor, parse_amount
from ledger_db.validation import check_account_id, check_optional_text
from ledger_db.vocabulary import RESERVED_ACCOUNT_PREFIX, hold_bucket_id, system_account_id

__all__ = [
    "AccountOpening",
    "AccountRecord",
    "OverdraftChange",
    "check_account_kind",
    "check_agent",
    "check_available",
    "check_currency",
    "check_open",
    "check_overdraft_change",
    "check_record_target",
    "decide_open_agent",
]

# Accounts whose balance may go below zero without limit: the tenant's external world and its
# operating account (the other side of every tenant-level record).
_UNBOUNDED_KINDS = frozenset({AccountKind.EXTERNAL, AccountKind.OPERATING})
# Kinds only the ledger opens: a bucket comes with its agent, operating with a record.
_LEDGER_OPENED_KINDS = frozenset({AccountKind.HOLD, AccountKind.OPERATING})
# What a LedgerEntry v1.0 record may post to.
_RECORD_TARGET_KINDS = frozenset({AccountKind.AGENT, AccountKind.OPERATING})


@dataclass(frozen=True)
class AccountRecord:
    """An account as the rules see it: its attributes and its balance snapshot."""

    account_id: str
    kind: AccountKind
    currency: str
    status: str = "open"
    overdraft_limit_minor: int = 0
    balance_minor: int = 0

    @classmethod
    def from_mapping(cls, row: Mapping[Any, Any]) -> AccountRecord:
        """From an ``accounts`` row's columns (``row._mapping``) or an equivalent mapping."""
        return cls(
            account_id=str(row["account_id"]),
            kind=AccountKind(row["kind"]),
            currency=str(row["currency"]),
            status=str(row["status"]),
            overdraft_limit_minor=int(row["overdraft_limit_minor"]),
            balance_minor=int(row["balance_minor"]),
        )


@dataclass(frozen=True)
class AccountOpening:
    """A valid ``open_account`` request: the account to open (or, for a platform kind, the
    tenant's singleton to return)."""

    account_id: str
    kind: AccountKind
    currency: str
    name: str | None
    overdraft_limit_minor: int


def check_account_kind(kind: object) -> AccountKind:
    """``kind`` as an :class:`AccountKind`; anything else is ``invalid_entry``."""
    if isinstance(kind, str):
        try:
            return AccountKind(kind)
        except ValueError:
            pass
    raise InvalidEntry(f"unknown account kind {kind!r}", field="kind")


def check_open(
    *,
    tenant_id: str,
    idempotency_key: str,
    currency: str,
    exponent: int,
    account_id: object | None,
    kind: object,
    name: object | None,
    overdraft_limit: object,
) -> AccountOpening:
    """An ``open_account`` request as the account it opens.

    An agent account's ID is the caller's or derived from the idempotency key; IDs starting
    with ``@`` are the ledger's. A platform kind (escrow, revenue, external) has its fixed ID
    and no overdraft; hold and operating accounts are opened by the ledger alone.
    """
    account_kind = check_account_kind(kind)
    if account_kind in _LEDGER_OPENED_KINDS:
        raise InvalidEntry(f"{kind} accounts are opened by the ledger itself", field="kind")
    checked_name = check_optional_text(name, "name")
    overdraft_minor = parse_amount(overdraft_limit, exponent, allow_zero=True)
    if account_kind is AccountKind.AGENT:
        if account_id is None:
            account_id = (
                "acct_" + uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant_id}\x1f{idempotency_key}").hex
            )
        if isinstance(account_id, str) and account_id.startswith(RESERVED_ACCOUNT_PREFIX):
            raise InvalidEntry("account IDs starting with '@' are reserved", field="account_id")
        check_account_id(account_id)
        opened_id = str(account_id)
    else:
        if account_id is not None:
            raise InvalidEntry(
                "platform accounts have fixed IDs; leave account_id out", field="account_id"
            )
        if overdraft_minor:
            raise InvalidEntry("only agent accounts have an overdraft", field="overdraft_limit")
        opened_id = system_account_id(account_kind, currency)
    return AccountOpening(
        account_id=opened_id,
        kind=account_kind,
        currency=currency,
        name=checked_name,
        overdraft_limit_minor=overdraft_minor,
    )


def decide_open_agent(
    opening: AccountOpening, *, exists: bool, tenant_id: str, recorded_at: datetime
) -> list[dict[str, Any]]:
    """The rows an agent account's opening inserts: the account and its hold bucket."""
    if exists:
        raise AccountAlreadyExists(
            f"account {opening.account_id!r} already exists", account_id=opening.account_id
        )
    base = {
        "tenant_id": tenant_id,
        "currency": opening.currency,
        "status": "open",
        "balance_minor": 0,
        "last_sequence": 0,
        "created_at": recorded_at,
    }
    return [
        {
            **base,
            "account_id": opening.account_id,
            "kind": AccountKind.AGENT.value,
            "name": opening.name,
            "parent_account_id": None,
            "overdraft_limit_minor": opening.overdraft_limit_minor,
        },
        {
            **base,
            "account_id": hold_bucket_id(opening.account_id),
            "kind": AccountKind.HOLD.value,
            "name": None,
            "parent_account_id": opening.account_id,
            "overdraft_limit_minor": 0,
        },
    ]


@dataclass(frozen=True)
class OverdraftChange:
    """What ``set_overdraft_limit`` writes: the new limit, and the old one for the journal."""

    account_id: str
    limit_minor: int
    previous_minor: int

    def journal_meta(self) -> dict[str, Any]:
        """The meta of the ``account_change`` control transaction (hashed with the journal)."""
        return {
            "account_id": self.account_id,
            "set": {"overdraft_limit_minor": self.limit_minor},
            "previous": {"overdraft_limit_minor": self.previous_minor},
        }


def check_overdraft_change(
    account: AccountRecord, overdraft_limit: object, registry: CurrencyRegistry
) -> OverdraftChange:
    """Only an open agent account has an overdraft. A limit below what the account already
    overdraws is accepted: it only refuses further spending."""
    if account.kind is not AccountKind.AGENT:
        raise InvalidEntry("only agent accounts have an overdraft", field="account_id")
    if account.status != "open":
        raise AccountClosed(f"account {account.account_id!r} is closed")
    limit_minor = parse_amount(
        overdraft_limit, registry.exponent(account.currency), allow_zero=True
    )
    return OverdraftChange(
        account_id=account.account_id,
        limit_minor=limit_minor,
        previous_minor=account.overdraft_limit_minor,
    )


def check_agent(account: AccountRecord, field: str = "account_id") -> None:
    """Freezing, depositing and being paid are for open agent accounts."""
    if account.status != "open":
        raise AccountClosed(f"account {account.account_id!r} is closed")
    if account.kind is not AccountKind.AGENT:
        raise InvalidEntry(
            f"account {account.account_id!r} is a {account.kind} account, not an agent account",
            field=field,
        )


def check_currency(given: str | None, expected: str, registry: CurrencyRegistry) -> None:
    """A currency the caller names (None: none named) is known and is the account's."""
    if given is None:
        return
    registry.exponent(given)
    if given != expected:
        raise CurrencyMismatch(
            f"currency {given} does not match the account's {expected}",
            given=given,
            expected=expected,
        )


def check_available(account: AccountRecord, debit_minor: int, registry: CurrencyRegistry) -> None:
    """An account's available balance may not go below minus its overdraft limit (an agent's;
    every other bounded account's is zero). External and operating accounts are unbounded."""
    if account.kind in _UNBOUNDED_KINDS:
        return
    limit = account.overdraft_limit_minor if account.kind is AccountKind.AGENT else 0
    if account.balance_minor - debit_minor < -limit:
        exponent = registry.exponent(account.currency)
        raise InsufficientFunds(
            f"account {account.account_id!r} has "
            f"{format_minor(account.balance_minor, exponent)} {account.currency} available "
            f"(overdraft {format_minor(limit, exponent)}), "
            f"needs {format_minor(debit_minor, exponent)}",
            account_id=account.account_id,
        )


def check_record_target(account: AccountRecord, currency: str, registry: CurrencyRegistry) -> None:
    """A LedgerEntry v1.0 record posts to an open agent or operating account of its currency."""
    if account.kind not in _RECORD_TARGET_KINDS:
        raise InvalidEntry(
            f"records post to agent or operating accounts, not {account.kind}",
            field="account_id",
        )
    if account.status != "open":
        raise AccountClosed(f"account {account.account_id!r} is closed")
    check_currency(currency, account.currency, registry)
