"""The three LedgerEntry v1.0 examples of DESIGN section 8, with real UUIDs for ``uuid-1``."""

from __future__ import annotations

from typing import Any

TENANT = "tenant_a"

EXAMPLES: list[dict[str, Any]] = [
    {
        "ledger_entry_id": "7d0b6f0e-4c1e-4b8a-9a51-0c6f1e2a0001",
        "tenant_id": TENANT,
        "project_id": "project_qa",
        "env": "prod",
        "asset_id": None,
        "task_id": "task-procure-123",
        "external_ref": "ipvendor_tx_789",
        "direction": "OUT",
        "amount": "20.00",
        "currency": "USD",
        "reason": "PROCUREMENT",
        "category": "NETWORK_COST",
        "tags": ["ip", "residential", "uk"],
        "meta": {"provider": "iproyal", "quantity": 100, "sku": "ip.residential.uk.*"},
        "occurred_at": "2025-01-15T10:00:00Z",
    },
    {
        "ledger_entry_id": "7d0b6f0e-4c1e-4b8a-9a51-0c6f1e2a0002",
        "tenant_id": TENANT,
        "project_id": "project_qa",
        "env": "prod",
        "asset_id": "vps-asset-id-1",
        "task_id": "task-e2e-456",
        "external_ref": None,
        "direction": "OUT",
        "amount": "0.05",
        "currency": "USD",
        "reason": "TASK_BURN",
        "category": "CLOUD_COST",
        "tags": ["qa", "e2e"],
        "meta": {"allocation_strategy": "proportional_runtime", "runtime_ms": 120000},
        "occurred_at": "2025-01-16T08:30:00Z",
    },
    {
        "ledger_entry_id": "7d0b6f0e-4c1e-4b8a-9a51-0c6f1e2a0003",
        "tenant_id": TENANT,
        "project_id": None,
        "env": "prod",
        "asset_id": "product-ticket-asset-id",
        "task_id": "task-sale-999",
        "external_ref": "stripe_charge_abc",
        "direction": "IN",
        "amount": "120.00",
        "currency": "USD",
        "reason": "SALE_REVENUE",
        "category": "PRODUCT_REVENUE",
        "tags": ["taylor_swift", "london"],
        "meta": {"fee_amount": 3.5, "fee_currency": "USD", "payment_provider": "stripe"},
        "occurred_at": "2025-01-17T19:45:00.250000Z",
    },
]


# ---------------------------------------------------------------------------------------------
# A seeded data set for reports: deterministic pseudo-random records over every dimension.

import random  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402

from ledger_db.errors import InsufficientFunds  # noqa: E402

DIMENSION_VALUES: dict[str, list[Any]] = {
    "tenant_id": ["tenant_a", "tenant_b"],
    "project_id": ["project_qa", "project_web", None],
    "env": ["prod", "staging", "dev"],
    "asset_id": ["vps-asset-id-1", "vps-asset-id-2", "ip-pool-uk", None],
    "task_id": ["task-e2e-456", "task-e2e-457", "task-procure-123", None],
    "external_ref": [None, None, "inv-1", "inv-2", "inv-3"],
    "reason": ["PROCUREMENT", "TASK_BURN", "SUBSCRIPTION", "REFUND"],
    "category": ["CLOUD_COST", "NETWORK_COST", "INFRA_COST", "OTHER_REVENUE"],
    "currency": ["USD", "USD", "EUR", "USDT"],
}
TAG_VALUES = ["ip", "qa", "e2e", "uk", "black_friday"]


