"""Fixtures of the ledger suites: a migrated ``Ledger`` per test on each engine, fresh tenants,
unique idempotency keys, and a snapshot of every table so that a rejected call can be shown to
have written nothing.

Helpers are handed out as fixtures (not imported) because ``tests/`` is not a package.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from ledger_db import Ledger

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


def new_key(prefix: str = "key") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def new_tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"


def utc_now() -> datetime:
    """Whole seconds, so that ``now + ttl`` never meets a rounding question of the store."""
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Tools:
    """What most tests need next to the ledger, in one object."""

    ledger: Ledger
    tenant_id: str

    def key(self, prefix: str = "key") -> str:
        return new_key(prefix)

    def snapshot(self) -> Snapshot:
        return take_snapshot(self.ledger)

    def agent(self, *, balance: str | None = None, currency: str = "USD", **kwargs: Any) -> str:
        """Opens an agent account (and tops it up when ``balance`` is given); returns its ID."""
        account = self.ledger.open_account(
            tenant_id=self.tenant_id,
            currency=currency,
            idempotency_key=self.key("open"),
            **kwargs,
        )
        if balance is not None:
            self.ledger.deposit(
                account.account_id,
                balance,
                tenant_id=self.tenant_id,
                idempotency_key=self.key("deposit"),
            )
        return account.account_id

    def minor(self, account_id: str) -> tuple[int, int, int]:
        """(posted, held, available) of an account, in minor units."""
        balance = self.ledger.get_balance(account_id, tenant_id=self.tenant_id)
        return balance.posted_minor, balance.held_minor, balance.available_minor


class ManualClock:
    """A ledger clock that moves only when the test says so (a caller's ``now`` must lie near
    the ledger's clock, so tests that need a fixed time move the clock instead)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def open_ledger(url: str, clock: ManualClock | None = None) -> Ledger:
    return Ledger.from_url(url) if clock is None else Ledger.from_url(url, clock=clock)


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """A migrated ledger on a fresh database, once on SQLite and once on PostgreSQL."""
    instance = open_ledger(database_url)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def clocked_ledger(database_url: str, clock: ManualClock) -> Iterator[Ledger]:
    """A migrated ledger whose clock is the ``clock`` fixture, on each engine."""
    instance = open_ledger(database_url, clock)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def pg_ledger(postgres_url: str) -> Iterator[Ledger]:
    """A migrated ledger on a fresh PostgreSQL database."""
    instance = open_ledger(postgres_url)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def tenant_id() -> str:
    return new_tenant()


@pytest.fixture
def tools(ledger: Ledger, tenant_id: str) -> Tools:
    return Tools(ledger=ledger, tenant_id=tenant_id)


@pytest.fixture
def snapshot() -> Callable[[Ledger], Snapshot]:
    return take_snapshot


@pytest.fixture
def tools_for(ledger: Ledger) -> Callable[[str], Tools]:
    """Tools for another tenant of the same ledger."""
    return lambda tenant: Tools(ledger=ledger, tenant_id=tenant)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The PostgreSQL half of every engine-parametrised ledger test carries the postgres mark."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)
