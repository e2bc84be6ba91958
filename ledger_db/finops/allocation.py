"""Allocating an asset's cost over tasks by weights, with exact integer rounding.

The seed's amortization scenario: a VPS costs 10.00 USD; QA tasks ran on it for various
``runtime_ms``; each task burns a share of the cost proportional to its runtime. Shares are
integer minor units computed by the largest remainder method, so they always add up to the
whole: the floor of each exact share first, then one minor unit each to the largest fractional
remainders (ties broken by task ID so that the split is deterministic).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from ledger_db.errors import InvalidAmount, InvalidEntry
from ledger_db.models import LedgerEntryInput, TransactionResult
from ledger_db.money import default_registry

__all__ = [
    "Allocation",
    "AllocationShare",
    "allocate_cost",
    "largest_remainder",
    "record_allocation",
]


def largest_remainder(total_minor: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Splits ``total_minor`` over ``weights`` (non-negative integers, positive sum) exactly."""
    if total_minor < 0:
        raise InvalidAmount("the amount to allocate must not be negative")
    if not weights:
        raise InvalidEntry("nothing to allocate over: no weights", field="weights")
    for key, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise InvalidEntry(f"weight of {key!r} must be a non-negative integer", field="weights")
    weight_total = sum(weights.values())
    if weight_total <= 0:
        raise InvalidEntry("the weights add up to zero", field="weights")
    floors: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for key, weight in weights.items():
        share, remainder = divmod(total_minor * weight, weight_total)
        floors[key] = share
        remainders.append((remainder, key))
    left = total_minor - sum(floors.values())
    # Largest remainder first; equal remainders go to the smaller key, deterministically.
    remainders.sort(key=lambda item: (-item[0], item[1]))
    for _, key in remainders[:left]:
        floors[key] += 1
    assert sum(floors.values()) == total_minor
    return floors


class AllocationShare(BaseModel):
    """One task's part of the cost."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    weight: int
    amount_minor: int


class Allocation(BaseModel):
    """A whole cost split over tasks; ``sum(shares) == amount_minor`` always."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    asset_id: str
    currency: str
    amount_minor: int
    weight_name: str
    shares: list[AllocationShare]


def allocate_cost(
    *,
    tenant_id: str,
    asset_id: str,
    amount: str,
    currency: str,
    weights: Mapping[str, int],
    weight_name: str = "runtime_ms",
) -> Allocation:
    """The split of ``amount`` (decimal text) over tasks by ``weights``; nothing is written."""
    total_minor = default_registry().to_minor(amount, currency)
    split = largest_remainder(total_minor, weights)
    shares = [
        AllocationShare(task_id=task_id, weight=weights[task_id], amount_minor=split[task_id])
        for task_id in sorted(weights)
    ]
    return Allocation(
        tenant_id=tenant_id,
        asset_id=asset_id,
        currency=currency,
        amount_minor=total_minor,
        weight_name=weight_name,
        shares=shares,
    )


def allocation_entries(
    allocation: Allocation,
    *,
    project_id: str | None = None,
    env: str = "prod",
    reason: str = "TASK_BURN",
    category: str = "CLOUD_COST",
    tags: Sequence[str] | None = None,
    occurred_at: datetime | None = None,
    external_ref: str | None = None,
) -> list[LedgerEntryInput]:
    """One OUT TASK_BURN entry per task with a non-zero share (a zero share records nothing)."""
    registry = default_registry()
    entries: list[LedgerEntryInput] = []
    for share in allocation.shares:
        if share.amount_minor == 0:
            continue
        entries.append(
            LedgerEntryInput(
                tenant_id=allocation.tenant_id,
                project_id=project_id,
                env=env,
                asset_id=allocation.asset_id,
                task_id=share.task_id,
                external_ref=external_ref,
                direction="OUT",
                amount=registry.to_text(share.amount_minor, allocation.currency),
                currency=allocation.currency,
                reason=reason,
                category=category,
                tags=list(tags) if tags else None,
                meta={
                    "allocation_strategy": f"proportional_{allocation.weight_name.removesuffix('_ms')}"
                    if allocation.weight_name.endswith("_ms")
                    else f"proportional_{allocation.weight_name}",
                    allocation.weight_name: share.weight,
                    "allocated_total": registry.to_text(
                        allocation.amount_minor, allocation.currency
                    ),
                },
                occurred_at=occurred_at,
            )
        )
    return entries


def allocation_key(allocation: Allocation, **options: object) -> str:
    """A stable idempotency key for recording ``allocation`` with ``options``."""
    body = json.dumps(
        {"allocation": allocation.model_dump(mode="json"), "options": options},
        sort_keys=True,
        default=str,
    )
    return "allocate:" + hashlib.sha256(body.encode()).hexdigest()


def record_allocation(
    ledger: object,
    allocation: Allocation,
    *,
    idempotency_key: str | None = None,
    account_id: str | None = None,
    **options: object,
) -> TransactionResult:
    """Records the allocation as one balanced journal transaction (TASK_BURN / CLOUD_COST)."""
    entries = allocation_entries(allocation, **options)  # type: ignore[arg-type]
    if not entries:
        raise InvalidAmount("the allocation is zero: nothing to record")
    key = idempotency_key or allocation_key(allocation, account_id=account_id, **options)
    result: TransactionResult = ledger.record_entries(  # type: ignore[attr-defined]
        entries, tenant_id=allocation.tenant_id, idempotency_key=key, account_id=account_id
    )
    return result
