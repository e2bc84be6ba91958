"""``WebSocket /v1/events/stream`` over a real uvicorn server with a real WebSocket client:
order, resume with ``after`` (exactly the missed events, nothing twice), tenancy, keys in a
header or a subprotocol, refused handshakes, a revoked key, and the slow-client disconnect."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import replace
from typing import Any

import pytest
from api_helpers import TEST_SETTINGS, Api, start_api
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ledger_db import Ledger
from ledger_db.api_keys import create_api_key, revoke_api_key
from starter.api.stream import KEY_SUBPROTOCOL_PREFIX, SUBPROTOCOL
from starter.dev import free_port

receive_timeout_seconds = 10.0


def _stream_url(api_ws_url: str, after: int | None = None) -> str:
    return f"{api_ws_url}/v1/events/stream" + ("" if after is None else f"?after={after}")


def _connect(url: str, key: str | None, **options: Any) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return connect(url, additional_headers=headers, open_timeout=10, **options)


async def _receive(websocket: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [
        json.loads(await asyncio.wait_for(websocket.recv(), receive_timeout_seconds))
        for _ in range(count)
    ]


async def _quiet(websocket: ClientConnection, seconds: float = 0.5) -> bool:
    """True when nothing more arrives within ``seconds``."""
    try:
        await asyncio.wait_for(websocket.recv(), seconds)
    except TimeoutError:
        return True
    return False


def _freeze(ledger: Ledger, tenant_id: str, account_id: str, key: str, reason: str = "N") -> Any:
    return ledger.freeze(
        account_id, "1.00", reason, tenant_id=tenant_id, idempotency_key=key, ttl_seconds=3600
    )


async def test_the_stream_sends_the_outbox_in_order_then_new_events(api: Api) -> None:
    ledger, alpha = api.ledger, api.alpha
    outbox = ledger.list_events(tenant_id="alpha", limit=100)
    async with _connect(_stream_url(api.ws_url, 0), alpha.key) as websocket:
        first = await _receive(websocket, len(outbox))
        assert [event["event_id"] for event in first] == [event.event_id for event in outbox]
        assert [event["sequence"] for event in first] == sorted(e["sequence"] for e in first)
        assert {event["tenant_id"] for event in first} == {"alpha"}
        assert first[0]["payload"]["billing"]["amount"] == "40.00"
        # Each message is the envelope of the bus plus its sequence, as GET /v1/events has it.
        with api.client(alpha.key) as client:
            assert client.get("/v1/events").json()["events"] == first
        assert await _quiet(websocket)

        # New events arrive as they are written; beta's never do.
        await asyncio.to_thread(_freeze, ledger, "beta", api.beta.accounts[0], "b-live")
        hold = await asyncio.to_thread(_freeze, ledger, "alpha", alpha.accounts[0], "a-live")
        (live,) = await _receive(websocket, 1)
        assert (live["type"], live["hold_id"], live["tenant_id"]) == (
            "INTENT_CREATED",
            hold.hold_id,
            "alpha",
        )
        assert live["sequence"] > first[-1]["sequence"]
        assert await _quiet(websocket)


async def test_a_reconnect_with_after_gets_exactly_the_missed_events(api: Api) -> None:
    ledger, alpha = api.ledger, api.alpha
    buyer = alpha.accounts[0]
    async with _connect(_stream_url(api.ws_url), alpha.key) as websocket:
        seen = await _receive(websocket, 6)
    last = seen[-1]["sequence"]
    # While the client is away: alpha's events and beta's.
    for index in range(4):
        await asyncio.to_thread(_freeze, ledger, "alpha", buyer, f"a-away-{index}")
        await asyncio.to_thread(_freeze, ledger, "beta", api.beta.accounts[0], f"b-away-{index}")
    async with _connect(_stream_url(api.ws_url, last), alpha.key) as websocket:
        missed = await _receive(websocket, 4)
        assert await _quiet(websocket)
    expected = ledger.list_events(tenant_id="alpha", after_sequence=last, limit=100)
    assert [event["event_id"] for event in missed] == [event.event_id for event in expected]
    everything = [event["event_id"] for event in [*seen, *missed]]
    assert len(everything) == len(set(everything)) == 10
    assert everything == [e.event_id for e in ledger.list_events(tenant_id="alpha", limit=100)]


async def test_the_key_may_come_as_a_subprotocol_for_browsers(api: Api) -> None:
    protocols: Any = [SUBPROTOCOL, f"{KEY_SUBPROTOCOL_PREFIX}{api.beta.key}"]
    async with connect(_stream_url(api.ws_url), subprotocols=protocols) as websocket:
        # The server selects the protocol, never the key.
        assert websocket.subprotocol == SUBPROTOCOL
        events = await _receive(websocket, 6)
    assert {event["tenant_id"] for event in events} == {"beta"}


async def test_refused_handshakes_carry_the_error_body(api: Api) -> None:
    url = _stream_url(api.ws_url)
    for key, status, code in [
        (None, 401, "unauthenticated"),
        ("clk_000000000000_" + "x" * 43, 401, "unauthenticated"),
        (api.revoked_key, 401, "unauthenticated"),
    ]:
        with pytest.raises(InvalidStatus) as refused:
            async with _connect(url, key):
                pass
        response = refused.value.response
        assert response.status_code == status
        assert json.loads(response.body)["error"]["code"] == code
    with pytest.raises(InvalidStatus) as refused:
        async with _connect(f"{url}?after=-3", api.alpha.key):
            pass
    assert refused.value.response.status_code == 400
    assert json.loads(refused.value.response.body)["error"]["code"] == "invalid_request"


async def test_a_key_revoked_during_a_stream_closes_it(api: Api) -> None:
    made = create_api_key(api.ledger.engine, tenant_id="alpha", name="revoked mid-stream")
    async with _connect(_stream_url(api.ws_url), made.key) as websocket:
        await _receive(websocket, 6)
        await asyncio.to_thread(revoke_api_key, api.ledger.engine, made.api_key.key_id)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(websocket.recv(), receive_timeout_seconds)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert "revoked" in closed.value.rcvd.reason
    assert api.server.app.state.streams.stats.closed_key_revoked == 1


def _small_buffer_listener(size: int) -> socket.socket:
    """A listening socket whose accepted connections keep small send buffers (inherited)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    listener.bind(("127.0.0.1", free_port()))
    return listener


