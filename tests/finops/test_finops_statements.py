"""Monthly statements: opening + entries = closing, byte-identical regeneration, boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from finops_data import EXAMPLES, TENANT

from ledger_db import Ledger
from ledger_db.finops import account_statement, render_statement, tenant_statement


def busy_month(ledger: Ledger, clock: Any) -> None:
    clock.set(datetime(2025, 1, 5, 9, 0, tzinfo=UTC))
    ledger.open_account(tenant_id=TENANT, currency="USD", idempotency_key="a", account_id="agent-1")
    ledger.open_account(tenant_id=TENANT, currency="USD", idempotency_key="b", account_id="agent-2")
    ledger.deposit("agent-1", "500.00", tenant_id=TENANT, idempotency_key="d1")
    clock.set(datetime(2025, 1, 31, 23, 59, 59, 999000, tzinfo=UTC))
    ledger.record_entries(EXAMPLES, tenant_id=TENANT, idempotency_key="examples")
    hold = ledger.freeze(
        "agent-1",
        "40.00",
        "NEGOTIATION",
        tenant_id=TENANT,
        idempotency_key="f1",
        ttl_seconds=600,
        payee_account_id="agent-2",
    )
    clock.set(datetime(2025, 2, 1, 0, 0, tzinfo=UTC))
    ledger.capture_hold(
        hold.hold_id, "order-1", tenant_id=TENANT, idempotency_key="c1", amount="30.00"
    )
    ledger.finalize_hold(hold.hold_id, tenant_id=TENANT, idempotency_key="z1")
    clock.set(datetime(2025, 2, 14, tzinfo=UTC))
    ledger.deposit("agent-1", "1.01", tenant_id=TENANT, idempotency_key="d2")
    clock.set(datetime(2025, 3, 1, tzinfo=UTC))


def test_opening_plus_entries_is_closing_and_the_boundary_is_exact(
    ledger: Ledger, clock: Any
) -> None:
    busy_month(ledger, clock)
    with ledger.engine.connect() as connection:
        january = account_statement(
            connection, tenant_id=TENANT, account_id="agent-1", month="2025-01"
        )
        february = account_statement(
            connection, tenant_id=TENANT, account_id="agent-1", month="2025-02"
        )
        operating_jan = account_statement(
            connection, tenant_id=TENANT, account_id="@operating:USD", month="2025-01"
        )
        operating_feb = account_statement(
            connection, tenant_id=TENANT, account_id="@operating:USD", month="2025-02"
        )
        tenant_jan = tenant_statement(connection, tenant_id=TENANT, month="2025-01")
        tenant_feb = tenant_statement(connection, tenant_id=TENANT, month="2025-02")
    # The freeze at 23:59:59.999 on 31 January is January's; the capture at 00:00 is February's.
    assert [line.reason for line in january.lines] == ["TOP_UP", "HOLD_FREEZE"]
    assert (january.opening_minor, january.closing_minor) == (0, 46000)
    assert february.opening_minor == january.closing_minor
    assert [line.reason for line in february.lines] == ["HOLD_RELEASE", "TOP_UP"]
    assert february.closing_minor == 46000 + 1000 + 101
    assert len(operating_jan.lines) == 3 and operating_jan.closing_minor == 9995
    assert operating_feb.lines == [] and operating_feb.opening_minor == 9995
    for statement in (january, february, operating_jan, tenant_jan, tenant_feb):
        statement.check()
    totals = {total.currency: total for total in tenant_jan.totals}
    # Own funds: 500.00 deposited + 99.95 recorded net = 599.95 at the end of January.
    assert totals["USD"].closing_minor == 59995
    feb_totals = {total.currency: total for total in tenant_feb.totals}
    assert feb_totals["USD"].opening_minor == 59995
    assert feb_totals["USD"].closing_minor == 59995 + 101


def test_the_occurred_at_clock_is_available_too(ledger: Ledger, clock: Any) -> None:
    busy_month(ledger, clock)
    with ledger.engine.connect() as connection:
        statement = account_statement(
            connection,
            tenant_id=TENANT,
            account_id="@operating:USD",
            month="2025-01",
            time_field="occurred_at",
        )
    assert [line.ledger_entry_id for line in statement.lines] == [
        record["ledger_entry_id"] for record in EXAMPLES
    ]


@pytest.mark.parametrize("statement_format", ["json", "csv", "pdf"])
def test_regenerated_statements_are_byte_identical(
    ledger: Ledger, clock: Any, statement_format: str
) -> None:
    busy_month(ledger, clock)
    outputs = []
    for _ in range(2):
        with ledger.engine.connect() as connection:
            statement = tenant_statement(connection, tenant_id=TENANT, month="2025-01")
        outputs.append(render_statement(statement, statement_format))
        clock.advance(days=3)  # time passing changes nothing in a closed month
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 200
    if statement_format == "pdf":
        assert outputs[0].startswith(b"%PDF")


def test_a_tampered_statement_is_refused_before_writing(
    ledger: Ledger, clock: Any, tmp_path: Any
) -> None:
    from ledger_db.finops import StatementMismatch, write_statement

    busy_month(ledger, clock)
    with ledger.engine.connect() as connection:
        statement = account_statement(
            connection, tenant_id=TENANT, account_id="agent-1", month="2025-01"
        )
    broken = statement.model_copy(update={"closing_minor": statement.closing_minor + 1})
    target = tmp_path / "statement.json"
    with pytest.raises(StatementMismatch):
        write_statement(broken, "json", target)
    assert not target.exists()
    write_statement(statement, "json", target)
    assert target.read_bytes() == render_statement(statement, "json")


def test_month_range_edges() -> None:
    from ledger_db.finops import month_range

    start, end = month_range("2024-02")
    assert (start, end - timedelta(microseconds=1)) == (
        datetime(2024, 2, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
    )
