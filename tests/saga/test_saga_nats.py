"""Billing events on a real NATS JetStream (NATS_URL, default nats://127.0.0.1:4222).

Each test uses a stream and subject prefix of its own on the shared server and deletes them
afterwards. NATS being unreachable fails these tests; it never skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
import pytest_asyncio
from saga_helpers import Tenant, event_types, fund_tenant, hold_kinds
from temporalio.testing import WorkflowEnvironment

from activities.events import EventPublisher, NatsSettings, event_subject, relay_unsent
from ledger_db import HoldState, Ledger
from starter.client import ClientConfig, LedgerClient
from worker import build_worker, run_worker

pytestmark = [pytest.mark.nats, pytest.mark.temporal, pytest.mark.asyncio(loop_scope="session")]

NATS_URL = os.environ.get("NATS_URL") or "nats://127.0.0.1:4222"


@pytest_asyncio.fixture(loop_scope="session")
async def nats_settings() -> AsyncIterator[NatsSettings]:
    """A stream and subject prefix of this test's own; deleted afterwards."""
    token = uuid.uuid4().hex[:10]
    settings = NatsSettings(
        url=NATS_URL, stream=f"BILLING_TEST_{token}", subject_prefix=f"billingtest{token}"
    )
    try:
        connection = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
    except Exception as error:  # pragma: no cover - a CI configuration failure
        pytest.fail(f"NATS JetStream is required at {NATS_URL}: {error!r}")
    try:
        yield settings
    finally:
        with contextlib.suppress(Exception):
            await connection.jetstream().delete_stream(settings.stream)
        await connection.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def stream_messages(settings: NatsSettings) -> list[dict[str, Any]]:
    """Every message of the stream, in order: subject, Nats-Msg-Id and the decoded body."""
    connection = await nats.connect(settings.url, connect_timeout=2, allow_reconnect=False)
    try:
        jetstream = connection.jetstream()
        info = await jetstream.stream_info(settings.stream)
        messages = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            message = await jetstream.get_msg(settings.stream, sequence)
            messages.append(
                {
                    "subject": message.subject,
                    "msg_id": (message.headers or {}).get("Nats-Msg-Id"),
                    "body": json.loads(message.data or b"{}"),
                }
            )
        return messages
    finally:
        await connection.close()


async def _lifecycles(client: LedgerClient, tenant: Tenant) -> dict[str, str]:
    """A partial capture (finalized), a release and an expiry; returns {path: hold_id}."""

    async def freeze(key: str, amount: str, ttl_seconds: int = 600) -> str:
        hold = await client.freeze(
            tenant.buyer,
            amount,
            "NEGOTIATION",
            tenant_id=tenant.tenant_id,
            idempotency_key=key,
            ttl_seconds=ttl_seconds,
            payee_account_id=tenant.seller,
            fee_bps=100,
        )
        return hold.hold_id

    holds = {
        "capture": await freeze("capture", "30.00"),
        "release": await freeze("release", "10.00"),
        "expire": await freeze("expire", "5.00", ttl_seconds=1),
    }
    await client.capture_hold(
        holds["capture"], "order-1", tenant_id=tenant.tenant_id, idempotency_key="c", amount="20"
    )
    await client.release_hold(holds["release"], tenant_id=tenant.tenant_id, idempotency_key="r")
    finals = {
        path: await asyncio.wait_for(
            client.wait_for_hold(hold_id, tenant_id=tenant.tenant_id), timeout=60
        )
        for path, hold_id in holds.items()
    }
    assert finals["capture"].state is HoldState.CAPTURED and finals["capture"].finalized
    assert finals["release"].state is HoldState.RELEASED
    assert finals["expire"].state is HoldState.EXPIRED
    return holds


EXPECTED_TYPES = {
    "capture": ["INTENT_CREATED", "ORDER_CREATED", "PAYMENT_SUCCEEDED"],
    "release": ["INTENT_CREATED", "HOLD_RELEASED"],
    "expire": ["INTENT_CREATED", "HOLD_EXPIRED"],
}


def _assert_bus_matches_outbox(
    ledger: Ledger,
    tenant: Tenant,
    holds: dict[str, str],
    messages: list[dict[str, Any]],
    settings: NatsSettings,
) -> None:
    outbox = ledger.list_events(tenant_id=tenant.tenant_id, limit=1000)
    assert all(event.sent_at is not None for event in outbox)
    # After dedupe by event ID the bus holds exactly the outbox, once each.
    by_id = {message["msg_id"]: message for message in messages}
    assert set(by_id) == {event.event_id for event in outbox}
    for event in outbox:
        message = by_id[event.event_id]
        assert message["subject"] == event_subject(settings, event)
        assert message["subject"] == f"{settings.subject_prefix}.{tenant.tenant_id}.{event.type}"
        assert message["body"]["event_id"] == event.event_id
        assert message["body"]["type"] == event.type
        assert message["body"]["tenant_id"] == tenant.tenant_id
    for path, hold_id in holds.items():
        published = [m["body"]["type"] for m in messages if m["body"]["hold_id"] == hold_id]
        assert sorted(set(published)) == sorted(EXPECTED_TYPES[path])
        assert event_types(ledger, tenant.tenant_id, hold_id) == EXPECTED_TYPES[path]


