"""Pure checks of ``ledger_db.validation``, ``ledger_db.schema``'s instant text and the journal's
hash formats: no database."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger_db import errors, limits
from ledger_db.journal import (
    ENTRY_COLUMNS_V3,
    HASH_VERSION_CURRENT,
    HASH_VERSIONS,
    TRANSACTION_COLUMNS_V3,
    transaction_hash,
)
from ledger_db.schema import UtcDateTime, instant_text, journal_entries, journal_transactions
from ledger_db.validation import (
    check_account_id,
    check_identifier,
    check_instant,
    check_meta,
    check_tenant_id,
    instant_after,
    json_number,
)

FIXTURE = Path(__file__).parents[1] / "ledger" / "fixtures" / "journal_v1.json"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e16, 10**16),
        (-0.0, 0),
        (1.5e300, 15 * 10**299),
        (2.0, 2),
        (2.0**60, 1152921504606847000),  # its shortest spelling, as json.dumps writes it
        (3.5, 3.5),
        (1.5e-7, 1.5e-7),
        (Decimal("1.50"), 1.5),
        (Decimal("100.0"), 100),
        (Decimal("1E+16"), 10**16),
        (Decimal("-0"), 0),
        (Decimal("0.1000000000000000055511151231257827"), None),
        (Decimal("NaN"), None),
        (Decimal("Infinity"), None),
        (Decimal("1E+5000"), None),
    ],
)
def test_json_numbers_are_what_jsonb_hands_back(value: Any, expected: Any) -> None:
    result = json_number(value)
    assert result == expected
    assert type(result) is type(expected)


def test_meta_is_normalised_recursively_and_its_size_measured_after() -> None:
    assert check_meta({"a": [1.0, {"b": -0.0}], "c": 0.5}) == {"a": [1, {"b": 0}], "c": 0.5}
    with pytest.raises(errors.InvalidEntry):
        check_meta({"blob": "x" * limits.meta_bytes_max})


@pytest.mark.parametrize(
    "value",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),  # UTC conversion overflows
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),  # year 10000 UTC
        datetime(999, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2025, 1, 1),
        date(2025, 1, 1),
        "2025-01-01T00:00:00Z",
        None,
    ],
)
def test_instants_outside_the_range_are_refused(value: object) -> None:
    with pytest.raises(errors.InvalidEntry) as caught:
        check_instant(value, "occurred_at")
    assert caught.value.details["field"] == "occurred_at"


def test_the_range_is_inclusive_and_sums_beyond_it_are_refused() -> None:
    assert check_instant(limits.instant_min, "t") == limits.instant_min
    assert check_instant(limits.instant_max, "t") == limits.instant_max
    with pytest.raises(errors.InvalidEntry) as caught:
        instant_after(datetime(9999, 12, 31, 23, 0, tzinfo=UTC), 7200, "expires_at")
    assert caught.value.details["field"] == "expires_at"


def test_ids_are_full_matches() -> None:
    for bad in ("acme\n", "acme\r", "a.b", ""):
        with pytest.raises(errors.InvalidEntry):
            check_tenant_id(bad)
    for bad in ("buyer\n", "@hold:", "@hold:x\x00", "@escrow:usd", "@whatever:USD", "@"):
        with pytest.raises(errors.InvalidEntry):
            check_account_id(bad)
    assert check_account_id("@hold:buyer.1") == "@hold:buyer.1"
    assert check_account_id("@operating:USDT") == "@operating:USDT"
    with pytest.raises(errors.InvalidEntry):
        check_identifier("order\x7f", "order_id")


def test_instant_text_is_fixed_width_and_reads_back_for_every_year() -> None:
    for value in (
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 5, tzinfo=UTC),
        limits.instant_min,
        limits.instant_max,
    ):
        text = instant_text(value)
        assert len(text) == 27
        assert UtcDateTime().process_result_value(text, None) == value  # type: ignore[arg-type]
    # What an earlier version wrote for year 999 (strftime's three digits) still reads back.
    assert UtcDateTime().process_result_value("999-01-01T00:00:00.000000Z", None) == datetime(  # type: ignore[arg-type]
        999, 1, 1, tzinfo=UTC
    )


def test_the_current_hash_version_covers_every_stored_column() -> None:
    """A new column of the journal must be hashed: adding one without a new hash version (and
    listing the column in it) fails here."""
    assert max(HASH_VERSIONS) == HASH_VERSION_CURRENT
    assert set(TRANSACTION_COLUMNS_V3) == {c.name for c in journal_transactions.columns} - {"hash"}
    assert set(ENTRY_COLUMNS_V3) == {c.name for c in journal_entries.columns}


def _loaded(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$instant"}:
        return datetime.fromisoformat(value["$instant"])
    return value


def test_version_1_hashes_what_the_first_release_wrote() -> None:
    """Every transaction of a journal written by the first release (the fixture) hashes to its
    stored hash under version 1, and no longer under version 2."""
    rows = json.loads(FIXTURE.read_text())
    entries: dict[int, list[dict[str, Any]]] = {}
    for entry in rows["journal_entries"]:
        entries.setdefault(entry["journal_sequence"], []).append(
            {key: _loaded(value) for key, value in entry.items()}
        )
    for transaction in rows["journal_transactions"]:
        row = {key: _loaded(value) for key, value in transaction.items()}
        posted = entries.get(row["sequence"], [])
        assert transaction_hash({**row, "hash_version": 1}, posted) == row["hash"]
        assert transaction_hash({**row, "hash_version": 2}, posted) != row["hash"]
