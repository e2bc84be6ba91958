"""The client's reads during a database outage answer ``ledger_unavailable`` (a ``LedgerError``,
which the client promises for every failure), not the driver's ``OperationalError``: the
``postgres_restart`` scenario saw 63 raw ``sqlalchemy.exc.OperationalError`` from
``wait_for_hold`` (its ledger read) while the database restarted, before this."""

from __future__ import annotations

from typing import Any

import pytest

from ledger_db import Ledger
from ledger_db.database import create_engine
from ledger_db.errors import LedgerUnavailable
from starter.client import ClientConfig, LedgerClient
from starter.dev import free_port

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="session")]


class _NoTemporal:
    """Reads never reach Temporal; anything that does fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the read used Temporal ({name})")


@pytest.mark.parametrize(
    "read",
    [
        lambda client: client.get_hold("h-1", tenant_id="t"),
        lambda client: client.get_balance("buyer", tenant_id="t"),
        lambda client: client.list_events(tenant_id="t"),
        lambda client: client.deposit("buyer", "1.00", tenant_id="t", idempotency_key="k"),
    ],
)
async def test_a_ledger_call_with_the_database_down_is_ledger_unavailable(read: Any) -> None:
    down = Ledger(create_engine(f"postgresql+psycopg://127.0.0.1:{free_port()}/nothing"))
    client = LedgerClient(_NoTemporal(), down, ClientConfig())  # type: ignore[arg-type]
    try:
        with pytest.raises(LedgerUnavailable):
            await read(client)
    finally:
        await client.close()
