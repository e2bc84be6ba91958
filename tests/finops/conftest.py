"""Fixtures of the FinOps suites: migrated ledgers on real databases with a controllable clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from finops_data import Clock

from ledger_db import Ledger


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _open(url: str, clock: Clock) -> Iterator[Ledger]:
    ledger = Ledger.from_url(url, clock=clock)
    try:
        yield ledger
    finally:
        ledger.close()


@pytest.fixture
def ledger(database_url: str, clock: Clock) -> Iterator[Ledger]:
    """A migrated ledger, once on SQLite and once on PostgreSQL."""
    yield from _open(database_url, clock)


@pytest.fixture
def sqlite_ledger(sqlite_url: str, clock: Clock) -> Iterator[Ledger]:
    yield from _open(sqlite_url, clock)


@pytest.fixture
def postgres_ledger(postgres_url: str, clock: Clock) -> Iterator[Ledger]:
    yield from _open(postgres_url, clock)
