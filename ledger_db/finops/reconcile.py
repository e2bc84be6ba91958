"""Provider bill reconciliation: a provider's CSV bill matched against the journal by
``external_ref``.

Each bill line gets one status; each ledger reference of the period the bill does not mention
gets ``missing_from_bill``:

- ``matched``: the ledger's net cost (OUT - IN) under the reference equals the line;
- ``missing_from_ledger``: the ledger has nothing under the reference;
- ``amount_mismatch``: same currency, different amount (the difference is given);
- ``currency_mismatch``: the ledger has the reference only in other currencies;
- ``duplicated_in_bill``: a second (third...) line with a reference already on the bill;
- ``missing_from_bill``: in the ledger within the bill's period, absent from the bill.

A bill amount is decimal text in the currency's unit, in the ledger's one grammar (ASCII
digits, an optional ``.`` fraction, no space or ``+``); a leading ``-`` makes it a credit.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, computed_field

from ledger_db.errors import InvalidEntry, LedgerError
from ledger_db.finops.query import EntryFilter, filter_conditions
from ledger_db.finops.records import numbered_csv_rows
from ledger_db.money import CurrencyRegistry, default_registry, parse_signed_amount
from ledger_db.schema import journal_entries
from ledger_db.sums import amounts_in_out, exact_sum, exact_sum_columns

__all__ = [
    "STATUSES",
    "BillLine",
    "ReconciliationLine",
    "ReconciliationReport",
    "parse_bill",
    "reconcile_bill",
    "render_reconciliation_csv",
]

STATUSES: tuple[str, ...] = (
    "matched",
    "missing_from_ledger",
    "missing_from_bill",
    "amount_mismatch",
    "currency_mismatch",
    "duplicated_in_bill",
)
_BILL_COLUMNS = ("external_ref", "amount", "currency", "date")
_IN_LIST_SIZE = 500


class BillLine(BaseModel):
    """One line of a provider bill."""

    model_config = ConfigDict(frozen=True)

    line: int
    external_ref: str
    amount_minor: int
    currency: str
    date: date


class ReconciliationLine(BaseModel):
    """One outcome: a bill line and/or a ledger reference, and how they compare."""

    model_config = ConfigDict(frozen=True)

    status: str
    external_ref: str
    bill_line: int | None = None
    bill_date: date | None = None
    bill_amount_minor: int | None = None
    bill_currency: str | None = None
    ledger_amount_minor: int | None = None
    ledger_currency: str | None = None
    ledger_entry_count: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def bill_amount(self) -> str | None:
        return _text(self.bill_amount_minor, self.bill_currency)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ledger_amount(self) -> str | None:
        return _text(self.ledger_amount_minor, self.ledger_currency)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def difference(self) -> str | None:
        """Bill minus ledger, when both are in the same currency."""
        if (
            self.bill_amount_minor is None
            or self.ledger_amount_minor is None
            or self.bill_currency != self.ledger_currency
        ):
            return None
        return _text(self.bill_amount_minor - self.ledger_amount_minor, self.bill_currency)


def _text(amount_minor: int | None, currency: str | None) -> str | None:
    if amount_minor is None or currency is None:
        return None
    return default_registry().to_text(amount_minor, currency)


class ReconciliationReport(BaseModel):
    """Every outcome, bill lines first (in bill order) then what the bill is missing."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    period_from: date | None
    period_to: date | None
    lines: list[ReconciliationLine]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for line in self.lines:
            counts[line.status] += 1
        return counts

    @property
    def clean(self) -> bool:
        return all(line.status == "matched" for line in self.lines)

    def problems(self) -> list[ReconciliationLine]:
        return [line for line in self.lines if line.status != "matched"]


def parse_bill(text: str, *, registry: CurrencyRegistry | None = None) -> list[BillLine]:
    """The lines of a bill CSV (header: external_ref, amount, currency, date; others ignored).

    Every bad line is reported at once, as ``invalid_entry`` with ``details.problems``.
    """
    registry = registry or default_registry()
    reader = csv.reader(io.StringIO(text, newline=""))
    problems: list[dict[str, Any]] = []
    lines: list[BillLine] = []
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        return []
    missing = [name for name in _BILL_COLUMNS if name not in header]
    if missing:
        raise InvalidEntry(
            f"bill CSV lacks column(s): {', '.join(missing)}",
            problems=[{"line": 1, "field": name, "code": "missing_column"} for name in missing],
        )
    for line, cells in numbered_csv_rows(reader):
        if len(cells) != len(header):
            problems.append(
                {
                    "line": line,
                    "field": "(row)",
                    "code": "bad_row",
                    "message": f"{len(cells)} cells where the header has {len(header)}",
                }
            )
            continue
        # Every cell but the amount is trimmed; the amount is read as written (one grammar).
        raw = dict(zip(header, cells, strict=True))
        row = {name: cell.strip() for name, cell in raw.items()}
        before = len(problems)
        if not row["external_ref"]:
            problems.append(
                {
                    "line": line,
                    "field": "external_ref",
                    "code": "missing_field",
                    "message": "external_ref is required",
                }
            )
        currency = row["currency"]
        amount_minor = 0
        try:
            registry.exponent(currency)
        except LedgerError as error:
            problems.append(
                {
                    "line": line,
                    "field": "currency",
                    "code": "invalid_currency",
                    "message": error.message,
                }
            )
        else:
            try:
                amount_minor = parse_signed_amount(raw["amount"], registry.exponent(currency))
            except LedgerError as error:
                problems.append(
                    {
                        "line": line,
                        "field": "amount",
                        "code": "invalid_amount",
                        "message": error.message,
                    }
                )
        try:
            line_date = date.fromisoformat(row["date"][:10])
        except ValueError:
            problems.append(
                {
                    "line": line,
                    "field": "date",
                    "code": "invalid_date",
                    "message": f"date {row['date']!r} is not YYYY-MM-DD",
                }
            )
        if len(problems) == before:
            lines.append(
                BillLine(
                    line=line,
                    external_ref=row["external_ref"],
                    amount_minor=amount_minor,
                    currency=currency,
                    date=line_date,
                )
            )
    if problems:
        raise InvalidEntry(f"the bill has {len(problems)} bad line(s)", problems=problems)
    return lines


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _ledger_totals(
    connection: sa.Connection, conditions: list[Any]
) -> dict[str, dict[str, tuple[int, int]]]:
    """external_ref -> currency -> (net cost OUT - IN, entry count)."""
    table = journal_entries.c
    dialect_name = connection.dialect.name
    amount_in, amount_out = amounts_in_out()
    query = (
        sa.select(
            table.external_ref,
            table.currency,
            *exact_sum_columns(amount_in, dialect_name, "in"),
            *exact_sum_columns(amount_out, dialect_name, "out"),
            sa.func.count().label("count"),
        )
        .where(table.external_ref.is_not(None), *conditions)
        .group_by(table.external_ref, table.currency)
    )
    totals: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    for row in connection.execute(query):
        net = exact_sum(row, dialect_name, "out") - exact_sum(row, dialect_name, "in")
        totals[row.external_ref][row.currency] = (net, int(row._mapping["count"]))
    return totals