async def test_each_lifecycle_publishes_its_events_once(
    dev_env: WorkflowEnvironment,
    ledger: Ledger,
    tenant: Tenant,
    task_queue: str,
    nats_settings: NatsSettings,
) -> None:
    client = await LedgerClient.connect(
        ClientConfig(task_queue=task_queue), temporal=dev_env.client, ledger=ledger
    )
    publisher = EventPublisher(nats_settings)
    async with build_worker(dev_env.client, ledger, task_queue=task_queue, publisher=publisher):
        holds = await _lifecycles(client, tenant)
        # A relay run afterwards finds nothing to send, and a resend is dropped by JetStream.
        assert await relay_unsent(ledger, publisher, tenant_id=tenant.tenant_id) == 0
        outbox = ledger.list_events(tenant_id=tenant.tenant_id, limit=1000)
        await publisher.publish(outbox[:2])
        for hold_id in holds.values():
            state = await client.hold_state(hold_id, tenant_id=tenant.tenant_id)
            assert state.events_unpublished == 0
    await publisher.close()
    messages = await stream_messages(nats_settings)
    assert len(messages) == 7  # 3 + 2 + 2 events, each stored once on the stream
    _assert_bus_matches_outbox(ledger, tenant, holds, messages, nats_settings)


async def test_holds_complete_while_nats_is_down_and_the_relay_sends_later(
    dev_env: WorkflowEnvironment,
    ledger: Ledger,
    tenant: Tenant,
    task_queue: str,
    nats_settings: NatsSettings,
) -> None:
    down = NatsSettings(
        url=f"nats://127.0.0.1:{_closed_port()}",
        stream=nats_settings.stream,
        subject_prefix=nats_settings.subject_prefix,
    )
    client = await LedgerClient.connect(
        ClientConfig(task_queue=task_queue), temporal=dev_env.client, ledger=ledger
    )
    unreachable = EventPublisher(down)
    async with build_worker(dev_env.client, ledger, task_queue=task_queue, publisher=unreachable):
        holds = await _lifecycles(client, tenant)
        for path, hold_id in holds.items():
            state = await client.hold_state(hold_id, tenant_id=tenant.tenant_id)
            assert state.events_unpublished == len(EXPECTED_TYPES[path])
    await unreachable.close()
    for path, hold_id in holds.items():
        assert len(hold_kinds(ledger, tenant.tenant_id, hold_id)) == len(EXPECTED_TYPES[path])
    unsent = ledger.list_events(tenant_id=tenant.tenant_id, unsent_only=True, limit=1000)
    assert len(unsent) == 7
    # NATS is back: the relay sends everything once; a second run has nothing left.
    publisher = EventPublisher(nats_settings)
    try:
        assert await relay_unsent(ledger, publisher) == 7
        assert await relay_unsent(ledger, publisher) == 0
    finally:
        await publisher.close()
    messages = await stream_messages(nats_settings)
    assert len(messages) == 7
    _assert_bus_matches_outbox(ledger, tenant, holds, messages, nats_settings)


async def test_the_worker_relays_what_a_crash_left_unsent(
    dev_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, nats_settings: NatsSettings
) -> None:
    # Events written while no bus was reachable (straight through the ledger: no publish).
    ledger = Ledger.from_url(sqlite_url)
    try:
        tenant = fund_tenant(ledger)
        hold = ledger.freeze(
            tenant.buyer,
            "1.00",
            "NEGOTIATION",
            tenant_id=tenant.tenant_id,
            idempotency_key="direct",
            ttl_seconds=60,
        )
        ledger.release_hold(hold.hold_id, tenant_id=tenant.tenant_id, idempotency_key="direct-r")
        assert len(ledger.list_events(tenant_id=tenant.tenant_id, unsent_only=True)) == 2
        config = ClientConfig(
            temporal_address=dev_env.client.service_client.config.target_host,
            namespace=dev_env.client.namespace,
            task_queue=task_queue,
            database_url=sqlite_url,
            nats=nats_settings,
            relay_interval_seconds=0.2,
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(config, stop, client=dev_env.client))
        try:
            for _ in range(100):
                if not ledger.list_events(tenant_id=tenant.tenant_id, unsent_only=True):
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(worker, timeout=30)
        assert ledger.list_events(tenant_id=tenant.tenant_id, unsent_only=True) == []
        messages = await stream_messages(nats_settings)
        assert [message["body"]["type"] for message in messages] == [
            "INTENT_CREATED",
            "HOLD_RELEASED",
        ]
    finally:
        ledger.close()


async def test_relay_outbox_entry_point_without_nats_is_a_no_op(sqlite_url: str) -> None:
    from activities.events import relay_outbox

    config = ClientConfig(database_url=sqlite_url)
    assert await relay_outbox(config=config) == 0
