"""Billing events: from the ledger's outbox to NATS JetStream, at least once, deduplicated.

The journal transaction and its outbox rows commit together (``ledger_db``). Then:

- the ledger step's activity that committed them sends them right away and marks them sent,
  best effort (:meth:`EventPublisher.publish_best_effort`): a bus outage never blocks, slows or
  fails a hold. (The ``publish`` activity does the same for the frozen first HoldWorkflow.);
- the relay (:func:`relay_unsent`, :func:`relay_outbox` for the CLI, and a periodic task in the
  worker) sends whatever is still unsent: a crash between publish and mark, or an outage.

On the bus: stream ``BILLING`` over subjects ``billing.>``, one message per event on
``billing.<tenant>.<type>`` with header ``Nats-Msg-Id`` = the event ID, so JetStream drops a
resend within its duplicate window, and consumers dedupe by event ID beyond it. Without
``NATS_URL`` publishing is a no-op and the outbox itself is the event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from temporalio import activity

from ledger_db import Event, Ledger
from ledger_db import limits as ledger_limits
from workflows import activity_names
from workflows.models import PublishEventsInput

__all__ = [
    "EventActivities",
    "EventPublisher",
    "NatsSettings",
    "event_message",
    "event_subject",
    "publish_unsent",
    "relay_outbox",
    "relay_unsent",
    "tenant_subjects",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# JetStream drops a message whose Nats-Msg-Id it saw within this window. An hour covers any
# relay of a crash or an outage of ordinary length; consumers dedupe by event ID beyond it.
DUPLICATE_WINDOW_SECONDS = 3600.0
PUBLISH_ACK_TIMEOUT_SECONDS = 5.0
# After a failed best-effort publish the bus is left alone this long: during an outage the ledger
# steps do not each wait for a connection timeout; the relay sends what they leave.
BEST_EFFORT_PAUSE_SECONDS = 5.0
RELAY_BATCH_SIZE = 100
# One relay run sends at most this many batches; the next run continues where it stopped.
RELAY_BATCHES_MAX = 100


@dataclass(frozen=True)
class NatsSettings:
    """Where events go. ``url`` None means no bus: the outbox is the event log."""

    url: str | None = None
    stream: str = "BILLING"
    subject_prefix: str = "billing"
    connect_timeout_seconds: float = 2.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NatsSettings:
        environ = os.environ if environ is None else environ
        return cls(
            url=environ.get("NATS_URL") or None,
            stream=environ.get("NATS_STREAM") or "BILLING",
            subject_prefix=environ.get("NATS_SUBJECT_PREFIX") or "billing",
        )

    @property
    def enabled(self) -> bool:
        return self.url is not None


def _subject_token(text: str) -> str:
    # A dot separates subject tokens and tenant IDs may contain dots: escape it so that each
    # tenant stays exactly one token (tenant IDs never contain '%').
    return text.replace("%", "%25").replace(".", "%2E")


def event_subject(settings: NatsSettings, event: Event) -> str:
    """``billing.<tenant>.<type>``."""
    return f"{settings.subject_prefix}.{_subject_token(event.tenant_id)}.{event.type}"


def tenant_subjects(settings: NatsSettings, tenant_id: str) -> str:
    """``billing.<tenant>.>``: every event subject of one tenant (for a subscriber)."""
    return f"{settings.subject_prefix}.{_subject_token(tenant_id)}.>"


def event_message(event: Event) -> bytes:
    """The envelope as published: every field but the outbox's own bookkeeping."""
    body = event.model_dump(mode="json", exclude={"sequence", "sent_at"})
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class EventPublisher:
    """One NATS connection (opened lazily, reopened after a failure) publishing to JetStream."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self._client: NatsClient | None = None
        self._jetstream: JetStreamContext | None = None
        self._lock = asyncio.Lock()
        self._paused_until = 0.0

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    async def _connect(self) -> JetStreamContext:
        async with self._lock:
            if self._jetstream is not None and self._client is not None:
                if self._client.is_connected:
                    return self._jetstream
                await self._reset()
            # Fail fast when the bus is down: the activity's retry policy and the relay do the
            # retrying. (nats-py treats max_reconnect_attempts=0 as "forever" while connecting.)
            timeout = self.settings.connect_timeout_seconds
            client = await asyncio.wait_for(
                nats.connect(
                    servers=[self.settings.url or ""],
                    connect_timeout=timeout,
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0,
                    name="compute-ledger",
                    error_cb=_log_nats_error,
                ),
                timeout=2 * timeout + 1,
            )
            try:
                jetstream = client.jetstream()
                await self._ensure_stream(jetstream)
            except BaseException:
                await client.close()
                raise
            self._client, self._jetstream = client, jetstream
            return jetstream

    async def _ensure_stream(self, jetstream: JetStreamContext) -> None:
        try:
            await jetstream.stream_info(self.settings.stream)
            return
        except NotFoundError:
            pass
        try:
            await jetstream.add_stream(
                StreamConfig(
                    name=self.settings.stream,
                    subjects=[f"{self.settings.subject_prefix}.>"],
                    duplicate_window=DUPLICATE_WINDOW_SECONDS,
                )
            )
        except Exception:
            # Another worker may have created it a moment ago; only then is this fine.
            await jetstream.stream_info(self.settings.stream)

    async def _reset(self) -> None:
        client, self._client, self._jetstream = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    async def publish(self, events: Sequence[Event]) -> list[str]:
        """Publishes ``events`` in order; returns their IDs. Raises if any was not acknowledged."""
        if not self.enabled or not events:
            return []
        jetstream = await self._connect()
        published: list[str] = []
        try:
            for event in events:
                await jetstream.publish(
                    event_subject(self.settings, event),
                    event_message(event),
                    timeout=PUBLISH_ACK_TIMEOUT_SECONDS,
                    stream=self.settings.stream,
                    headers={"Nats-Msg-Id": event.event_id},
                )
                published.append(event.event_id)
        except BaseException:
            await self._reset()
            raise
        return published

    async def publish_best_effort(self, events: Sequence[Event]) -> list[str]:
        """Publishes what it can now; returns the IDs sent. Never raises for a bus failure.

        After a failure it does not try again for ``BEST_EFFORT_PAUSE_SECONDS``, so that an
        outage costs one connection timeout, not one per ledger step.
        """
        if not self.enabled or not events or time.monotonic() < self._paused_until:
            return []
        try:
            return await self.publish(events)
        except Exception as error:
            self._paused_until = time.monotonic() + BEST_EFFORT_PAUSE_SECONDS
            log.warning("events left to the relay, the bus did not take them: %s", error)
            return []

    async def close(self) -> None:
        async with self._lock:
            await self._reset()


async def _log_nats_error(error: Exception) -> None:
    log.warning("NATS error: %s", error)


class EventActivities:
    """The publish activity, bound to a ledger and a publisher."""

    def __init__(self, ledger: Ledger, publisher: EventPublisher) -> None:
        self.ledger = ledger
        self.publisher = publisher

    def all(self) -> list[Any]:
        return [self.publish_transaction_events]

    @activity.defn(name=activity_names.PUBLISH_EVENTS)
    async def publish_transaction_events(self, params: PublishEventsInput) -> int:
        """Sends one transaction's unsent events and marks them sent; returns how many.

        (The frozen first HoldWorkflow's step; raises when the bus fails, so it retries.)"""
        _, sent = await publish_unsent(
            self.ledger,
            self.publisher,
            _in_thread,
            best_effort=False,
            tenant_id=params.tenant_id,
            transaction_id=params.transaction_id,
        )
        return sent


async def _in_thread(function: Callable[..., T], /, **kwargs: Any) -> T:
    return await asyncio.to_thread(functools.partial(function, **kwargs))


async def publish_unsent(
    ledger: Ledger,
    publisher: EventPublisher,
    run: Callable[..., Awaitable[Any]],
    *,
    best_effort: bool,
    **where: str,
) -> tuple[int, int]:
    """Sends the unsent outbox events ``where`` selects (``hold_id=``, ``transaction_id=``, with
    ``tenant_id=``) and marks them sent; returns (found, sent). ``run`` calls the ledger off the
    event loop. Best effort: a bus failure sends nothing and raises nothing."""
    if not publisher.enabled:
        return 0, 0
    events: list[Event] = await run(
        ledger.list_events, unsent_only=True, limit=ledger_limits.page_size_max, **where
    )
    if best_effort:
        sent = await publisher.publish_best_effort(events)
    else:
        sent = await publisher.publish(events)
    if sent:
        await run(ledger.mark_events_sent, event_ids=sent)
    return len(events), len(sent)


async def relay_unsent(
    ledger: Ledger,
    publisher: EventPublisher,
    *,
    tenant_id: str | None = None,
    batch_size: int = RELAY_BATCH_SIZE,
    batches_max: int = RELAY_BATCHES_MAX,
) -> int:
    """Sends every unsent outbox event (oldest first) and marks it sent; returns how many."""
    if not publisher.enabled:
        return 0
    after_sequence = 0
    sent_total = 0
    for _ in range(batches_max):
        if tenant_id is None:
            events = await asyncio.to_thread(
                ledger.list_unsent_events_all_tenants,
                after_sequence=after_sequence,
                limit=batch_size,
            )
        else:
            events = await asyncio.to_thread(
                ledger.list_events,
                tenant_id=tenant_id,
                after_sequence=after_sequence,
                limit=batch_size,
                unsent_only=True,
            )
        if not events:
            break
        sent = await publisher.publish(events)
        await asyncio.to_thread(ledger.mark_events_sent, sent)
        sent_total += len(sent)
        after_sequence = events[-1].sequence
        if len(events) < batch_size:
            break
    return sent_total


async def relay_outbox(
    *,
    database_url: str | None = None,
    nats: NatsSettings | None = None,
    tenant_id: str | None = None,
    config: Any = None,
) -> int:
    """The ``compute-ledger relay`` entry point: one relay run over ``database_url``.

    ``nats`` defaults to the environment's settings (``NATS_URL``...), ``database_url`` to the
    ledger's default. ``config`` (anything with ``database_url`` and ``nats``, such as a
    ``starter.config.ClientConfig``) is the older spelling of the two and still accepted. This
    module never imports ``starter``: the caller passes what it configured.
    """
    if config is not None:
        database_url = database_url or config.database_url
        nats = nats or config.nats
    ledger = await asyncio.to_thread(Ledger.from_url, database_url)
    publisher = EventPublisher(nats or NatsSettings.from_env())
    try:
        return await relay_unsent(ledger, publisher, tenant_id=tenant_id)
    finally:
        await publisher.close()
        ledger.close()
