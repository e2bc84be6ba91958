"""Fixtures of the read API tests: a migrated ledger on each engine with two tenants' data and
their keys, and the API on a real uvicorn server, stopped after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import Api, populate, start_api

from ledger_db import Ledger
from ledger_db.api_keys import create_api_key, revoke_api_key


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """A migrated ledger on each engine (``db upgrade`` is what migrates in production)."""
    opened = Ledger.from_url(database_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def api(ledger: Ledger) -> Iterator[Api]:
    alpha = populate(ledger, "alpha", "a")
    beta = populate(ledger, "beta", "b")
    spare = create_api_key(ledger.engine, tenant_id="beta", name="revoked")
    revoke_api_key(ledger.engine, spare.api_key.key_id)
    with start_api(ledger) as server:
        yield Api(server=server, ledger=ledger, alpha=alpha, beta=beta, revoked_key=spare.key)
