"""Produces the saved HoldWorkflow histories that ``test_saga_replay.py`` replays.

    .venv/bin/python tests/saga/make_histories.py          # rewrites tests/saga/histories/

Runs one negotiation per path (partial capture + finalize, release, expiry, rejected freeze,
signals, a repeated capture) on a fresh dev server and SQLite ledger, and saves each workflow's
history as JSON. Regenerate only on purpose: the saved files stand for workflows already running
in production, which every new version of the workflow code must still replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

REPOSITORY = Path(__file__).resolve().parents[2]
HISTORIES = Path(__file__).resolve().parent / "histories"

if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from ledger_db import Ledger  # noqa: E402
from ledger_db.errors import InsufficientFunds  # noqa: E402
from ledger_db.ids import hold_workflow_id  # noqa: E402
from starter.client import ClientConfig, LedgerClient  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.search_attributes import ALL_SEARCH_ATTRIBUTE_KEYS  # noqa: E402


async def produce_histories(
    temporal: Client, ledger: Ledger, *, task_queue: str, tenant_id: str, update_with_start: bool
) -> dict[str, str]:
    """Runs every path once; returns {name: history JSON}."""
    config = ClientConfig(task_queue=task_queue, update_with_start=update_with_start)
    client = await LedgerClient.connect(config, temporal=temporal, ledger=ledger)
    for account in ("buyer", "seller"):
        ledger.open_account(
            tenant_id=tenant_id,
            currency="USD",
            idempotency_key=f"open-{account}",
            account_id=account,
        )
    ledger.ensure_platform_accounts(tenant_id=tenant_id, currency="USD")
    ledger.deposit("buyer", "100.00", tenant_id=tenant_id, idempotency_key="deposit")

    async def freeze(
        key: str, amount: str, ttl_seconds: int = 600, payee: str | None = "seller"
    ) -> str:
        hold = await client.freeze(
            "buyer",
            amount,
            "NEGOTIATION",
            tenant_id=tenant_id,
            idempotency_key=key,
            ttl_seconds=ttl_seconds,
            payee_account_id=payee,
            fee_bps=100,
        )
        return hold.hold_id

    hold_ids: dict[str, str] = {}
    async with build_worker(temporal, ledger, task_queue=task_queue):
        hold_ids["partial_capture"] = await freeze("partial", "30.00", payee=None)
        await client.capture_hold(
            hold_ids["partial_capture"],
            "order-1",
            tenant_id=tenant_id,
            idempotency_key="capture",
            amount="12.50",
            payee_account_id="seller",
        )
        hold_ids["release"] = await freeze("release", "10.00")
        await client.release_hold(hold_ids["release"], tenant_id=tenant_id, idempotency_key="r")
        hold_ids["expiry"] = await freeze("expiry", "5.00", ttl_seconds=1)
        hold_ids["signals"] = await freeze("signals", "7.00")
        await client.confirm_order(
            hold_ids["signals"], "order-2", tenant_id=tenant_id, amount="70.00"
        )
        await client.confirm_order(hold_ids["signals"], "order-2", tenant_id=tenant_id)
        hold_ids["repeated_capture"] = await freeze("repeated", "3.00")
        for _ in range(2):
            await client.capture_hold(
                hold_ids["repeated_capture"], "order-3", tenant_id=tenant_id, idempotency_key="c"
            )
        with contextlib.suppress(InsufficientFunds):
            await freeze("rejected", "1000.00")
        from ledger_db.ids import derive_hold_id

        hold_ids["rejected_freeze"] = derive_hold_id(tenant_id, "rejected")
        histories: dict[str, str] = {}
        for name, hold_id in hold_ids.items():
            handle = temporal.get_workflow_handle(hold_workflow_id(hold_id))
            try:
                await asyncio.wait_for(handle.result(), timeout=60)
            except TimeoutError:
                raise
            except Exception:
                pass  # the rejected freeze fails on purpose
            history = await handle.fetch_history()
            histories[name] = history.to_json()
    await client.close()
    return histories


async def main() -> None:
    bin_directory = Path(sys.prefix) / "bin"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(bin_directory / "temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=ALL_SEARCH_ATTRIBUTE_KEYS,
    )
    try:
        with tempfile.TemporaryDirectory() as directory:
            ledger = Ledger.from_url(f"sqlite:///{directory}/ledger.db")
            try:
                histories = await produce_histories(
                    env.client,
                    ledger,
                    task_queue="make-histories",
                    tenant_id="history-tenant",
                    update_with_start=True,
                )
            finally:
                ledger.close()
    finally:
        await env.shutdown()
    HISTORIES.mkdir(exist_ok=True)
    for name, text in histories.items():
        path = HISTORIES / f"hold_{name}.json"
        path.write_text(json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path.relative_to(REPOSITORY)}")


if __name__ == "__main__":
    asyncio.run(main())
