"""The requests of the ledger's write operations, checked before anything is read.

Each ``check_*_request`` runs the request's own checks in precedence order (tenant, the IDs it
names, the idempotency key, then its fields in signature order) and returns a frozen record
whose :meth:`canonical` form is what the idempotency request hash covers. The amount stays
decimal text until the account's currency is known; the hash uses its exact decimal value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger_db import limits
from ledger_db.errors import InvalidEntry
from ledger_db.ids import derive_hold_id
from ledger_db.money import CurrencyRegistry, canonical_decimal
from ledger_db.validation import (
    check_account_id,
    check_idempotency_key,
    check_identifier,
    check_instant,
    check_meta,
    check_optional_identifier,
    check_tenant_id,
    check_text,
    check_ttl_seconds,
    iso,
)

__all__ = [
    "CaptureRequest",
    "DepositRequest",
    "FreezeRequest",
    "check_capture_request",
    "check_deposit_request",
    "check_freeze_request",
]


def _check_hold_id(hold_id: object) -> str:
    return check_identifier(hold_id, "hold_id", length_max=limits.id_length_max)


@dataclass(frozen=True)
class DepositRequest:
    account_id: str
    amount: object
    currency: str | None
    occurred_at: datetime | None
    # reason, category, env, project_id, external_ref and meta: what both postings carry.
    labels: Mapping[str, Any]

    def canonical(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "amount": canonical_decimal(self.amount),
            "currency": self.currency,
            **self.labels,
            "occurred_at": iso(self.occurred_at),
        }


def check_deposit_request(
    *,
    tenant_id: str,
    account_id: str,
    idempotency_key: str,
    amount: object,
    currency: str | None,
    external_ref: str | None,
    reason: str,
    category: str,
    meta: Mapping[str, Any] | None,
    occurred_at: datetime | None,
    project_id: str | None,
    env: str,
    registry: CurrencyRegistry,
) -> DepositRequest:
    check_tenant_id(tenant_id)
    check_account_id(account_id)
    check_idempotency_key(idempotency_key)
    if currency is not None:
        registry.exponent(currency)
    labels = {
        "external_ref": check_optional_identifier(external_ref, "external_ref"),
        "reason": check_text(reason, "reason"),
        "category": check_text(category, "category"),
        "env": check_identifier(env, "env", length_max=limits.env_length_max),
        "project_id": check_optional_identifier(project_id, "project_id"),
        "meta": check_meta(meta),
    }
    if occurred_at is not None:
        occurred_at = check_instant(occurred_at, "occurred_at")
    return DepositRequest(account_id, amount, currency, occurred_at, labels)


@dataclass(frozen=True)
class FreezeRequest:
    account_id: str
    amount: object
    reason: str
    ttl_seconds: int
    currency: str | None
    payee_account_id: str | None
    hold_id: str
    # meta, project_id, env and task_id: stored on the hold, carried by its postings.
    labels: Mapping[str, Any]

    def canonical(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "amount": canonical_decimal(self.amount),
            "reason": self.reason,
            "ttl_seconds": self.ttl_seconds,
            "currency": self.currency,
            "payee_account_id": self.payee_account_id,
            "hold_id": self.hold_id,
            **self.labels,
        }


def check_freeze_request(
    *,
    tenant_id: str,
    account_id: str,
    idempotency_key: str,
    amount: object,
    reason: str,
    ttl_seconds: int,
    currency: str | None,
    payee_account_id: str | None,
    hold_id: str | None,
    meta: Mapping[str, Any] | None,
    project_id: str | None,
    env: str,
    task_id: str | None,
    registry: CurrencyRegistry,
) -> FreezeRequest:
    """The hold's ID is the caller's or derived from the idempotency key; the payee, if named
    now, is not the paying account."""
    check_tenant_id(tenant_id)
    check_account_id(account_id)
    check_idempotency_key(idempotency_key)
    check_text(reason, "reason")
    check_ttl_seconds(ttl_seconds)
    if currency is not None:
        registry.exponent(currency)
    if payee_account_id is not None:
        check_account_id(payee_account_id, field="payee_account_id")
        if payee_account_id == account_id:
            raise InvalidEntry("the payee cannot be the paying account", field="payee_account_id")
    hold_id = _check_hold_id(hold_id or derive_hold_id(tenant_id, idempotency_key))
    labels = {
        "meta": check_meta(meta),
        "project_id": check_optional_identifier(project_id, "project_id"),
        "task_id": check_optional_identifier(task_id, "task_id"),
        "env": check_identifier(env, "env", length_max=limits.env_length_max),
    }
    return FreezeRequest(
        account_id, amount, reason, ttl_seconds, currency, payee_account_id, hold_id, labels
    )


@dataclass(frozen=True)
class CaptureRequest:
    hold_id: str
    order_id: str
    amount: object | None
    currency: str | None
    payee_account_id: str | None

    def canonical(self) -> dict[str, Any]:
        return {
            "hold_id": self.hold_id,
            "order_id": self.order_id,
            "amount": None if self.amount is None else canonical_decimal(self.amount),
            "currency": self.currency,
            "payee_account_id": self.payee_account_id,
        }


def check_capture_request(
    *,
    tenant_id: str,
    hold_id: str,
    order_id: str,
    idempotency_key: str,
    amount: object | None,
    currency: str | None,
    payee_account_id: str | None,
    registry: CurrencyRegistry,
) -> CaptureRequest:
    check_tenant_id(tenant_id)
    _check_hold_id(hold_id)
    check_identifier(order_id, "order_id")
    check_idempotency_key(idempotency_key)
    if currency is not None:
        registry.exponent(currency)
    if payee_account_id is not None:
        check_account_id(payee_account_id, field="payee_account_id")
    return CaptureRequest(hold_id, order_id, amount, currency, payee_account_id)
