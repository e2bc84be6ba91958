"""Monthly statements per account and per tenant: opening balance, every entry, closing balance.

A month is ``[first instant, first instant of the next month)`` in UTC on ``recorded_at`` by
default (when the ledger booked it, like a bank statement, so a closed month never changes;
``get_balance(as_of=...)`` uses the same clock) or on ``occurred_at`` if asked. An entry
recorded at 23:59:59.999 on the 31st belongs to that month; one at 00:00:00 on the 1st to the
next.

The closing balance is read from the database independently of the entries (one SUM up to the
end of the month); :meth:`AccountStatement.check` asserts opening + entries = closing, and every
writer calls it before writing a byte. Renderings are deterministic: JSON with sorted keys, CSV
in journal order, and PDF with reportlab's invariant mode (fixed creation date and document ID),
so regenerating a statement gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from ledger_db.errors import AccountNotFound, LedgerError
from ledger_db.finops.query import TimeField, month_range
from ledger_db.finops.records import format_timestamp
from ledger_db.money import default_registry, signed_minor
from ledger_db.schema import accounts, journal_entries
from ledger_db.sums import net_minor

__all__ = [
    "STATEMENT_FORMATS",
    "AccountStatement",
    "StatementLine",
    "StatementMismatch",
    "TenantStatement",
    "account_statement",
    "render_statement",
    "tenant_statement",
    "write_statement",
]

STATEMENT_FORMATS: tuple[str, ...] = ("json", "csv", "pdf")


class StatementMismatch(LedgerError):
    """Opening balance plus the month's entries does not equal the closing balance."""

    code = "statement_mismatch"


def _text(amount_minor: int, currency: str) -> str:
    return default_registry().to_text(amount_minor, currency)


class StatementLine(BaseModel):
    """One entry of the month with the account's running balance after it."""

    model_config = ConfigDict(frozen=True)

    journal_sequence: int
    entry_index: int
    ledger_entry_id: str
    transaction_id: str
    occurred_at: datetime
    recorded_at: datetime
    direction: str
    amount_minor: int
    balance_minor: int
    reason: str
    category: str
    project_id: str | None = None
    task_id: str | None = None
    asset_id: str | None = None
    external_ref: str | None = None


class AccountStatement(BaseModel):
    """One account's month."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    account_id: str
    kind: str
    currency: str
    month: str
    time_field: TimeField
    period_start: datetime
    period_end: datetime
    opening_minor: int
    in_minor: int
    out_minor: int
    closing_minor: int
    lines: list[StatementLine]

    def check(self) -> None:
        """Asserts opening + entries = closing, and that the running balance agrees."""
        running = self.opening_minor
        for line in self.lines:
            running += signed_minor(line.direction, line.amount_minor)
            if running != line.balance_minor:
                raise StatementMismatch(
                    f"{self.account_id} {self.month}: running balance breaks at entry "
                    f"{line.ledger_entry_id}",
                    account_id=self.account_id,
                )
        if (
            running != self.closing_minor
            or self.opening_minor + self.in_minor - self.out_minor != self.closing_minor
        ):
            raise StatementMismatch(
                f"{self.account_id} {self.month}: opening {self.opening_minor} + entries "
                f"{running - self.opening_minor} != closing {self.closing_minor}",
                account_id=self.account_id,
                opening_minor=self.opening_minor,
                closing_minor=self.closing_minor,
            )


class CurrencyTotal(BaseModel):
    """A tenant's own funds in one currency: every account except the external ones."""

    model_config = ConfigDict(frozen=True)

    currency: str
    opening_minor: int
    in_minor: int
    out_minor: int
    closing_minor: int


