"""Exact sums of minor amounts in SQL, on both engines, past 2^63 - 1.

PostgreSQL's ``sum(bigint)`` is a ``numeric``: exact at any size. SQLite's ``sum()`` of integers
raises ``integer overflow`` once a total leaves 64 bits (and ``total()`` is a float). So on SQLite
a non-negative amount is summed in two halves, its high 32 bits and its low 32 bits, each of
which fits 64 bits for up to 2^31 rows; Python adds them back exactly. Signed totals are an IN sum
minus an OUT sum, both non-negative.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ledger_db.schema import journal_entries

__all__ = ["amounts_in_out", "exact_sum", "exact_sum_columns", "net_minor"]

_LOW_BITS = 32
_LOW_MASK = (1 << _LOW_BITS) - 1


def exact_sum_columns(amount: Any, dialect_name: str, label: str) -> list[Any]:
    """The aggregate columns whose values :func:`exact_sum` adds up (``amount`` is a
    non-negative integer expression; rows where it is NULL count as zero)."""
    if dialect_name != "sqlite":
        return [sa.func.coalesce(sa.func.sum(amount), 0).label(label)]
    return [
        sa.func.coalesce(sa.func.sum(amount.op(">>")(_LOW_BITS)), 0).label(f"{label}_high"),
        sa.func.coalesce(sa.func.sum(amount.op("&")(_LOW_MASK)), 0).label(f"{label}_low"),
    ]


def exact_sum(row: Any, dialect_name: str, label: str) -> int:
    """The exact total of the columns :func:`exact_sum_columns` made, read from ``row``."""
    mapping = row._mapping
    if dialect_name != "sqlite":
        return int(mapping[label])
    return (int(mapping[f"{label}_high"]) << _LOW_BITS) + int(mapping[f"{label}_low"])


def amounts_in_out() -> tuple[Any, Any]:
    """A journal entry's amount as an IN part and an OUT part (the other one zero)."""
    table = journal_entries.c
    return tuple(  # type: ignore[return-value]
        sa.case((table.direction == direction, table.amount_minor), else_=0)
        for direction in ("IN", "OUT")
    )


def net_minor(connection: sa.Connection, conditions: Sequence[Any]) -> int:
    """IN minus OUT of the journal entries matching ``conditions``, exactly."""
    dialect_name = connection.dialect.name
    amount_in, amount_out = amounts_in_out()
    row = connection.execute(
        sa.select(
            *exact_sum_columns(amount_in, dialect_name, "in"),
            *exact_sum_columns(amount_out, dialect_name, "out"),
        ).where(*conditions)
    ).one()
    return exact_sum(row, dialect_name, "in") - exact_sum(row, dialect_name, "out")
