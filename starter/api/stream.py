"""``WebSocket /v1/events/stream?after=SEQ``: a tenant's billing events, pushed in order.

The outbox is the stream's only source of events and of their order. A stream reads the
tenant's outbox rows after the last sequence it sent (``after`` to begin with), sends each as
one text message (the envelope of DESIGN section 6 plus its ``sequence``), and reads on. A
client that reconnects with ``after=<the last sequence it processed>`` therefore receives
exactly the events it missed, nothing twice and in the ledger's order, whatever happened
meanwhile. (Outbox sequences of one tenant become visible in increasing order because every
journal write, its outbox rows included, holds the journal head's lock until it commits.)

NATS JetStream, when ``NATS_URL`` is set, is the doorbell, not the source: each stream
subscribes to its tenant's subjects (``billing.<tenant>.>``) and reads the outbox as soon as a
message arrives, instead of polling every ``stream_poll_interval_seconds``; it still polls every
``stream_bus_poll_interval_seconds`` for events the bus has not carried (a publish that failed
and waits for the relay). The bus's own order cannot serve for resuming: a relayed event reaches
JetStream after later ones, and the global outbox sequence leaves gaps per tenant that no
consumer could tell from a lost message.

Bounds: at most ``stream_queue_size`` events wait per connection (the reader fetches only as
much as there is room for, so a slow client slows its reader instead of growing memory). A
client that accepts nothing for ``stream_send_timeout_seconds`` is disconnected with close code
1013 (try again later) and a reason that says where to resume. Other close codes: 1008 when
the key is revoked during the stream (it is checked again every
``stream_key_check_interval_seconds``), 1011 on a server error, and uvicorn's own 1012 (service
restart) when the server shuts down.
A handshake without a valid key is refused with HTTP 401 and the usual error body; a bad
``after`` with 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect

from ledger_db import limits
from starter.api import wire
from starter.api.auth import ApiError, error_response, key_record
from starter.error_codes import CodedError

if TYPE_CHECKING:
    from activities.events import NatsSettings
    from ledger_db import Ledger
    from starter.config import ApiSettings

__all__ = [
    "CLOSE_KEY_REVOKED",
    "CLOSE_SERVER_ERROR",
    "CLOSE_TOO_SLOW",
    "KEY_SUBPROTOCOL_PREFIX",
    "SUBPROTOCOL",
    "Doorbell",
    "EventStreams",
    "StreamStats",
]

log = logging.getLogger("compute_ledger.api.stream")

CLOSE_KEY_REVOKED = 1008
CLOSE_SERVER_ERROR = 1011
CLOSE_TOO_SLOW = 1013
# Browsers cannot set headers on a WebSocket: they offer the key as a subprotocol instead,
# next to this one, which the server selects (it never echoes the key).
SUBPROTOCOL = "compute-ledger.v1"
KEY_SUBPROTOCOL_PREFIX = "compute-ledger.key."
_doorbell_retry_seconds = 5.0


class _StreamClosed(Exception):
    """Ends a stream with a close code and a reason (at most 123 bytes)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:123]


@dataclasses.dataclass
class StreamStats:
    """Counts of this process's streams (read by tests and logs)."""

    opened: int = 0
    active: int = 0
    events_sent: int = 0
    closed_too_slow: int = 0
    closed_key_revoked: int = 0
    closed_by_client: int = 0


class Doorbell:
    """One NATS connection; each stream subscribes to its tenant's subjects and is woken by
    any message there. Without a reachable bus it keeps trying in the background, and streams
    poll the outbox at the short interval meanwhile."""

    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.is_connected)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect_until_done())

    async def _connect_until_done(self) -> None:
        import nats

        while self._client is None:
            try:
                self._client = await nats.connect(
                    servers=[self.settings.url or ""],
                    name="compute-ledger-read-api",
                    connect_timeout=self.settings.connect_timeout_seconds,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    error_cb=_log_bus_error,
                )
            except Exception as error:
                log.warning("NATS not reachable (%s); streams poll the outbox meanwhile", error)
                await asyncio.sleep(_doorbell_retry_seconds)

    async def subscribe(self, tenant_id: str, wake: asyncio.Event) -> Callable[[], Awaitable[None]]:
        """Subscribes ``wake`` to the tenant's subjects; returns how to unsubscribe."""
        from activities.events import tenant_subjects

        async def ring(_: Any) -> None:
            wake.set()

        subscription = await self._client.subscribe(
            tenant_subjects(self.settings, tenant_id), cb=ring
        )

        async def unsubscribe() -> None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

        return unsubscribe

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None


async def _log_bus_error(error: Exception) -> None:
    log.warning("NATS error: %s", error)