def reconcile_bill(
    connection: sa.Connection,
    bill: Sequence[BillLine],
    *,
    tenant_id: str,
    base_filter: EntryFilter | None = None,
    period_from: date | None = None,
    period_to: date | None = None,
) -> ReconciliationReport:
    """Matches ``bill`` against the tenant's journal (see the module docstring).

    The period (inclusive days, on ``occurred_at``) bounds the search for ``missing_from_bill``;
    it defaults to the bill's first and last dates. ``base_filter`` narrows the ledger side
    (for instance to one provider's category).
    """
    entry_filter = (base_filter or EntryFilter()).model_copy(
        update={"tenant_id": tenant_id, "from_ts": None, "to_ts": None, "time_field": "occurred_at"}
    )
    dialect_name = connection.dialect.name
    base_conditions = filter_conditions(entry_filter, dialect_name)
    refs = sorted({line.external_ref for line in bill})
    by_ref: dict[str, dict[str, tuple[int, int]]] = {}
    for chunk in _chunks(refs, _IN_LIST_SIZE):
        by_ref.update(
            _ledger_totals(
                connection, [*base_conditions, journal_entries.c.external_ref.in_(chunk)]
            )
        )
    if bill:
        period_from = period_from or min(line.date for line in bill)
        period_to = period_to or max(line.date for line in bill)
    in_period: dict[str, dict[str, tuple[int, int]]] = {}
    if period_from is not None and period_to is not None:
        start = datetime(period_from.year, period_from.month, period_from.day, tzinfo=UTC)
        end = datetime(period_to.year, period_to.month, period_to.day, tzinfo=UTC) + timedelta(
            days=1
        )
        in_period = _ledger_totals(
            connection,
            [
                *base_conditions,
                journal_entries.c.occurred_at >= start,
                journal_entries.c.occurred_at < end,
            ],
        )
    outcomes: list[ReconciliationLine] = []
    seen: set[str] = set()
    for line in sorted(bill, key=lambda item: item.line):
        common: dict[str, Any] = {
            "external_ref": line.external_ref,
            "bill_line": line.line,
            "bill_date": line.date,
            "bill_amount_minor": line.amount_minor,
            "bill_currency": line.currency,
        }
        if line.external_ref in seen:
            outcomes.append(ReconciliationLine(status="duplicated_in_bill", **common))
            continue
        seen.add(line.external_ref)
        ledger = by_ref.get(line.external_ref, {})
        if not ledger:
            outcomes.append(ReconciliationLine(status="missing_from_ledger", **common))
        elif line.currency not in ledger:
            currency = sorted(ledger)[0]
            net, count = ledger[currency]
            outcomes.append(
                ReconciliationLine(
                    status="currency_mismatch",
                    ledger_amount_minor=net,
                    ledger_currency=currency,
                    ledger_entry_count=count,
                    **common,
                )
            )
        else:
            net, count = ledger[line.currency]
            status = "matched" if net == line.amount_minor else "amount_mismatch"
            outcomes.append(
                ReconciliationLine(
                    status=status,
                    ledger_amount_minor=net,
                    ledger_currency=line.currency,
                    ledger_entry_count=count,
                    **common,
                )
            )
    for external_ref in sorted(set(in_period) - seen):
        for currency, (net, count) in sorted(in_period[external_ref].items()):
            outcomes.append(
                ReconciliationLine(
                    status="missing_from_bill",
                    external_ref=external_ref,
                    ledger_amount_minor=net,
                    ledger_currency=currency,
                    ledger_entry_count=count,
                )
            )
    return ReconciliationReport(
        tenant_id=tenant_id, period_from=period_from, period_to=period_to, lines=outcomes
    )


_CSV_COLUMNS = (
    "status",
    "external_ref",
    "bill_line",
    "bill_date",
    "bill_amount",
    "bill_currency",
    "ledger_amount",
    "ledger_currency",
    "ledger_entry_count",
    "difference",
)


def render_reconciliation_csv(report: ReconciliationReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for line in report.lines:
        data = line.model_dump(mode="json")
        writer.writerow(["" if data[name] is None else data[name] for name in _CSV_COLUMNS])
    return buffer.getvalue()


def render_reconciliation_json(report: ReconciliationReport) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