def _small_buffer_client(port: int, size: int) -> socket.socket:
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    client.connect(("127.0.0.1", port))
    return client


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_client_that_stops_reading_is_disconnected_with_1013(ledger: Ledger) -> None:
    """The client reads nothing for a while: the server's bounded queue and the transport
    fill, one send waits longer than the send timeout, and the server closes with 1013 and
    the sequence to resume after. The client, reading again, gets a gapless prefix of the
    events, then that close; reconnecting with ``after`` gets the rest, nothing twice."""
    ledger.open_account(tenant_id="slow", account_id="s", currency="USD", idempotency_key="o")
    ledger.deposit("s", "1000000.00", tenant_id="slow", idempotency_key="d")
    long_reason = "R" * 250  # large events fill the buffers sooner
    for index in range(300):
        _freeze(ledger, "slow", "s", f"f-{index}", reason=long_reason)
    total = len(ledger.list_events(tenant_id="slow", limit=1000))
    key = create_api_key(ledger.engine, tenant_id="slow").key
    settings = replace(
        TEST_SETTINGS,
        stream_queue_size=8,
        stream_send_timeout_seconds=0.5,
        stream_close_timeout_seconds=15.0,
    )
    listener = _small_buffer_listener(4096)
    with start_api(ledger, settings, sockets=[listener]) as server:
        port = listener.getsockname()[1]
        url = f"ws://127.0.0.1:{port}/v1/events/stream"
        stats = server.app.state.streams.stats
        sock = _small_buffer_client(port, 4096)
        # No compression: the repeated reason would shrink to nothing and fit any buffer.
        async with _connect(url, key, sock=sock, max_queue=1, compression=None) as websocket:
            # Not reading: wait until the server has given up on this client.
            for _ in range(200):
                if stats.closed_too_slow:
                    break
                await asyncio.sleep(0.05)
            assert stats.closed_too_slow == 1
            received: list[dict[str, Any]] = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    received.append(json.loads(await asyncio.wait_for(websocket.recv(), 10)))
        assert closed.value.rcvd is not None, "no close frame reached the client"
        assert closed.value.rcvd.code == 1013
        resume_after = int(closed.value.rcvd.reason.rsplit("after=", 1)[1])
        assert 0 < len(received) < total
        assert received[-1]["sequence"] == resume_after
        outbox = ledger.list_events(tenant_id="slow", limit=1000)
        assert [event["event_id"] for event in received] == [
            event.event_id for event in outbox[: len(received)]
        ]
        async with _connect(f"{url}?after={resume_after}", key) as websocket:
            rest = await _receive(websocket, total - len(received))
            assert await _quiet(websocket)
        ids = [event["event_id"] for event in [*received, *rest]]
        assert ids == [event.event_id for event in outbox]


async def test_a_server_shutdown_closes_open_streams_with_1012(ledger: Ledger) -> None:
    ledger.open_account(tenant_id="t", account_id="a", currency="USD", idempotency_key="o")
    key = create_api_key(ledger.engine, tenant_id="t").key
    started = asyncio.get_running_loop().time()
    with start_api(ledger) as server:
        url = server.url.replace("http://", "ws://") + "/v1/events/stream"
        async with _connect(url, key) as websocket:
            assert await _quiet(websocket, 0.3)
            stopping = asyncio.get_running_loop().run_in_executor(None, server.request_stop)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(websocket.recv(), receive_timeout_seconds)
            await stopping
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    # Promptly: the stream does not hold the server until its graceful-shutdown timeout.
    assert asyncio.get_running_loop().time() - started < 8
