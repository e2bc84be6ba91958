"""Totals and counts of journal entries grouped by any FinOps dimension, per currency.

The aggregation runs in SQL (one GROUP BY, dialect-aware day/month truncation) so a report over
millions of entries reads only the indexes and columns it needs and returns one row per group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, computed_field

from ledger_db.errors import InvalidEntry
from ledger_db.finops.query import EntryFilter, filter_conditions, tag_table
from ledger_db.money import default_registry
from ledger_db.schema import journal_entries
from ledger_db.sums import amounts_in_out, exact_sum, exact_sum_columns

__all__ = ["DIMENSIONS", "Report", "ReportRow", "parse_group_by", "run_report"]

# Dimension name -> journal column (``tag``, ``day`` and ``month`` are computed).
_COLUMN_DIMENSIONS: dict[str, str] = {
    "tenant": "tenant_id",
    "project": "project_id",
    "env": "env",
    "task": "task_id",
    "asset": "asset_id",
    "external_ref": "external_ref",
    "reason": "reason",
    "category": "category",
    "account": "account_id",
    "direction": "direction",
}
DIMENSIONS: tuple[str, ...] = (*_COLUMN_DIMENSIONS, "tag", "day", "month")


class ReportRow(BaseModel):
    """One group: its dimension values, its currency, and the sums of its entries."""

    model_config = ConfigDict(frozen=True)

    group: dict[str, str | None]
    currency: str
    count: int
    in_minor: int
    out_minor: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def net_minor(self) -> int:
        return self.in_minor - self.out_minor

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_in(self) -> str:
        return default_registry().to_text(self.in_minor, self.currency)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_out(self) -> str:
        return default_registry().to_text(self.out_minor, self.currency)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def net(self) -> str:
        return default_registry().to_text(self.net_minor, self.currency)


class Report(BaseModel):
    """A grouped report: the question (filter, dimensions) and its answer (rows)."""

    model_config = ConfigDict(frozen=True)

    group_by: list[str]
    filter: EntryFilter
    rows: list[ReportRow]

    def totals(self) -> dict[str, ReportRow]:
        """Per currency, the sum over every row (tags may count an entry once per tag)."""
        sums: dict[str, list[int]] = {}
        for row in self.rows:
            current = sums.setdefault(row.currency, [0, 0, 0])
            current[0] += row.count
            current[1] += row.in_minor
            current[2] += row.out_minor
        return {
            currency: ReportRow(group={}, currency=currency, count=c, in_minor=i, out_minor=o)
            for currency, (c, i, o) in sorted(sums.items())
        }


def parse_group_by(text: str | Sequence[str] | None) -> list[str]:
    """``"project,month"`` -> ``["project", "month"]``; unknown names are refused."""
    if text is None:
        return []
    names = text.split(",") if isinstance(text, str) else list(text)
    result: list[str] = []
    for raw in names:
        name = raw.strip().lower().replace("-", "_")
        if not name:
            continue
        if name not in DIMENSIONS:
            raise InvalidEntry(
                f"unknown dimension {raw!r}; use any of {', '.join(DIMENSIONS)}", field="group_by"
            )
        if name not in result:
            result.append(name)
    return result


def _period(column: Any, dialect_name: str, length: int) -> Any:
    """UTC day (``YYYY-MM-DD``) or month (``YYYY-MM``) of a timestamp column, as text."""
    if dialect_name == "postgresql":
        pattern = "YYYY-MM-DD" if length == 10 else "YYYY-MM"
        return sa.func.to_char(sa.func.timezone("UTC", column), pattern)
    # SQLite stores instants as fixed-width UTC text (``UtcDateTime``), so a prefix is exact.
    return sa.func.substr(sa.cast(column, sa.String), 1, length)


def run_report(
    connection: sa.Connection, entry_filter: EntryFilter, group_by: Sequence[str]
) -> Report:
    """Counts and IN/OUT totals per group and currency, ordered by group then currency."""
    dialect_name = connection.dialect.name
    table = journal_entries.c
    columns: list[Any] = []
    source: Any = journal_entries
    for name in group_by:
        if name in _COLUMN_DIMENSIONS:
            columns.append(table[_COLUMN_DIMENSIONS[name]].label(name))
        elif name == "tag":
            tags = tag_table(dialect_name)
            source = source.join(tags, sa.true())
            columns.append(sa.cast(tags.c.value, sa.String).label("tag"))
        elif name in ("day", "month"):
            time_column = table[entry_filter.time_field]
            columns.append(
                _period(time_column, dialect_name, 10 if name == "day" else 7).label(name)
            )
        else:
            raise InvalidEntry(f"unknown dimension {name!r}", field="group_by")
    # Summed exactly on both engines, past 2^63 - 1 (SQLite's sum() overflows; ledger_db.sums).
    amount_in, amount_out = amounts_in_out()
    query = (
        sa.select(
            *columns,
            table.currency,
            sa.func.count().label("count"),
            *exact_sum_columns(amount_in, dialect_name, "in_minor"),
            *exact_sum_columns(amount_out, dialect_name, "out_minor"),
        )
        .select_from(source)
        .where(*filter_conditions(entry_filter, dialect_name))
        .group_by(*columns, table.currency)
    )
    rows = connection.execute(query).all()
    result = [
        ReportRow(
            group={
                name: (None if row._mapping[name] is None else str(row._mapping[name]))
                for name in group_by
            },
            currency=row.currency,
            count=int(row._mapping["count"]),
            in_minor=exact_sum(row, dialect_name, "in_minor"),
            out_minor=exact_sum(row, dialect_name, "out_minor"),
        )
        for row in rows
    ]
    result.sort(
        key=lambda row: ([(v is not None, v or "") for v in row.group.values()], row.currency)
    )
    return Report(group_by=list(group_by), filter=entry_filter, rows=result)
