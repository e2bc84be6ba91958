"""Reports: every dimension against a plain recomputation, and the schema's two questions."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from finops_data import EXAMPLES, TENANT, minor_of, seeded_records

from ledger_db import Ledger
from ledger_db.finops import DIMENSIONS, EntryFilter, import_text, run_report

RECORD_FIELD = {
    "tenant": "tenant_id",
    "project": "project_id",
    "env": "env",
    "task": "task_id",
    "asset": "asset_id",
    "external_ref": "external_ref",
    "reason": "reason",
    "category": "category",
    "direction": "direction",
}


def seed(ledger: Ledger, count: int = 600) -> list[dict[str, Any]]:
    records = seeded_records(count)
    text = "".join(json.dumps(record) + "\n" for record in records)
    import_text(ledger, text, "jsonl")
    return records


def recompute(
    records: list[dict[str, Any]], group_by: list[str], keep: Any = lambda r: True
) -> dict[tuple[Any, ...], list[int]]:
    totals: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for record in records:
        if not keep(record):
            continue
        keys: list[list[Any]] = [[]]
        for name in group_by:
            if name == "tag":
                values = record["tags"] or []
            elif name == "month":
                values = [record["occurred_at"][:7]]
            elif name == "day":
                values = [record["occurred_at"][:10]]
            elif name == "account":
                values = [f"@operating:{record['currency']}"]
            else:
                values = [record[RECORD_FIELD[name]]]
            keys = [[*key, value] for key in keys for value in values]
        for key in keys:
            current = totals[(*key, record["currency"])]
            current[0] += 1
            current[1 if record["direction"] == "IN" else 2] += minor_of(record)
    return dict(totals)


def as_dict(report: Any) -> dict[tuple[Any, ...], list[int]]:
    return {
        (*row.group.values(), row.currency): [row.count, row.in_minor, row.out_minor]
        for row in report.rows
    }


def test_group_by_every_dimension_matches_a_plain_recomputation(ledger: Ledger) -> None:
    records = seed(ledger)
    with ledger.engine.connect() as connection:
        for dimension in DIMENSIONS:
            report = run_report(connection, EntryFilter(), [dimension])
            assert as_dict(report) == recompute(records, [dimension]), dimension
        for pair in (["project", "month"], ["tag", "category"], ["tenant", "env", "day"]):
            report = run_report(connection, EntryFilter(), pair)
            assert as_dict(report) == recompute(records, pair), pair


def test_filters_match_a_plain_recomputation(ledger: Ledger) -> None:
    records = seed(ledger)
    start, end = datetime(2025, 1, 10, tzinfo=UTC), datetime(2025, 2, 3, tzinfo=UTC)
    cases: list[tuple[EntryFilter, Any]] = [
        (EntryFilter(tenant_id="tenant_b"), lambda r: r["tenant_id"] == "tenant_b"),
        (
            EntryFilter(project_id="project_qa", env="prod"),
            lambda r: r["project_id"] == "project_qa" and r["env"] == "prod",
        ),
        (EntryFilter(tag="uk"), lambda r: "uk" in (r["tags"] or [])),
        (
            EntryFilter(asset_id="vps-asset-id-1", reason="TASK_BURN"),
            lambda r: r["asset_id"] == "vps-asset-id-1" and r["reason"] == "TASK_BURN",
        ),
        (EntryFilter(external_ref="inv-2"), lambda r: r["external_ref"] == "inv-2"),
        (
            EntryFilter(task_id="task-e2e-457", category="CLOUD_COST"),
            lambda r: r["task_id"] == "task-e2e-457" and r["category"] == "CLOUD_COST",
        ),
        (
            EntryFilter(from_ts=start, to_ts=end),
            lambda r: "2025-01-10" <= r["occurred_at"] < "2025-02-03",
        ),
        (EntryFilter().with_month("2025-02"), lambda r: r["occurred_at"].startswith("2025-02")),
    ]
    with ledger.engine.connect() as connection:
        for entry_filter, keep in cases:
            report = run_report(connection, entry_filter, ["category"])
            assert as_dict(report) == recompute(records, ["category"], keep), entry_filter


def test_the_schemas_two_questions(ledger: Ledger) -> None:
    # Noise: another tenant with the same IDs, and near misses on every dimension.
    noise = [{**record, "tenant_id": "tenant_b"} for record in seeded_records(200)]
    ip = EXAMPLES[0]
    near_misses = [
        {"project_id": "project_web"},
        {"env": "staging"},
        {"category": "CLOUD_COST"},
        {"occurred_at": "2025-02-01T00:00:00Z"},
        {"occurred_at": "2024-12-31T23:59:59.999000Z"},
    ]
    for index, change in enumerate(near_misses):
        noise.append({**ip, **change, "ledger_entry_id": f"00000000-0000-4000-8000-{index:012d}"})
    import_text(ledger, "".join(json.dumps(record) + "\n" for record in noise), "jsonl")
    ledger.record_entries(EXAMPLES, tenant_id=TENANT, idempotency_key="examples")
    # The VPS over more tasks and months, one burn reversed (it must net out) and re-recorded.
    burns = [
        ("task-e2e-456", "0.07", "2025-02-02T00:00:00Z"),
        ("task-e2e-999", "1.25", "2025-03-05T00:00:00Z"),
    ]
    vps = [
        {
            **EXAMPLES[1],
            "ledger_entry_id": None,
            "task_id": task,
            "amount": amount,
            "occurred_at": datetime.fromisoformat(when.replace("Z", "+00:00")),
        }
        for task, amount, when in burns
    ]
    result = ledger.record_entries(vps, tenant_id=TENANT, idempotency_key="vps")
    ledger.reverse_transaction(result.transaction_id, tenant_id=TENANT, idempotency_key="rev")
    ledger.record_entries(vps[:1], tenant_id=TENANT, idempotency_key="vps-again")
    with ledger.engine.connect() as connection:
        # 1. "How much IP cost did project QA burn this month?" (January 2025, in prod).
        question = EntryFilter(
            tenant_id=TENANT, project_id="project_qa", env="prod", category="NETWORK_COST"
        ).with_month("2025-01")
        report = run_report(connection, question, [])
        assert [(row.currency, row.total_out, row.count) for row in report.rows] == [
            ("USD", "20.00", 1)
        ]
        # 2. "What did this VPS cost over its life, by task?"
        report = run_report(
            connection, EntryFilter(tenant_id=TENANT, asset_id="vps-asset-id-1"), ["task"]
        )
    assert [
        (row.group["task"], row.currency, row.total_out, row.net, row.count) for row in report.rows
    ] == [
        ("task-e2e-456", "USD", "0.19", "-0.12", 4),
        ("task-e2e-999", "USD", "1.25", "0.00", 2),
    ]


def test_hold_movements_and_counterparts_are_left_out_by_default(ledger: Ledger) -> None:
    ledger.open_account(tenant_id=TENANT, currency="USD", idempotency_key="a", account_id="payer")
    ledger.open_account(tenant_id=TENANT, currency="USD", idempotency_key="b", account_id="payee")
    ledger.deposit("payer", "100.00", tenant_id=TENANT, idempotency_key="d")
    hold = ledger.freeze(
        "payer",
        "30.00",
        "NEGOTIATION",
        tenant_id=TENANT,
        idempotency_key="f",
        ttl_seconds=600,
        payee_account_id="payee",
    )
    ledger.capture_hold(
        hold.hold_id, "order-1", tenant_id=TENANT, idempotency_key="c", amount="25.00"
    )
    ledger.finalize_hold(hold.hold_id, tenant_id=TENANT, idempotency_key="z", fee_bps=100)
    other = ledger.freeze(
        "payer", "10.00", "NEGOTIATION", tenant_id=TENANT, idempotency_key="g", ttl_seconds=600
    )
    ledger.release_hold(other.hold_id, tenant_id=TENANT, idempotency_key="r")
    with ledger.engine.connect() as connection:
        default = run_report(connection, EntryFilter(tenant_id=TENANT), ["reason"])
        everything = run_report(
            connection,
            EntryFilter(tenant_id=TENANT, include_internal=True, include_counterparts=True),
            ["reason"],
        )
    rows = {row.group["reason"]: (row.count, row.net) for row in default.rows}
    assert rows == {
        "TOP_UP": (1, "100.00"),
        "ORDER_CAPTURE": (1, "-25.00"),
        "SALE_REVENUE": (1, "24.75"),
        "PLATFORM_FEE": (1, "0.25"),
    }
    assert {row.group["reason"] for row in everything.rows} >= {"HOLD_FREEZE", "HOLD_RELEASE"}
    assert sum(row.net_minor for row in everything.rows) == 0


@pytest.mark.parametrize("bad", ["weekday", "tenant,unknown"])
def test_unknown_dimension_is_refused(bad: str) -> None:
    from ledger_db.errors import InvalidEntry
    from ledger_db.finops import parse_group_by

    with pytest.raises(InvalidEntry):
        parse_group_by(bad)


def test_totals_past_2_63_are_exact_on_both_engines(ledger: Ledger, clock: Any) -> None:
    """SQLite's sum() raised a raw ``integer overflow`` once a total passed 2^63 - 1 (every
    balance stays in range here: IN, OUT, IN of the maximum amount). Reports, reconciliation,
    statements and ``get_balance(as_of=...)`` all sum exactly now."""
    from ledger_db.finops import account_statement, parse_bill, reconcile_bill

    top = 2**63 - 1
    amount = ledger.registry.to_text(top, "USD")
    ledger.open_account(tenant_id=TENANT, currency="USD", idempotency_key="x", account_id="x")
    for step, direction in enumerate(("IN", "OUT", "IN")):
        clock.advance(minutes=1)
        entry = {
            "external_ref": "big",
            "direction": direction,
            "amount": amount,
            "currency": "USD",
            "reason": "ADJUSTMENT",
            "category": "OTHER_REVENUE",
        }
        ledger.record_entries(
            [entry], tenant_id=TENANT, idempotency_key=f"big-{step}", account_id="x"
        )
    with ledger.engine.connect() as connection:
        report = run_report(connection, EntryFilter(tenant_id=TENANT), [])
        both_sides = run_report(
            connection, EntryFilter(tenant_id=TENANT, include_counterparts=True), ["account"]
        )
        bill = parse_bill(f"external_ref,amount,currency,date\nbig,-{amount},USD,2025-01-20\n")
        reconciliation = reconcile_bill(connection, bill, tenant_id=TENANT)
        statement = account_statement(connection, tenant_id=TENANT, account_id="x", month="2025-01")
    (row,) = report.rows
    assert (row.count, row.in_minor, row.out_minor, row.net_minor) == (3, 2 * top, top, top)
    external = next(r for r in both_sides.rows if r.group["account"] == "@external:USD")
    assert (external.in_minor, external.out_minor) == (top, 2 * top)
    assert [(line.status, line.ledger_amount_minor) for line in reconciliation.lines] == [
        ("matched", -top)
    ]
    assert (statement.opening_minor, statement.in_minor, statement.out_minor) == (0, 2 * top, top)
    assert statement.closing_minor == top
    balance = ledger.get_balance("x", tenant_id=TENANT, as_of=clock())
    assert balance.posted_minor == top
    assert ledger.verify_journal() == []