def seeded_records(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` valid v1.0 records spread over two tenants, three currencies and two months."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    records: list[dict[str, Any]] = []
    for index in range(count):
        record = {name: rng.choice(values) for name, values in DIMENSION_VALUES.items()}
        if not (record["asset_id"] or record["task_id"] or record["external_ref"]):
            record["task_id"] = "task-e2e-456"
        exponent = {"USD": 2, "EUR": 2, "USDT": 6}[record["currency"]]
        minor = rng.randint(1, 500_000)
        text = str(minor).rjust(exponent + 1, "0")
        record["amount"] = f"{text[:-exponent]}.{text[-exponent:]}"
        record["direction"] = "IN" if record["category"] == "OTHER_REVENUE" else "OUT"
        tags = rng.sample(TAG_VALUES, rng.randint(0, 3))
        record["tags"] = tags or None
        record["meta"] = {"seq": index}
        occurred = start + timedelta(seconds=rng.randint(0, 59 * 86_400))
        record["occurred_at"] = occurred.strftime("%Y-%m-%dT%H:%M:%SZ")
        record["ledger_entry_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        records.append(record)
    return records


def minor_of(record: dict[str, Any]) -> int:
    exponent = {"USD": 2, "EUR": 2, "USDT": 6}[record["currency"]]
    whole, _, fraction = record["amount"].partition(".")
    return int(whole) * 10**exponent + int(fraction.ljust(exponent, "0") or 0)


class Clock:
    """A clock the test moves by hand: the ledger's ``recorded_at`` comes from it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 1, 20, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def set(self, value: datetime) -> None:
        self.now = value

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def generate_ledger(ledger: Any, clock: Clock, *, seed: int = 1, operations: int = 60) -> None:
    """Random but valid activity over two tenants and two currencies: deposits, every hold
    outcome, recorded v1.0 entries, reversals, spread over several days."""
    rng = random.Random(seed)
    tenants = ["tenant_a", "tenant_b"]
    agents: dict[tuple[str, str], list[str]] = {}
    for tenant in tenants:
        for currency in ("USD", "USDT"):
            for number in range(3):
                account_id = f"agent-{currency.lower()}-{number}"
                ledger.open_account(
                    tenant_id=tenant,
                    currency=currency,
                    idempotency_key=f"open-{account_id}",
                    account_id=account_id,
                )
                ledger.deposit(
                    account_id, "1000", tenant_id=tenant, idempotency_key=f"seed-{account_id}"
                )
                agents.setdefault((tenant, currency), []).append(account_id)
    open_holds: list[tuple[str, str, str]] = []
    records: list[tuple[str, str]] = []
    for step in range(operations):
        clock.advance(hours=rng.randint(1, 20))
        tenant = rng.choice(tenants)
        currency = rng.choice(["USD", "USDT"])
        payer, payee = rng.sample(agents[(tenant, currency)], 2)
        choice = rng.random()
        key = f"op-{seed}-{step}"
        if choice < 0.35:
            try:
                hold = ledger.freeze(
                    payer,
                    f"{rng.randint(1, 90)}.{rng.randint(0, 99):02d}",
                    "NEGOTIATION",
                    tenant_id=tenant,
                    idempotency_key=key,
                    ttl_seconds=3600 * rng.randint(1, 30),
                    payee_account_id=payee,
                )
            except InsufficientFunds:
                continue
            open_holds.append((tenant, hold.hold_id, hold.amount))
        elif choice < 0.55 and open_holds:
            tenant, hold_id, _ = open_holds.pop(rng.randrange(len(open_holds)))
            hold = ledger.get_hold(hold_id, tenant_id=tenant)
            if clock() >= hold.expires_at:
                ledger.expire_hold(hold_id, tenant_id=tenant, idempotency_key=key)
            elif rng.random() < 0.6:
                ledger.capture_hold(
                    hold_id,
                    f"order-{step}",
                    tenant_id=tenant,
                    idempotency_key=key,
                    amount=None
                    if rng.random() < 0.5
                    else ledger.registry.to_text(max(1, hold.amount_minor // 3), hold.currency),
                )
                ledger.finalize_hold(hold_id, tenant_id=tenant, idempotency_key=key + "-fin")
            else:
                ledger.release_hold(hold_id, tenant_id=tenant, idempotency_key=key)
        elif choice < 0.85:
            record = {
                "tenant_id": tenant,
                "env": "prod",
                "task_id": f"task-{step % 5}",
                "external_ref": f"bill-{step}",
                "direction": rng.choice(["IN", "OUT"]),
                "amount": f"{rng.randint(0, 99)}.{rng.randint(1, 99):02d}",
                "currency": currency,
                "reason": "SUBSCRIPTION",
                "category": "CLOUD_COST",
            }
            result = ledger.record_entries([record], tenant_id=tenant, idempotency_key=key)
            records.append((tenant, result.transaction_id))
        elif records:
            tenant, transaction_id = records.pop(rng.randrange(len(records)))
            ledger.reverse_transaction(transaction_id, tenant_id=tenant, idempotency_key=key)
    # What the HoldWorkflows' timers would have done by now.
    for tenant, hold_id, _ in open_holds:
        if clock() >= ledger.get_hold(hold_id, tenant_id=tenant).expires_at:
            ledger.expire_hold(hold_id, tenant_id=tenant, idempotency_key=f"timer-{hold_id}")