def _presented_key(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    for protocol in websocket.scope.get("subprotocols", []):
        if protocol.startswith(KEY_SUBPROTOCOL_PREFIX):
            return str(protocol[len(KEY_SUBPROTOCOL_PREFIX) :])
    return None


async def _deny(websocket: WebSocket, error: CodedError) -> None:
    """Refuses the handshake with the HTTP status and error body a plain request would get."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(error))
        return
    await websocket.close(code=CLOSE_KEY_REVOKED, reason=error.code)  # pragma: no cover


class EventStreams:
    """Every event stream of one application, with their shared settings and doorbell."""

    def __init__(self, ledger: Ledger, settings: ApiSettings, doorbell: Doorbell | None) -> None:
        self.ledger = ledger
        self.settings = settings
        self.doorbell = doorbell
        self.stats = StreamStats()

    @property
    def source(self) -> str:
        """``nats`` (woken by the bus) or ``outbox`` (polling only)."""
        return "nats" if self.doorbell is not None else "outbox"

    async def serve(self, websocket: WebSocket) -> None:
        """The handshake (key, ``after``), then the stream until one side ends it."""
        after_text = websocket.query_params.get("after", "0")
        if not after_text.isascii() or not after_text.isdigit():
            await _deny(
                websocket,
                ApiError(
                    "invalid_request", f"after must be an outbox sequence, not {after_text!r}"
                ),
            )
            return
        key = _presented_key(websocket)
        try:
            record = await run_in_threadpool(key_record, self.ledger, key)
        except CodedError as error:
            await _deny(websocket, error)
            return
        offered = websocket.scope.get("subprotocols", [])
        await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        self.stats.opened += 1
        self.stats.active += 1
        try:
            await _Stream(self, websocket, record.tenant_id, key or "", int(after_text)).run()
        finally:
            self.stats.active -= 1


class _Stream:
    """One connection: a reader (outbox -> bounded queue), a sender (queue -> client) and a
    listener (notices the client leaving)."""

    def __init__(
        self, streams: EventStreams, websocket: WebSocket, tenant_id: str, key: str, after: int
    ) -> None:
        self.streams = streams
        self.settings = streams.settings
        self.websocket = websocket
        self.tenant_id = tenant_id
        self.key = key
        self.read_after = after
        self.sent_after = after
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(
            maxsize=max(1, self.settings.stream_queue_size)
        )
        self.wake = asyncio.Event()

    async def run(self) -> None:
        tasks = {
            asyncio.create_task(self._read()),
            asyncio.create_task(self._send()),
            asyncio.create_task(self._listen()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        finished = done.pop()
        if finished.cancelled():  # pragma: no cover - the handler itself was cancelled
            return
        error = finished.exception()
        stats = self.streams.stats
        if error is None:  # the client left, or the server closed the connection (shutdown)
            stats.closed_by_client += 1
            return
        if isinstance(error, _StreamClosed):
            if error.code == CLOSE_TOO_SLOW:
                stats.closed_too_slow += 1
            elif error.code == CLOSE_KEY_REVOKED:
                stats.closed_key_revoked += 1
            await self._close(error)
            return
        if isinstance(error, WebSocketDisconnect):
            stats.closed_by_client += 1
            return
        log.error("event stream of %s failed", self.tenant_id, exc_info=error)
        await self._close(_StreamClosed(CLOSE_SERVER_ERROR, "server error"))

    async def _close(self, closing: _StreamClosed) -> None:
        # The close frame waits behind whatever the client has not read yet; a client that
        # never reads again gets the connection dropped instead.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.websocket.close(code=closing.code, reason=closing.reason),
                self.settings.stream_close_timeout_seconds,
            )

    async def _read(self) -> None:
        """Outbox -> queue, as fast as there is room; waits for the doorbell or the poll."""
        doorbell = self.streams.doorbell
        unsubscribe: Callable[[], Awaitable[None]] | None = None
        next_key_check = time.monotonic() + self.settings.stream_key_check_interval_seconds
        try:
            while True:
                if doorbell is not None and unsubscribe is None and doorbell.connected:
                    try:
                        unsubscribe = await doorbell.subscribe(self.tenant_id, self.wake)
                    except Exception as error:  # the bus went away meanwhile: poll, try later
                        log.warning("cannot subscribe to the bus: %s", error)
                self.wake.clear()
                room = self.queue.maxsize - self.queue.qsize()
                wanted = max(1, min(room, limits.page_size_max))
                found = await run_in_threadpool(
                    self.streams.ledger.list_events,
                    tenant_id=self.tenant_id,
                    after_sequence=self.read_after,
                    limit=wanted,
                )
                for event in found:
                    text = json.dumps(wire.event_json(event), separators=(",", ":"))
                    await self.queue.put((event.sequence, text))
                    self.read_after = event.sequence
                if time.monotonic() >= next_key_check:
                    await self._check_key()
                    next_key_check = (
                        time.monotonic() + self.settings.stream_key_check_interval_seconds
                    )
                if len(found) < wanted:
                    awake = doorbell is not None and unsubscribe is not None and doorbell.connected
                    interval = (
                        self.settings.stream_bus_poll_interval_seconds
                        if awake
                        else self.settings.stream_poll_interval_seconds
                    )
                    interval = min(interval, self.settings.stream_key_check_interval_seconds)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), interval)
        finally:
            if unsubscribe is not None:
                await unsubscribe()

    async def _check_key(self) -> None:
        try:
            await run_in_threadpool(key_record, self.streams.ledger, self.key)
        except CodedError as error:
            raise _StreamClosed(CLOSE_KEY_REVOKED, error.message) from None

    async def _send(self) -> None:
        """Queue -> client, one message at a time; a client that takes nothing is let go."""
        while True:
            sequence, text = await self.queue.get()
            try:
                await asyncio.wait_for(
                    self.websocket.send_text(text), self.settings.stream_send_timeout_seconds
                )
            except TimeoutError:
                raise _StreamClosed(
                    CLOSE_TOO_SLOW,
                    f"client too slow: reconnect with after={self.sent_after}",
                ) from None
            self.sent_after = sequence
            self.streams.stats.events_sent += 1

    async def _listen(self) -> None:
        """Returns when the client leaves; what it sends is ignored (the stream is one-way)."""
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
