"""Which journal entries a FinOps question is about: one filter shared by reports and exports.

The filter compiles to SQL on ``ledger_db.schema.journal_entries`` for both engines. By default
it leaves out what is not a tenant-level money flow, so that every real flow is counted once:
counterpart entries (the balancing side of a recorded LedgerEntry or of a deposit, on the
tenant's ``external`` account, and the escrow side of a capture or a payout) and the internal
movements of the hold flow (a freeze, a release, an expiry, a capture's released remainder).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from ledger_db.errors import InvalidEntry
from ledger_db.schema import journal_entries
from ledger_db.validation import check_instant
from ledger_db.vocabulary import CATEGORY_HOLD

__all__ = [
    "HOLD_CATEGORY",
    "EntryFilter",
    "TimeField",
    "day_range",
    "entry_rows",
    "filter_conditions",
    "month_range",
    "parse_month",
    "tag_table",
]

TimeField = Literal["occurred_at", "recorded_at"]

# The category the ledger gives its own hold movements.
HOLD_CATEGORY = CATEGORY_HOLD

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class EntryFilter(BaseModel):
    """Every filter of ``report`` and ``export``; ``None`` means "any"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str | None = None
    project_id: str | None = None
    env: str | None = None
    task_id: str | None = None
    asset_id: str | None = None
    external_ref: str | None = None
    reason: str | None = None
    category: str | None = None
    tag: str | None = None
    account_id: str | None = None
    currency: str | None = None
    time_field: TimeField = "occurred_at"
    from_ts: datetime | None = None
    to_ts: datetime | None = None
    include_internal: bool = False
    include_counterparts: bool = False

    @field_validator(
        "tenant_id",
        "project_id",
        "env",
        "task_id",
        "asset_id",
        "external_ref",
        "reason",
        "category",
        "tag",
        "account_id",
        "currency",
    )
    @classmethod
    def _text(cls, value: str | None, info: ValidationInfo) -> str | None:
        # No NUL and no lone surrogate anywhere (the database could not even compare them):
        # the ledger's typed error naming the filter, not an encoder's exception.
        if value is None:
            return None
        field = str(info.field_name)
        if "\x00" in value:
            raise InvalidEntry(f"{field} contains a NUL character", field=field)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEntry(f"{field} is not valid Unicode text", field=field) from None
        return value

    @field_validator("from_ts", "to_ts")
    @classmethod
    def _aware(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("time bounds must be timezone-aware")
        # An instant outside the stored range is the ledger's typed error (invalid_entry naming
        # the bound), not an OverflowError of the UTC conversion.
        return None if value is None else check_instant(value, str(info.field_name))

    def with_month(self, month: str) -> EntryFilter:
        """The same filter restricted to a calendar month (UTC) of the time field."""
        start, end = month_range(month)
        return self.model_copy(update={"from_ts": start, "to_ts": end})


def parse_month(month: str) -> tuple[int, int]:
    match = _MONTH.match(month or "")
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise InvalidEntry(f"month {month!r} is not YYYY-MM", field="month")
    return int(match.group(1)), int(match.group(2))


def month_range(month: str) -> tuple[datetime, datetime]:
    """[first instant of the month, first instant of the next month) in UTC."""
    year, number = parse_month(month)
    start = datetime(year, number, 1, tzinfo=UTC)
    days = calendar.monthrange(year, number)[1]
    return start, start + timedelta(days=days)


def day_range(day: datetime) -> tuple[datetime, datetime]:
    start = day.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def tag_table(dialect_name: str) -> Any:
    """A table-valued function of the entry's tags, one row (``value``) per tag."""
    column = journal_entries.c.tags
    if dialect_name == "postgresql":
        safe = sa.case(
            (sa.func.jsonb_typeof(column) == "array", column),
            else_=sa.literal_column("'[]'::jsonb"),
        )
        return sa.func.jsonb_array_elements_text(safe).table_valued("value").alias("tag")
    safe = sa.case((sa.func.json_type(column) == "array", column), else_=sa.literal("[]"))
    return sa.func.json_each(safe).table_valued("value").alias("tag")


def _has_tag(dialect_name: str, tag: str) -> Any:
    column = journal_entries.c.tags
    if dialect_name == "postgresql":
        return sa.and_(
            sa.func.jsonb_typeof(column) == "array",
            column.op("@>")(sa.func.jsonb_build_array(sa.literal(tag, sa.String))),
        )
    each = sa.func.json_each(column).table_valued("value").alias("has_tag")
    return sa.and_(
        sa.func.json_type(column) == "array",
        sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == tag)),
    )


def internal_condition() -> Any:
    """True for an internal hold movement: the ledger files freezes, releases, expiries and a
    capture's released remainder under the ``HOLD`` category, on entries that name their hold."""
    return sa.and_(
        journal_entries.c.category == HOLD_CATEGORY, journal_entries.c.hold_id.is_not(None)
    )


def filter_conditions(entry_filter: EntryFilter, dialect_name: str) -> list[Any]:
    """The WHERE conditions of ``entry_filter`` on ``journal_entries``."""
    table = journal_entries.c
    conditions: list[Any] = []
    for name in (
        "tenant_id",
        "project_id",
        "env",
        "task_id",
        "asset_id",
        "external_ref",
        "reason",
        "category",
        "account_id",
        "currency",
    ):
        value = getattr(entry_filter, name)
        if value is not None:
            conditions.append(table[name] == value)
    if entry_filter.tag is not None:
        conditions.append(_has_tag(dialect_name, entry_filter.tag))
    time_column = table[entry_filter.time_field]
    if entry_filter.from_ts is not None:
        conditions.append(time_column >= entry_filter.from_ts)
    if entry_filter.to_ts is not None:
        conditions.append(time_column < entry_filter.to_ts)
    if not entry_filter.include_counterparts:
        conditions.append(table.counterpart == sa.false())
    if not entry_filter.include_internal:
        conditions.append(sa.not_(internal_condition()))
    return conditions


def entry_rows(
    connection: sa.Connection, entry_filter: EntryFilter, *, batch_size: int = 5000
) -> Iterator[dict[str, Any]]:
    """Every matching entry as a column mapping, in journal order, read in keyset batches."""
    conditions = filter_conditions(entry_filter, connection.dialect.name)
    after: tuple[int, int] = (0, -1)
    table = journal_entries.c
    while True:
        query = (
            sa.select(journal_entries)
            .where(
                *conditions,
                sa.or_(
                    table.journal_sequence > after[0],
                    sa.and_(table.journal_sequence == after[0], table.entry_index > after[1]),
                ),
            )
            .order_by(table.journal_sequence, table.entry_index)
            .limit(batch_size)
        )
        rows = connection.execute(query).all()
        for row in rows:
            yield dict(row._mapping)
        if len(rows) < batch_size:
            return
        after = (int(rows[-1].journal_sequence), int(rows[-1].entry_index))
