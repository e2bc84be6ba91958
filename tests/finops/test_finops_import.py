"""Import and export of LedgerEntry v1.0 records: refusals, idempotency, exact round trips."""

from __future__ import annotations

import copy
import csv
import io
import json
from typing import Any

import pytest
import sqlalchemy as sa
from finops_data import EXAMPLES, TENANT

from ledger_db import Ledger
from ledger_db.finops import EntryFilter, ImportRejected, export_entries, import_text
from ledger_db.finops.records import FIELDS
from ledger_db.schema import journal_entries, journal_transactions


def journal_size(ledger: Ledger) -> tuple[int, int]:
    with ledger.engine.connect() as connection:
        return (
            connection.execute(
                sa.select(sa.func.count()).select_from(journal_transactions)
            ).scalar_one(),
            connection.execute(
                sa.select(sa.func.count()).select_from(journal_entries)
            ).scalar_one(),
        )


def jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def csv_text(records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS[:-1])
    for record in records:
        row = []
        for name in FIELDS[:-1]:
            value = record.get(name)
            if value is None:
                row.append("")
            elif name in ("tags", "meta"):
                row.append(json.dumps(value))
            else:
                row.append(str(value))
        writer.writerow(row)
    return buffer.getvalue()


def export(ledger: Ledger, file_format: str, **options: Any) -> str:
    output = io.StringIO()
    export_entries(ledger, EntryFilter(tenant_id=TENANT), file_format, output, **options)
    return output.getvalue()


