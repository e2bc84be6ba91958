"""Helpers of the read API tests: two tenants' data written through the ledger, their API keys,
and the API on a real uvicorn server (a thread of this process, its own event loop, a free
port)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from ledger_db import Ledger
from ledger_db.api_keys import create_api_key
from starter.api.server import ApiServer, serve_in_thread
from starter.config import ApiSettings
from starter.dev import free_port

# Streams in tests poll often and check keys often, so that each test takes a second, not ten.
TEST_SETTINGS = ApiSettings(
    host="127.0.0.1",
    stream_poll_interval_seconds=0.05,
    stream_bus_poll_interval_seconds=0.05,
    stream_key_check_interval_seconds=0.2,
    stream_send_timeout_seconds=5.0,
)


@dataclass
class TenantData:
    """One tenant's objects, as the ledger returned them."""

    tenant_id: str
    key: str
    key_id: str
    accounts: list[str]
    hold_ids: list[str] = field(default_factory=list)
    transaction_ids: list[str] = field(default_factory=list)


def populate(ledger: Ledger, tenant_id: str, prefix: str, *, deposits: int = 3) -> TenantData:
    """A buyer and a seller, deposits, and one hold of each fate: captured and paid out in
    part, released, still active."""
    buyer, seller = f"{prefix}-buyer", f"{prefix}-seller"
    for account in (buyer, seller):
        ledger.open_account(
            tenant_id=tenant_id, account_id=account, currency="USD", idempotency_key=account
        )
    data = TenantData(
        tenant_id=tenant_id,
        key="",
        key_id="",
        accounts=[buyer, seller],
    )
    for index in range(deposits):
        deposit = ledger.deposit(
            buyer, "100.00", tenant_id=tenant_id, idempotency_key=f"{prefix}-deposit-{index}"
        )
        data.transaction_ids.append(deposit.transaction_id)

    def freeze(step: str, amount: str) -> Any:
        return ledger.freeze(
            buyer,
            amount,
            "NEGOTIATION",
            tenant_id=tenant_id,
            idempotency_key=f"{prefix}-freeze-{step}",
            ttl_seconds=3600,
            payee_account_id=seller,
        )

    captured = freeze("captured", "40.00")
    ledger.capture_hold(
        captured.hold_id,
        f"{prefix}-order-1",
        tenant_id=tenant_id,
        idempotency_key=f"{prefix}-capture",
        amount="25.50",
    )
    finalized = ledger.finalize_hold(
        captured.hold_id, tenant_id=tenant_id, idempotency_key=f"{prefix}-finalize"
    )
    released = freeze("released", "20.00")
    released = ledger.release_hold(
        released.hold_id, tenant_id=tenant_id, idempotency_key=f"{prefix}-release"
    )
    active = freeze("active", "5.00")
    for hold in (finalized, released, active):
        data.hold_ids.append(hold.hold_id)
        for transaction_id in (
            hold.freeze_transaction_id,
            hold.resolve_transaction_id,
            hold.finalize_transaction_id,
        ):
            if transaction_id:
                data.transaction_ids.append(transaction_id)
    made = create_api_key(ledger.engine, tenant_id=tenant_id, name=f"{prefix} tests")
    data.key, data.key_id = made.key, made.api_key.key_id
    return data


@dataclass
class Api:
    """The running API, its ledger, two tenants and an HTTP client per key."""

    server: ApiServer
    ledger: Ledger
    alpha: TenantData
    beta: TenantData
    revoked_key: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws_url(self) -> str:
        return self.server.url.replace("http://", "ws://")

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


def start_api(
    ledger: Ledger,
    settings: ApiSettings = TEST_SETTINGS,
    *,
    sockets: list[socket.socket] | None = None,
) -> Any:
    """The API on a free port, or on ``sockets`` (a context manager yielding the server)."""
    return serve_in_thread(ledger, replace(settings, port=free_port()), sockets=sockets)
