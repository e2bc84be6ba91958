"""The worker's periodic checkpoint, and the LEDGER_CHECKPOINT event on a real NATS JetStream
(NATS_URL, default nats://127.0.0.1:4222): the message read back from the stream is a checkpoint
the books are audited against. NATS being unreachable fails these tests; it never skips them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
import pytest_asyncio
import sqlalchemy as sa

from activities.events import EventPublisher, NatsSettings, relay_unsent
from ledger_db import Ledger
from ledger_db.checkpoint import (
    CHECKPOINT_EVENT_TYPE,
    CHECKPOINT_TENANT_ID,
    parse_checkpoint,
    take_checkpoint,
    verify_against_checkpoint,
)
from ledger_db.schema import ledger_checkpoints, outbox_events
from worker import checkpoint_once, run_checkpoints_periodically

pytestmark = [pytest.mark.asyncio(loop_scope="session")]

NATS_URL = os.environ.get("NATS_URL") or "nats://127.0.0.1:4222"


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[Ledger]:
    instance = Ledger.from_url(sqlite_url)
    try:
        yield instance
    finally:
        instance.close()


def _deposit(ledger: Ledger, tenant: str) -> None:
    key = uuid.uuid4().hex
    ledger.open_account(tenant_id=tenant, account_id="buyer", currency="USD", idempotency_key=key)
    ledger.deposit("buyer", "5.00", tenant_id=tenant, idempotency_key=f"{key}-d")


def _stored_roots(ledger: Ledger) -> list[str]:
    with ledger.engine.connect() as connection:
        query = sa.select(ledger_checkpoints.c.root).order_by(ledger_checkpoints.c.sequence)
        return list(connection.execute(query).scalars())


async def test_the_worker_checkpoints_periodically_and_only_what_changed(ledger: Ledger) -> None:
    _deposit(ledger, "acme")
    stop = asyncio.Event()
    publisher = EventPublisher(NatsSettings())  # no bus: the outbox keeps the event
    loop = asyncio.create_task(
        run_checkpoints_periodically(ledger, publisher, interval_seconds=0.05, stop=stop)
    )
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if _stored_roots(ledger):
                break
        await asyncio.sleep(0.3)  # several more rounds over unchanged books
        assert len(_stored_roots(ledger)) == 1
        _deposit(ledger, "globex")
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(_stored_roots(ledger)) == 2:
                break
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
    roots = _stored_roots(ledger)
    assert len(roots) == 2 and roots[0] != roots[1]
    with ledger.engine.connect() as connection:
        events = connection.execute(
            sa.select(outbox_events.c.tenant_id, outbox_events.c.sent_at).where(
                outbox_events.c.type == CHECKPOINT_EVENT_TYPE
            )
        ).all()
    assert [(event.tenant_id, event.sent_at) for event in events] == [
        (CHECKPOINT_TENANT_ID, None),
        (CHECKPOINT_TENANT_ID, None),
    ]


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


async def _stream_messages(settings: NatsSettings) -> list[dict[str, Any]]:
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
                    "data": message.data or b"",
                }
            )
        return messages
    finally:
        await connection.close()


@pytest.mark.nats
async def test_a_checkpoint_is_published_on_the_bus_and_audits_the_books(
    ledger: Ledger, nats_settings: NatsSettings
) -> None:
    _deposit(ledger, "acme")
    _deposit(ledger, "globex")
    publisher = EventPublisher(nats_settings)
    try:
        # The worker's round: stored, published at once, marked sent.
        taken = await checkpoint_once(ledger, publisher)
        assert taken is not None
        # The CLI's: stored, left to the relay.
        _deposit(ledger, "initech")
        relayed, _ = take_checkpoint(ledger.engine, ledger.clock())
        assert await relay_unsent(ledger, publisher) >= 1
    finally:
        await publisher.close()
    messages = [
        message
        for message in await _stream_messages(nats_settings)
        if message["subject"].endswith(f".{CHECKPOINT_TENANT_ID}.{CHECKPOINT_EVENT_TYPE}")
    ]
    assert [message["subject"] for message in messages] == [
        f"{nats_settings.subject_prefix}._ledger.LEDGER_CHECKPOINT"
    ] * 2
    from_bus = [parse_checkpoint(message["data"]) for message in messages]
    assert from_bus == [taken, relayed]
    assert json.loads(messages[0]["data"])["event_id"] == messages[0]["msg_id"]
    with ledger.engine.connect() as connection:
        for checkpoint in from_bus:
            assert verify_against_checkpoint(connection, checkpoint) == []
        unsent = connection.execute(
            sa.select(sa.func.count())
            .select_from(outbox_events)
            .where(outbox_events.c.type == CHECKPOINT_EVENT_TYPE, outbox_events.c.sent_at.is_(None))
        ).scalar_one()
    assert unsent == 0
