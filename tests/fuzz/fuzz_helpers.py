"""What the fuzz tests share: value strategies (any unicode, NUL and lone surrogates, sizes around
the limits, boundary amounts and instants), a snapshot of every ledger table, and the example
budget (``FUZZ_EXAMPLES`` scales it; ``make fuzz`` sets a larger one)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from hypothesis import strategies as st

from ledger_db import Ledger

# ``make fuzz`` sets FUZZ_SCALE=10: ten times the CI budget; FUZZ_EXAMPLES fixes the count.
SCALE = int(os.environ.get("FUZZ_SCALE") or 1)


def examples(ci: int) -> int:
    return int(os.environ.get("FUZZ_EXAMPLES", ci * SCALE))


# A fixed ledger clock: the boundaries of a caller's ``now`` (300 s behind, 31 days ahead) are
# then exact instants.
NOW = datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class FixedClock:
    def __call__(self) -> datetime:
        return NOW


ANY_CHARACTER = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())

SPECIAL_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\udc80",
    "ok\ud800",
    "\n",
    "tab\there",
    "\u202e",
    "\ufeff",
    "é",
    "e\u0301",
    "日本",
    "🙂",
    "@",
    "@hold:buyer",
    "@escrow:USD",
    "@external:USD",
    "buyer",
    "payee",
    "x" * 64,
    "x" * 65,
    "x" * 255,
    "x" * 256,
    "x" * 4096,
    "USD",
    "usd",
    "XXX",
    "BTC",
    "prod",
    "a.b",
    "a b",
    "%",
    "../etc",
    "'; DROP TABLE accounts; --",
    "null",
    "None",
]

TEXT = st.one_of(
    st.text(ANY_CHARACTER, max_size=24),
    st.text(ANY_CHARACTER, min_size=60, max_size=70),
    st.text(st.sampled_from("abcXYZ019-_.:@"), max_size=80),
    st.sampled_from(SPECIAL_TEXT),
)

AMOUNT_TEXT = [
    "0",
    "0.00",
    "0.01",
    "0.001",
    "1",
    "1.0",
    "1.00",
    "1.000",
    "92233720368547758.07",
    "92233720368547758.08",
    "9223372036854775807",
    "9223372036854775808",
    "9" * 64,
    "9" * 65,
    "1" + "0" * 63,
    "1e2",
    "1E2",
    "-1",
    "+1",
    "-0",
    " 1",
    "1 ",
    "1_000",
    "1,00",
    "\u0661",
    "\uff11",
    "1.",
    ".5",
    ".",
    "0x10",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "00001.50",
]

AMOUNTS = st.one_of(
    st.sampled_from(AMOUNT_TEXT),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(lambda minor: f"{minor // 100}.{minor % 100:02d}", st.integers(1, 2**64)),
    st.booleans(),
    st.none(),
)

ZONES = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)), timezone.min]
)

INSTANTS = st.one_of(
    st.sampled_from(
        [
            datetime(1970, 1, 1, tzinfo=UTC),
            datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            NOW,
            NOW - timedelta(seconds=300),
            NOW - timedelta(seconds=300) - MICROSECOND,
            NOW + timedelta(days=31),
            NOW + timedelta(days=31) + MICROSECOND,
            NOW.replace(tzinfo=None),
            datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
        ]
    ),
    st.builds(
        lambda delta: NOW + delta,
        st.timedeltas(min_value=timedelta(days=-40), max_value=timedelta(days=40)),
    ),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES),
)

TTLS = st.one_of(
    st.sampled_from([0, 1, 59, 60, 86400, 31 * 86400, 31 * 86400 + 1, 2**31, 2**63, -1]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    TEXT,
)

META = st.one_of(
    st.none(),
    st.dictionaries(
        TEXT,
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(2**80), max_value=2**80),
            st.floats(allow_nan=True, allow_infinity=True),
            TEXT,
            st.lists(st.integers(), max_size=3),
        ),
        max_size=4,
    ),
    st.lists(st.integers(), max_size=2),
    TEXT,
)

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(object()),
    st.just(()),
    st.just(set()),
)


def maybe(valid: Any, junk: st.SearchStrategy[Any], *, junk_probability: float = 0.3) -> Any:
    """A strategy: mostly the valid value, sometimes junk of the argument's kind."""
    weight = int(junk_probability * 10)
    return st.one_of(*([st.just(valid)] * (10 - weight)), *([junk] * weight))


Snapshot = dict[str, list[str]]


def take_snapshot(ledger: Ledger) -> Snapshot:
    """Every row of every table of the ledger's schema, as sorted text: equal means untouched."""
    from ledger_db import schema

    tables: Snapshot = {}
    with ledger.engine.connect() as connection:
        for table in schema.metadata.sorted_tables:
            rows = connection.execute(sa.select(table)).all()
            tables[table.name] = sorted(repr(tuple(row)) for row in rows)
    return tables


def changed_tables(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(name for name in before if before[name] != after.get(name))