class TenantStatement(BaseModel):
    """Every account of a tenant for one month, plus per-currency totals."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    month: str
    time_field: TimeField
    period_start: datetime
    period_end: datetime
    accounts: list[AccountStatement]
    totals: list[CurrencyTotal]

    def check(self) -> None:
        for statement in self.accounts:
            statement.check()
        for total in self.totals:
            if total.opening_minor + total.in_minor - total.out_minor != total.closing_minor:
                raise StatementMismatch(
                    f"tenant {self.tenant_id} {self.month} {total.currency}: opening + entries "
                    "!= closing"
                )


def _balance_before(
    connection: sa.Connection, tenant_id: str, account_id: str, column: Any, instant: datetime
) -> int:
    table = journal_entries.c
    return net_minor(
        connection, [table.tenant_id == tenant_id, table.account_id == account_id, column < instant]
    )


def _account_statement(
    connection: sa.Connection, account: Any, month: str, time_field: TimeField
) -> AccountStatement:
    start, end = month_range(month)
    table = journal_entries.c
    column = table[time_field]
    opening = _balance_before(connection, account.tenant_id, account.account_id, column, start)
    closing = _balance_before(connection, account.tenant_id, account.account_id, column, end)
    rows = connection.execute(
        sa.select(
            table.journal_sequence,
            table.entry_index,
            table.ledger_entry_id,
            table.transaction_id,
            table.occurred_at,
            table.recorded_at,
            table.direction,
            table.amount_minor,
            table.reason,
            table.category,
            table.project_id,
            table.task_id,
            table.asset_id,
            table.external_ref,
        )
        .where(
            table.tenant_id == account.tenant_id,
            table.account_id == account.account_id,
            column >= start,
            column < end,
        )
        .order_by(table.journal_sequence, table.entry_index)
    ).all()
    lines: list[StatementLine] = []
    running = opening
    amount_in = amount_out = 0
    for row in rows:
        signed = signed_minor(row.direction, int(row.amount_minor))
        running += signed
        if signed > 0:
            amount_in += signed
        else:
            amount_out -= signed
        lines.append(StatementLine(**row._mapping, balance_minor=running))
    return AccountStatement(
        tenant_id=account.tenant_id,
        account_id=account.account_id,
        kind=account.kind,
        currency=account.currency,
        month=month,
        time_field=time_field,
        period_start=start,
        period_end=end,
        opening_minor=opening,
        in_minor=amount_in,
        out_minor=amount_out,
        closing_minor=closing,
        lines=lines,
    )


def account_statement(
    connection: sa.Connection,
    *,
    tenant_id: str,
    account_id: str,
    month: str,
    time_field: TimeField = "recorded_at",
) -> AccountStatement:
    """The statement of one account for ``month`` (``YYYY-MM``), checked."""
    account = connection.execute(
        sa.select(accounts).where(
            accounts.c.tenant_id == tenant_id, accounts.c.account_id == account_id
        )
    ).first()
    if account is None:
        raise AccountNotFound(f"account {account_id!r} not found", account_id=account_id)
    statement = _account_statement(connection, account, month, time_field)
    statement.check()
    return statement


def tenant_statement(
    connection: sa.Connection,
    *,
    tenant_id: str,
    month: str,
    time_field: TimeField = "recorded_at",
    include_idle: bool = False,
) -> TenantStatement:
    """Every account of the tenant (those without balance or entries only if asked), checked."""
    start, end = month_range(month)
    statements: list[AccountStatement] = []
    for account in connection.execute(
        sa.select(accounts).where(accounts.c.tenant_id == tenant_id).order_by(accounts.c.account_id)
    ):
        statement = _account_statement(connection, account, month, time_field)
        if include_idle or statement.lines or statement.opening_minor or statement.closing_minor:
            statements.append(statement)
    totals: dict[str, list[int]] = {}
    for statement in statements:
        if statement.kind == "external":
            continue
        current = totals.setdefault(statement.currency, [0, 0, 0, 0])
        current[0] += statement.opening_minor
        current[1] += statement.in_minor
        current[2] += statement.out_minor
        current[3] += statement.closing_minor
    result = TenantStatement(
        tenant_id=tenant_id,
        month=month,
        time_field=time_field,
        period_start=start,
        period_end=end,
        accounts=statements,
        totals=[
            CurrencyTotal(
                currency=currency, opening_minor=o, in_minor=i, out_minor=u, closing_minor=c
            )
            for currency, (o, i, u, c) in sorted(totals.items())
        ],
    )
    result.check()
    return result


# --------------------------------------------------------------------------------------------
# Rendering

Statement = AccountStatement | TenantStatement


def _accounts_of(statement: Statement) -> Sequence[AccountStatement]:
    return statement.accounts if isinstance(statement, TenantStatement) else [statement]


def _json_account(statement: AccountStatement) -> dict[str, Any]:
    currency = statement.currency

    def money(amount_minor: int) -> str:
        return _text(amount_minor, currency)

    return {
        "tenant_id": statement.tenant_id,
        "account_id": statement.account_id,
        "kind": statement.kind,
        "currency": currency,
        "month": statement.month,
        "opening_balance": money(statement.opening_minor),
        "total_in": money(statement.in_minor),
        "total_out": money(statement.out_minor),
        "closing_balance": money(statement.closing_minor),
        "entries": [
            {
                "journal_sequence": line.journal_sequence,
                "entry_index": line.entry_index,
                "ledger_entry_id": line.ledger_entry_id,
                "transaction_id": line.transaction_id,
                "occurred_at": format_timestamp(line.occurred_at),
                "recorded_at": format_timestamp(line.recorded_at),
                "direction": line.direction,
                "amount": money(line.amount_minor),
                "balance": money(line.balance_minor),
                "reason": line.reason,
                "category": line.category,
                "project_id": line.project_id,
                "task_id": line.task_id,
                "asset_id": line.asset_id,
                "external_ref": line.external_ref,
            }
            for line in statement.lines
        ],
    }


def _render_json(statement: Statement) -> bytes:
    body: dict[str, Any] = {
        "statement": "tenant" if isinstance(statement, TenantStatement) else "account",
        "tenant_id": statement.tenant_id,
        "month": statement.month,
        "time_field": statement.time_field,
        "period_start": format_timestamp(statement.period_start),
        "period_end": format_timestamp(statement.period_end),
        "accounts": [_json_account(account) for account in _accounts_of(statement)],
    }
    if isinstance(statement, TenantStatement):
        body["totals"] = [
            {
                "currency": total.currency,
                "opening_balance": _text(total.opening_minor, total.currency),
                "total_in": _text(total.in_minor, total.currency),
                "total_out": _text(total.out_minor, total.currency),
                "closing_balance": _text(total.closing_minor, total.currency),
            }
            for total in statement.totals
        ]
    return (json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


_CSV_COLUMNS = (
    "tenant_id",
    "account_id",
    "currency",
    "month",
    "row",
    "journal_sequence",
    "entry_index",
    "ledger_entry_id",
    "transaction_id",
    "occurred_at",
    "recorded_at",
    "direction",
    "amount",
    "balance",
    "reason",
    "category",
    "project_id",
    "task_id",
    "asset_id",
    "external_ref",
)


def _render_csv(statement: Statement) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_CSV_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    for account in _accounts_of(statement):
        currency = account.currency
        head = {
            "tenant_id": account.tenant_id,
            "account_id": account.account_id,
            "currency": currency,
            "month": account.month,
        }
        writer.writerow(
            {**head, "row": "opening", "balance": _text(account.opening_minor, currency)}
        )
        for line in account.lines:
            writer.writerow(
                {
                    **head,
                    "row": "entry",
                    "journal_sequence": line.journal_sequence,
                    "entry_index": line.entry_index,
                    "ledger_entry_id": line.ledger_entry_id,
                    "transaction_id": line.transaction_id,
                    "occurred_at": format_timestamp(line.occurred_at),
                    "recorded_at": format_timestamp(line.recorded_at),
                    "direction": line.direction,
                    "amount": _text(line.amount_minor, currency),
                    "balance": _text(line.balance_minor, currency),
                    "reason": line.reason,
                    "category": line.category,
                    "project_id": line.project_id or "",
                    "task_id": line.task_id or "",
                    "asset_id": line.asset_id or "",
                    "external_ref": line.external_ref or "",
                }
            )
        writer.writerow(
            {**head, "row": "closing", "balance": _text(account.closing_minor, currency)}
        )
    return buffer.getvalue().encode()


def _render_pdf(statement: Statement) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    buffer = io.BytesIO()
    title = (
        f"Statement {statement.month} - tenant {statement.tenant_id}"
        if isinstance(statement, TenantStatement)
        else f"Statement {statement.month} - {statement.tenant_id} / {statement.account_id}"
    )
    document = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4),
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=12 * mm,
        title=title,
        author="Compute Ledger",
        creator="Compute Ledger",
        producer="Compute Ledger",
        invariant=True,
    )
    styles = getSampleStyleSheet()
    story: list[Any] = [
        Paragraph(title, styles["Title"]),
        Paragraph(
            f"Period {format_timestamp(statement.period_start)} to "
            f"{format_timestamp(statement.period_end)} (exclusive), by {statement.time_field}.",
            styles["Normal"],
        ),
        Spacer(1, 4 * mm),
    ]
    if isinstance(statement, TenantStatement) and statement.totals:
        rows = [["currency", "opening", "in", "out", "closing"]] + [
            [
                total.currency,
                _text(total.opening_minor, total.currency),
                _text(total.in_minor, total.currency),
                _text(total.out_minor, total.currency),
                _text(total.closing_minor, total.currency),
            ]
            for total in statement.totals
        ]
        story += [
            Paragraph("Tenant totals (all accounts but external)", styles["Heading2"]),
            _table(rows, Table, TableStyle, colors),
            Spacer(1, 4 * mm),
        ]
    for account in _accounts_of(statement):
        currency = account.currency
        story.append(
            Paragraph(
                f"Account {account.account_id} ({account.kind}, {currency})", styles["Heading2"]
            )
        )
        rows = [
            ["#", "recorded at", "occurred at", "reason", "category", "ref", "in", "out", "balance"]
        ]
        rows.append(
            ["", "", "", "opening balance", "", "", "", "", _text(account.opening_minor, currency)]
        )
        for line in account.lines:
            amount = _text(line.amount_minor, currency)
            rows.append(
                [
                    f"{line.journal_sequence}.{line.entry_index}",
                    format_timestamp(line.recorded_at),
                    format_timestamp(line.occurred_at),
                    line.reason,
                    line.category,
                    (line.external_ref or line.task_id or line.asset_id or "")[:32],
                    amount if line.direction == "IN" else "",
                    amount if line.direction == "OUT" else "",
                    _text(line.balance_minor, currency),
                ]
            )
        rows.append(
            [
                "",
                "",
                "",
                "closing balance",
                "",
                "",
                _text(account.in_minor, currency),
                _text(account.out_minor, currency),
                _text(account.closing_minor, currency),
            ]
        )
        story += [_table(rows, Table, TableStyle, colors), Spacer(1, 4 * mm)]
    document.build(story)
    return buffer.getvalue()


def _table(rows: list[list[str]], table_class: Any, style_class: Any, colors: Any) -> Any:
    table = table_class(rows, repeatRows=1)
    table.setStyle(
        style_class(
            [
                ("FONT", (0, 0), (-1, -1), "Helvetica", 7),
                ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("ALIGN", (-3, 0), (-1, -1), "RIGHT"),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ]
        )
    )
    return table


def render_statement(statement: Statement, statement_format: str) -> bytes:
    """The statement's bytes in ``json``, ``csv`` or ``pdf``; checked first."""
    statement.check()
    renderers = {"json": _render_json, "csv": _render_csv, "pdf": _render_pdf}
    if statement_format not in renderers:
        raise ValueError(f"unknown statement format {statement_format!r}")
    return renderers[statement_format](statement)


def write_statement(statement: Statement, statement_format: str, path: str | Path) -> Path:
    """Checks, renders and writes the statement (atomically: a temporary file, then rename)."""
    data = render_statement(statement, statement_format)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(data)
    temporary.replace(target)
    return target
