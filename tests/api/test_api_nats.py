"""The event stream with NATS JetStream (NATS_URL, default nats://127.0.0.1:4222): a message on
the tenant's subjects wakes the stream at once; the outbox still decides what is sent and in
which order, so an event the bus never carried is not lost and does not come out of order.

The stream's own poll is set to 30 s here: an event that arrives within a second or two can
only have come through the doorbell. Each test uses a stream and subject prefix of its own,
deleted afterwards; NATS being unreachable fails these tests, it never skips them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import nats
import pytest
import pytest_asyncio
from api_helpers import TEST_SETTINGS, start_api

from activities.events import EventPublisher, NatsSettings
from ledger_db import Ledger
from ledger_db.api_keys import create_api_key

pytestmark = pytest.mark.nats

NATS_URL = os.environ.get("NATS_URL") or "nats://127.0.0.1:4222"
slow_poll_seconds = 30.0
prompt_seconds = 3.0


@pytest_asyncio.fixture
async def nats_settings() -> AsyncIterator[NatsSettings]:
    token = uuid.uuid4().hex[:10]
    settings = NatsSettings(
        url=NATS_URL, stream=f"API_TEST_{token}", subject_prefix=f"apitest{token}"
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


def _freeze(ledger: Ledger, key: str) -> str:
    hold = ledger.freeze(
        "buyer", "1.00", "N", tenant_id="busy", idempotency_key=key, ttl_seconds=3600
    )
    return hold.hold_id


async def _next(websocket: object, seconds: float) -> dict[str, object]:
    return json.loads(await asyncio.wait_for(websocket.recv(), seconds))  # type: ignore[attr-defined]


async def test_the_bus_wakes_the_stream_and_the_outbox_keeps_the_order(
    ledger: Ledger, nats_settings: NatsSettings
) -> None:
    from websockets.asyncio.client import connect

    ledger.open_account(tenant_id="busy", account_id="buyer", currency="USD", idempotency_key="o")
    ledger.deposit("buyer", "100.00", tenant_id="busy", idempotency_key="d")
    key = create_api_key(ledger.engine, tenant_id="busy").key
    settings = replace(
        TEST_SETTINGS,
        nats=nats_settings,
        stream_poll_interval_seconds=slow_poll_seconds,
        stream_bus_poll_interval_seconds=slow_poll_seconds,
        stream_key_check_interval_seconds=slow_poll_seconds,
    )
    publisher = EventPublisher(nats_settings)
    with start_api(ledger, settings) as server:
        streams = server.app.state.streams
        for _ in range(100):
            if streams.doorbell.connected:
                break
            await asyncio.sleep(0.05)
        assert streams.source == "nats" and streams.doorbell.connected
        url = server.url.replace("http://", "ws://") + "/v1/events/stream"
        async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            await asyncio.sleep(0.3)  # the stream has read the (empty) outbox and subscribed

            # An event the bus never carried (its publish failed, the relay has not run)...
            lost = await asyncio.to_thread(_freeze, ledger, "lost")
            with pytest.raises(TimeoutError):
                await _next(ws, 1.0)
            # ...then one published as the worker publishes it: the doorbell rings, and both
            # come, in the ledger's order.
            carried = await asyncio.to_thread(_freeze, ledger, "carried")
            events = await asyncio.to_thread(
                ledger.list_events, tenant_id="busy", unsent_only=True, limit=10
            )
            started = time.monotonic()
            await publisher.publish([event for event in events if event.hold_id == carried])
            first = await _next(ws, prompt_seconds)
            second = await _next(ws, prompt_seconds)
            elapsed = time.monotonic() - started
            assert [first["hold_id"], second["hold_id"]] == [lost, carried]
            assert elapsed < prompt_seconds < slow_poll_seconds
            assert int(str(first["sequence"])) < int(str(second["sequence"]))

            # The doorbell is the tenant's own: a message on another tenant's subjects does not
            # wake this stream, one on its own does.
            pending = await asyncio.to_thread(_freeze, ledger, "pending")
            connection = await nats.connect(NATS_URL, connect_timeout=2)
            try:
                prefix = nats_settings.subject_prefix
                await connection.publish(f"{prefix}.someone.INTENT_CREATED", b"{}")
                await connection.flush()
                with pytest.raises(TimeoutError):
                    await _next(ws, 1.0)
                await connection.publish(f"{prefix}.busy.INTENT_CREATED", b"{}")
                await connection.flush()
                woken = await _next(ws, prompt_seconds)
                assert woken["hold_id"] == pending
            finally:
                await connection.close()
    await publisher.close()