# Each bad row: (mutation of the second example, field named in the problem).
BAD_ROWS: dict[str, tuple[Any, str]] = {
    "missing field": (lambda r: r.pop("currency"), "currency"),
    "missing reason": (lambda r: r.pop("reason"), "reason"),
    "bad uuid": (lambda r: r.update(ledger_entry_id="uuid-1"), "ledger_entry_id"),
    "negative amount": (lambda r: r.update(amount="-0.05"), "amount"),
    "too many decimals": (lambda r: r.update(amount="0.051"), "amount"),
    "unknown direction": (lambda r: r.update(direction="SIDEWAYS"), "direction"),
    "bad currency": (lambda r: r.update(currency="usd"), "currency"),
    "unknown currency": (lambda r: r.update(currency="XYZ"), "currency"),
    "bad timestamp": (lambda r: r.update(occurred_at="2025-13-01T00:00:00Z"), "occurred_at"),
    "naive timestamp": (lambda r: r.update(occurred_at="2025-01-16T08:30:00"), "occurred_at"),
    "no reference": (
        lambda r: r.update(asset_id=None, task_id=None, external_ref=None),
        "asset_id",
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
@pytest.mark.parametrize("file_format", ["jsonl", "csv", "json"])
def test_each_bad_row_is_refused_with_line_and_field(
    sqlite_ledger: Ledger, kind: str, file_format: str
) -> None:
    records = copy.deepcopy(EXAMPLES)
    mutate, field = BAD_ROWS[kind]
    mutate(records[1])
    if file_format == "jsonl":
        text, line = jsonl(records), 2
    elif file_format == "csv":
        text, line = csv_text(records), 3
    else:
        text = "[\n" + ",\n".join(json.dumps(record) for record in records) + "\n]\n"
        line = 3
    with pytest.raises(ImportRejected) as raised:
        import_text(sqlite_ledger, text, file_format)
    problems = raised.value.details["problems"]
    assert [(p["line"], p["field"]) for p in problems] == [(line, field)], problems
    assert raised.value.code == "invalid_entry"
    assert journal_size(sqlite_ledger) == (0, 0)


def test_float_only_amount_with_too_many_decimals_is_read_exactly(sqlite_ledger: Ledger) -> None:
    records = copy.deepcopy(EXAMPLES)
    # JSON numbers, not text: 0.05 is exact, 0.1 + 0.2 style binary noise must never appear,
    # and 0.051 has one decimal too many for USD.
    lines = [
        json.dumps(record).replace('"amount": "20.00"', '"amount": 20.00') for record in records
    ]
    lines[1] = lines[1].replace('"amount": "0.05"', '"amount": 0.051')
    with pytest.raises(ImportRejected) as raised:
        import_text(sqlite_ledger, "\n".join(lines) + "\n", "jsonl")
    assert [(p["line"], p["field"]) for p in raised.value.details["problems"]] == [(2, "amount")]
    lines[1] = lines[1].replace('"amount": 0.051', '"amount": 0.05')
    result = import_text(sqlite_ledger, "\n".join(lines) + "\n", "jsonl")
    assert result.applied == 3
    exported = [json.loads(line) for line in export(sqlite_ledger, "jsonl").splitlines()]
    assert [record["amount"] for record in exported] == ["20.00", "0.05", "120.00"]


def test_duplicate_ledger_entry_id_in_file_and_against_ledger(ledger: Ledger) -> None:
    records = copy.deepcopy(EXAMPLES)
    records[2]["ledger_entry_id"] = records[0]["ledger_entry_id"]
    with pytest.raises(ImportRejected) as raised:
        import_text(ledger, jsonl(records), "jsonl")
    assert [(p["line"], p["field"], p["code"]) for p in raised.value.details["problems"]] == [
        (3, "ledger_entry_id", "duplicate_ledger_entry_id")
    ]
    assert journal_size(ledger) == (0, 0)
    import_text(ledger, jsonl(EXAMPLES), "jsonl")
    changed = copy.deepcopy(EXAMPLES)
    changed[1]["amount"] = "0.06"
    with pytest.raises(ImportRejected) as raised:
        import_text(ledger, jsonl(changed), "jsonl")
    assert [(p["line"], p["field"], p["code"]) for p in raised.value.details["problems"]] == [
        (2, "ledger_entry_id", "ledger_entry_id_conflict")
    ]


def test_every_bad_row_of_a_file_is_reported_and_nothing_applied(ledger: Ledger) -> None:
    records = copy.deepcopy(EXAMPLES) * 1
    records = [copy.deepcopy(record) for record in records]
    records[0]["direction"] = "UP"
    records[2]["amount"] = "-1"
    records[2]["occurred_at"] = "yesterday"
    with pytest.raises(ImportRejected) as raised:
        import_text(ledger, jsonl(records), "jsonl")
    assert [(p["line"], p["field"]) for p in raised.value.details["problems"]] == [
        (1, "direction"),
        (3, "amount"),
        (3, "occurred_at"),
    ]
    assert journal_size(ledger) == (0, 0)


@pytest.mark.parametrize("file_format", ["json", "jsonl", "csv"])
def test_examples_round_trip_byte_for_byte(
    ledger: Ledger, clock: Any, file_format: str, tmp_path: Any
) -> None:
    ledger.record_entries(EXAMPLES, tenant_id=TENANT, idempotency_key="examples")
    first = export(ledger, file_format)
    # Re-importing what was exported applies nothing and exports the same bytes.
    clock.advance(hours=1)
    result = import_text(ledger, first, file_format)
    assert (result.applied, result.already_present) == (0, 3)
    assert export(ledger, file_format) == first
    # A fresh ledger: the records are the same bytes; only the ledger's own stamp differs.
    fresh = Ledger.from_url(f"sqlite:///{tmp_path}/fresh.db", clock=clock)
    try:
        assert import_text(fresh, first, file_format).applied == 3
        assert export(fresh, file_format, include_recorded_at=False) == export(
            ledger, file_format, include_recorded_at=False
        )
        # The interchange form (no recorded_at) is a fixed point: import it, export it, same bytes.
        interchange = export(ledger, file_format, include_recorded_at=False)
        again = Ledger.from_url(f"sqlite:///{tmp_path}/again.db", clock=clock)
        try:
            import_text(again, interchange, file_format)
            assert export(again, file_format, include_recorded_at=False) == interchange
        finally:
            again.close()
    finally:
        fresh.close()


def test_reimporting_the_same_file_applies_nothing(ledger: Ledger) -> None:
    text = jsonl(EXAMPLES)
    first = import_text(ledger, text, "jsonl")
    before = journal_size(ledger)
    second = import_text(ledger, text, "jsonl")
    assert (first.applied, second.applied, second.already_present) == (3, 0, 3)
    # The account_open record of the operating and external accounts, and one transaction.
    assert journal_size(ledger) == before == (2, 6)


def test_large_file_is_split_into_transactions_and_reimport_is_a_no_op(
    sqlite_ledger: Ledger,
) -> None:
    from finops_data import seeded_records

    records = seeded_records(1200)
    result = import_text(sqlite_ledger, jsonl(records), "jsonl")
    assert result.applied == 1200
    assert result.transactions >= 3
    again = import_text(sqlite_ledger, csv_text(records), "csv")
    assert (again.applied, again.already_present) == (0, 1200)


# --- issue 7: the whole file, validated as the ledger would, applied atomically -------------


def table_rows(ledger: Ledger) -> dict[str, list[str]]:
    """Every row of every table: equal means nothing was applied."""
    from ledger_db import schema

    with ledger.engine.connect() as connection:
        return {
            table.name: sorted(repr(tuple(row)) for row in connection.execute(sa.select(table)))
            for table in schema.metadata.sorted_tables
        }


def two_tenant_records() -> list[dict[str, Any]]:
    records = copy.deepcopy(EXAMPLES)
    for record in copy.deepcopy(EXAMPLES):
        record["tenant_id"] = "tenant_b"
        records.append(record)
    return records


def test_a_bad_row_of_another_tenant_applies_nothing(ledger: Ledger) -> None:
    """``bad.tenant`` passes the JSON Schema (which allows '.') but not the ledger; it left the
    good tenant's rows applied. Now the whole file is checked first, as the ledger checks it."""
    records = two_tenant_records()
    records[4]["tenant_id"] = "bad.tenant"
    before = table_rows(ledger)
    with pytest.raises(ImportRejected) as raised:
        import_text(ledger, jsonl(records), "jsonl")
    assert [(p["line"], p["field"]) for p in raised.value.details["problems"]] == [(5, "tenant_id")]
    assert table_rows(ledger) == before


# Rows that pass the schema but failed only when written (raw DataError on PostgreSQL, stored
# on SQLite, text that cannot be read back): (mutation, field named).
WRITE_TIME_FAILURES: dict[str, tuple[Any, str]] = {
    "nul_in_reason": (lambda r: r.update(reason="PROCUREMENT\u0000"), "reason"),
    "nul_in_meta": (lambda r: r.update(meta={"provider": "x\u0000"}), "meta"),
    "nul_in_meta_key": (lambda r: r.update(meta={"a\u0000": 1}), "meta"),
    "surrogate_in_task": (lambda r: r.update(task_id="task-\ud800"), "task_id"),
    "control_in_asset": (lambda r: r.update(asset_id="vps\u0001"), "asset_id"),
    "newline_in_tag": (lambda r: r.update(tags=["qa\n"]), "tags"),
    "year_999": (lambda r: r.update(occurred_at="0999-01-01T00:00:00Z"), "occurred_at"),
    "year_1_plus_5": (lambda r: r.update(occurred_at="0001-01-01T00:00:00+05:00"), "occurred_at"),
    "before_1970": (lambda r: r.update(occurred_at="1969-12-31T23:59:59Z"), "occurred_at"),
    "env_65": (lambda r: r.update(env="e" * 65), "env"),
}


@pytest.mark.parametrize("kind", sorted(WRITE_TIME_FAILURES))
def test_rows_that_failed_only_when_written_are_caught_first(ledger: Ledger, kind: str) -> None:
    records = two_tenant_records()
    mutate, field = WRITE_TIME_FAILURES[kind]
    mutate(records[4])  # tenant_b's second record; tenant_a's rows come first in the file
    before = table_rows(ledger)
    with pytest.raises(ImportRejected) as raised:
        import_text(ledger, jsonl(records), "jsonl")
    assert [(p["line"], p["field"]) for p in raised.value.details["problems"]] == [(5, field)]
    assert table_rows(ledger) == before


def test_a_file_applies_atomically_across_tenants(ledger: Ledger) -> None:
    """A failure that only the write can see (tenant_b's operating balance leaving the 64-bit
    range) rolls back tenant_a's part of the same file too."""
    max_usd = ledger.registry.to_text(2**63 - 1, "USD")
    ledger.record_entries(
        [
            {
                "task_id": "t",
                "direction": "IN",
                "amount": max_usd,
                "currency": "USD",
                "reason": "REFUND",
                "category": "OTHER_REVENUE",
            }
        ],
        tenant_id="tenant_b",
        idempotency_key="fill",
    )
    records = two_tenant_records()
    records[5]["direction"] = "IN"  # tenant_b: 120.00 more IN than the balance can hold
    before = table_rows(ledger)
    with pytest.raises(Exception) as raised:
        import_text(ledger, jsonl(records), "jsonl")
    assert getattr(raised.value, "code", None) == "invalid_amount"
    assert table_rows(ledger) == before


def test_json_number_amounts_are_read_exactly_and_text_follows_the_grammar(
    ledger: Ledger,
) -> None:
    """A JSON number is the exact value JSON spells (``1e1`` is 10); amount text follows the one
    grammar (``"1e1"``, ``" 1.00"``, ``"+5"`` are refused); a huge exponent or a megabyte of
    digits is refused without being turned into a number, never a crash."""
    records = copy.deepcopy(EXAMPLES)
    lines = [json.dumps(record) for record in records]
    good = lines[1].replace('"amount": "0.05"', '"amount": 1e1')
    result = import_text(ledger, "\n".join([lines[0], good, lines[2]]) + "\n", "jsonl")
    assert result.applied == 3
    exported = [json.loads(line) for line in export(ledger, "jsonl").splitlines()]
    assert exported[1]["amount"] == "10.00"
    for number in (
        "1e999999",
        "9" * 1_000_000,
        "1" + "0" * 5000,
        '"1e1"',
        '" 1.00"',
        '"+5"',
        '"1."',
    ):
        bad = (
            lines[1]
            .replace('"amount": "0.05"', f'"amount": {number}')
            .replace(records[1]["ledger_entry_id"], "7d0b6f0e-4c1e-4b8a-9a51-0c6f1e2a0999")
        )
        with pytest.raises(ImportRejected) as raised:
            import_text(ledger, bad + "\n", "jsonl")
        assert [(p["line"], p["field"]) for p in raised.value.details["problems"]] == [
            (1, "amount")
        ], number[:20]


def test_csv_amounts_follow_the_grammar(sqlite_ledger: Ledger) -> None:
    for text in (" 0.05", "0.05 ", "+0.05", "5e-2", "\uff10.05"):
        records = copy.deepcopy(EXAMPLES)
        records[1]["amount"] = text
        with pytest.raises(ImportRejected) as raised:
            import_text(sqlite_ledger, csv_text(records), "csv")
        assert [(p["line"], p["field"]) for p in raised.value.details["problems"]] == [
            (3, "amount")
        ], text
    assert journal_size(sqlite_ledger) == (0, 0)


def test_an_untouched_file_with_jsonb_changed_numbers_reimports_as_a_no_op(
    ledger: Ledger,
) -> None:
    """``1e16``, ``-0.0`` and ``1.5e300`` came back from jsonb as other spellings, so the
    re-import of an untouched file was refused as a conflict. Meta is normalised the way it is
    stored, so the second import finds every record present."""
    records = copy.deepcopy(EXAMPLES)
    records[0]["meta"] = {"n": 1e16, "z": -0.0, "big": 1.5e300, "fee_amount": 3.5}
    text = "".join(json.dumps(record) + "\n" for record in records)
    first = import_text(ledger, text, "jsonl")
    second = import_text(ledger, text, "jsonl")
    assert (first.applied, second.applied, second.already_present) == (3, 0, 3)
    assert ledger.verify_journal() == []
    stored = json.loads(export(ledger, "jsonl").splitlines()[0])["meta"]
    assert stored == {"big": 15 * 10**299, "fee_amount": 3.5, "n": 10**16, "z": 0}


def test_entry_ids_are_looked_up_per_tenant(ledger: Ledger) -> None:
    """Tenant_b may import a record whose ID tenant_a used: IDs are unique per tenant, and the
    import neither reports a conflict nor reveals tenant_a's record."""
    import_text(ledger, jsonl(EXAMPLES), "jsonl")
    records = copy.deepcopy(EXAMPLES)
    for record in records:
        record["tenant_id"] = "tenant_b"
        record["amount"] = "1.00"
    result = import_text(ledger, jsonl(records), "jsonl")
    assert (result.applied, result.already_present) == (3, 0)
    assert ledger.verify_journal() == []
