"""Provider reconciliation, cost allocation and reversal."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_db import Ledger
from ledger_db.errors import InvalidEntry, TransactionAlreadyReversed
from ledger_db.finops import (
    EntryFilter,
    allocate_cost,
    largest_remainder,
    parse_bill,
    reconcile_bill,
    record_allocation,
    run_report,
)

TENANT = "tenant_r"


def seed_costs(ledger: Ledger) -> list[tuple[str, str, str, str]]:
    """Twelve provider costs in January; returns the clean bill lines."""
    lines = []
    records = []
    for number in range(12):
        currency = "EUR" if number % 4 == 0 else "USD"
        amount = f"{number + 1}.{number:02d}"
        day = f"2025-01-{number + 2:02d}"
        records.append(
            {
                "tenant_id": TENANT,
                "env": "prod",
                "external_ref": f"inv-{number}",
                "direction": "OUT",
                "amount": amount,
                "currency": currency,
                "reason": "SUBSCRIPTION",
                "category": "CLOUD_COST",
                "occurred_at": datetime.fromisoformat(f"{day}T10:00:00+00:00"),
            }
        )
        lines.append((f"inv-{number}", amount, currency, day))
    ledger.record_entries(records, tenant_id=TENANT, idempotency_key="costs")
    # A credit note recorded as IN under its own reference, and noise outside the bill period.
    ledger.record_entries(
        [
            {
                "tenant_id": TENANT,
                "env": "prod",
                "external_ref": "credit-1",
                "direction": "IN",
                "amount": "2.50",
                "currency": "USD",
                "reason": "REFUND",
                "category": "CLOUD_COST",
                "occurred_at": datetime(2025, 1, 5, tzinfo=UTC),
            },
            {
                "tenant_id": TENANT,
                "env": "prod",
                "external_ref": "inv-march",
                "direction": "OUT",
                "amount": "9.99",
                "currency": "USD",
                "reason": "SUBSCRIPTION",
                "category": "CLOUD_COST",
                "occurred_at": datetime(2025, 3, 5, tzinfo=UTC),
            },
        ],
        tenant_id=TENANT,
        idempotency_key="credit",
    )
    lines.append(("credit-1", "-2.50", "USD", "2025-01-05"))
    return lines


def bill_text(lines: list[tuple[str, str, str, str]]) -> str:
    return "external_ref,amount,currency,date,description\n" + "".join(
        f"{ref},{amount},{currency},{day},line\n" for ref, amount, currency, day in lines
    )


def test_a_clean_bill_matches_everything(ledger: Ledger) -> None:
    lines = seed_costs(ledger)
    with ledger.engine.connect() as connection:
        report = reconcile_bill(connection, parse_bill(bill_text(lines)), tenant_id=TENANT)
    assert report.clean, report.problems()
    assert report.counts["matched"] == len(lines)


def test_each_injected_problem_is_found_and_nothing_else(ledger: Ledger) -> None:
    lines = seed_costs(ledger)
    bill = list(lines)
    del bill[3]  # inv-3 billed nowhere: missing from the bill
    bill[0] = ("inv-0", lines[0][1], "USD", lines[0][3])  # EUR in the ledger
    bill[1] = ("inv-1", "2.02", "USD", lines[1][3])  # +1 minor unit (ledger 2.01)
    bill[2] = ("inv-2", "3.01", "USD", lines[2][3])  # -1 minor unit (ledger 3.02)
    bill.append(("inv-5", lines[5][1], lines[5][2], lines[5][3]))  # duplicated line
    bill.append(("inv-unknown", "7.00", "USD", "2025-01-20"))  # not in the ledger
    with ledger.engine.connect() as connection:
        report = reconcile_bill(connection, parse_bill(bill_text(bill)), tenant_id=TENANT)
    problems = {(line.status, line.external_ref, line.difference) for line in report.problems()}
    assert problems == {
        ("currency_mismatch", "inv-0", None),
        ("amount_mismatch", "inv-1", "0.01"),
        ("amount_mismatch", "inv-2", "-0.01"),
        ("duplicated_in_bill", "inv-5", None),
        ("missing_from_ledger", "inv-unknown", None),
        ("missing_from_bill", "inv-3", None),
    }
    assert report.counts["matched"] == len(bill) - 5


def test_bad_bill_lines_are_all_reported() -> None:
    text = (
        "external_ref,amount,currency,date\n,1.00,USD,2025-01-01\nx,1.001,USD,2025-01-01\n"
        "y,1.00,XXX,2025-01-01\nz,1.00,USD,someday\n"
    )
    with pytest.raises(InvalidEntry) as raised:
        parse_bill(text)
    assert [(p["line"], p["field"]) for p in raised.value.details["problems"]] == [
        (2, "external_ref"),
        (3, "amount"),
        (4, "currency"),
        (5, "date"),
    ]


@given(
    total=st.integers(min_value=0, max_value=10**15),
    weights=st.dictionaries(
        st.text("abcdef", min_size=1, max_size=4),
        st.integers(min_value=0, max_value=10**9),
        min_size=1,
        max_size=12,
    ).filter(lambda w: sum(w.values()) > 0),
)
def test_largest_remainder_always_adds_up(total: int, weights: dict[str, int]) -> None:
    split = largest_remainder(total, weights)
    assert sum(split.values()) == total
    weight_total = sum(weights.values())
    for key, weight in weights.items():
        exact = total * weight / weight_total
        assert abs(split[key] - exact) < 1.0 + 1e-6


def test_allocation_records_task_burns_that_add_up(ledger: Ledger) -> None:
    allocation = allocate_cost(
        tenant_id=TENANT,
        asset_id="vps-asset-id-1",
        amount="10.00",
        currency="USD",
        weights={"task-a": 120000, "task-b": 120000, "task-c": 120000},
    )
    assert [share.amount_minor for share in allocation.shares] == [334, 333, 333]
    result = record_allocation(
        ledger, allocation, project_id="project_qa", occurred_at=datetime(2025, 1, 31, tzinfo=UTC)
    )
    again = record_allocation(
        ledger, allocation, project_id="project_qa", occurred_at=datetime(2025, 1, 31, tzinfo=UTC)
    )
    assert again.replayed and again.transaction_id == result.transaction_id
    with ledger.engine.connect() as connection:
        report = run_report(
            connection,
            EntryFilter(
                tenant_id=TENANT,
                asset_id="vps-asset-id-1",
                reason="TASK_BURN",
                category="CLOUD_COST",
            ),
            ["task"],
        )
    assert [(row.group["task"], row.total_out) for row in report.rows] == [
        ("task-a", "3.34"),
        ("task-b", "3.33"),
        ("task-c", "3.33"),
    ]
    primary = [entry for entry in result.entries if not entry.counterpart]
    assert primary[0].meta["allocation_strategy"] == "proportional_runtime"
    assert primary[0].meta["runtime_ms"] == 120000


def test_reversal_links_the_original_and_happens_once(ledger: Ledger) -> None:
    seed_costs(ledger)
    with ledger.engine.connect() as connection:
        before = run_report(connection, EntryFilter(tenant_id=TENANT), [])
    original = ledger.record_entries(
        [
            {
                "tenant_id": TENANT,
                "env": "prod",
                "external_ref": "oops",
                "direction": "OUT",
                "amount": "5.00",
                "currency": "USD",
                "reason": "PROCUREMENT",
                "category": "NETWORK_COST",
            }
        ],
        tenant_id=TENANT,
        idempotency_key="oops",
    )
    reversal = ledger.reverse_transaction(
        original.transaction_id, tenant_id=TENANT, idempotency_key="rev-oops"
    )
    assert reversal.reverses_transaction_id == original.transaction_id
    assert {entry.meta["reverses"] for entry in reversal.entries} == {original.transaction_id}
    assert {entry.meta["reverses_ledger_entry_id"] for entry in reversal.entries} == {
        entry.ledger_entry_id for entry in original.entries
    }
    assert [entry.direction for entry in reversal.entries] == [
        "IN" if entry.direction == "OUT" else "OUT" for entry in original.entries
    ]
    with pytest.raises(TransactionAlreadyReversed):
        ledger.reverse_transaction(
            original.transaction_id, tenant_id=TENANT, idempotency_key="rev-oops-2"
        )
    with ledger.engine.connect() as connection:
        after = run_report(connection, EntryFilter(tenant_id=TENANT), [])
    net = {row.currency: row.net_minor for row in before.rows}
    assert {row.currency: row.net_minor for row in after.rows} == net


def test_bill_amounts_follow_the_one_grammar() -> None:
    """A bill amount is the ledger's grammar with an optional leading '-' (a credit): no '+',
    no space, no exponent, no other digits; each bad line is reported at once."""
    good = parse_bill(
        "external_ref,amount,currency,date\na,-1.50,USD,2025-01-01\nb,2,USD,2025-01-01\n"
    )
    assert [line.amount_minor for line in good] == [-150, 200]
    bad = ["+1.00", " 1.00", "1.00 ", "1e2", "--1", "-", "\uff11", "1_0", "-+1", "1.", ".5"]
    text = "external_ref,amount,currency,date\n" + "".join(
        f"r{index},{amount},USD,2025-01-01\n" for index, amount in enumerate(bad)
    )
    with pytest.raises(InvalidEntry) as raised:
        parse_bill(text)
    assert [(p["line"], p["field"]) for p in raised.value.details["problems"]] == [
        (index + 2, "amount") for index in range(len(bad))
    ]
