"""Produces the saved HoldWorkflow histories that ``test_saga_replay.py`` replays.

    .venv/bin/python tests/saga/make_histories.py          # rewrites tests/saga/histories/v2/

Runs one negotiation per path on a fresh dev server and SQLite ledger, and saves each
workflow's history as JSON. Regenerate only on purpose: the saved files stand for workflows
already running in production, which every new version of the workflow code must still replay.

``histories/hold_*.json`` were written by the first HoldWorkflow (type ``HoldWorkflow``, now the
frozen ``workflows.legacy.hold_v1``) and are never regenerated; ``histories/v2/`` holds the
lean HoldWorkflow's (``HoldWorkflowV2``), one per path below.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

REPOSITORY = Path(__file__).resolve().parents[2]
HISTORIES = Path(__file__).resolve().parent / "histories"
V2_HISTORIES = HISTORIES / "v2"

if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from activities.faults import FaultInjector  # noqa: E402
from ledger_db import Ledger  # noqa: E402
from ledger_db.errors import AccountNotFound, InsufficientFunds  # noqa: E402
from ledger_db.ids import derive_hold_id, hold_workflow_id  # noqa: E402
from starter.client import ClientConfig, LedgerClient  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.search_attributes import ALL_SEARCH_ATTRIBUTE_KEYS  # noqa: E402

# Every path a saved history covers; test_saga_replay checks the set.
PATHS = (
    "partial_capture",
    "release",
    "expiry",
    "rejected_freeze",
    "signals",
    "repeated_capture",
    "ledger_rejects_capture",
    "payout_failed_then_retried",
    "expiry_recheck_after_extension_outside",
    "resync_after_failed_expire",
    "rerun_over_existing_hold",
    "extend",
    "cancelled_while_active",
)


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

    async def ended(hold_id: str) -> None:
        handle = temporal.get_workflow_handle(hold_workflow_id(hold_id))
        with contextlib.suppress(TimeoutError, Exception):
            await asyncio.wait_for(handle.result(), timeout=30)

    async def until(condition: Callable[[], Awaitable[bool]]) -> None:
        for _ in range(300):
            if await condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("condition not reached")

    hold_ids: dict[str, str] = {}
    faults = FaultInjector()
    # The first payout is refused as if the payee's account had been closed.
    faults.refuse("finalize", "account_closed")
    async with build_worker(temporal, ledger, task_queue=task_queue, faults=faults):
        hold_ids["payout_failed_then_retried"] = await freeze("payout", "4.00")
        await client.capture_hold(
            hold_ids["payout_failed_then_retried"],
            "order-p",
            tenant_id=tenant_id,
            idempotency_key="c",
        )

        async def payout_failed() -> bool:
            state = await client.hold_state(
                hold_ids["payout_failed_then_retried"], tenant_id=tenant_id
            )
            return state.phase == "payout_failed"

        await until(payout_failed)
        await client.retry_payout(
            hold_ids["payout_failed_then_retried"], tenant_id=tenant_id, idempotency_key="retry"
        )

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
        signals = hold_ids["signals"]
        handle = temporal.get_workflow_handle(hold_workflow_id(signals))
        # Junk a caller may send: each is recorded in the state, none fails a workflow task.
        for amount in ("1e999999", "1e400000"):
            await handle.signal(
                "confirm_order",
                {"tenant_id": tenant_id, "idempotency_key": "j", "order_id": "o", "amount": amount},
            )
        await handle.signal("confirm_order", {"amount": 12})
        await handle.signal("cancel_order", "not even an object")
        await client.confirm_order(signals, "order-2", tenant_id=tenant_id, amount="70.00")
        await client.confirm_order(signals, "order-2", tenant_id=tenant_id)

        hold_ids["repeated_capture"] = await freeze("repeated", "3.00")
        for _ in range(2):
            await client.capture_hold(
                hold_ids["repeated_capture"], "order-3", tenant_id=tenant_id, idempotency_key="c"
            )

        hold_ids["ledger_rejects_capture"] = await freeze("ghost", "2.00", payee=None)
        with contextlib.suppress(AccountNotFound):
            await client.capture_hold(
                hold_ids["ledger_rejects_capture"],
                "order-4",
                tenant_id=tenant_id,
                idempotency_key="c1",
                payee_account_id="ghost",
            )
        await client.capture_hold(
            hold_ids["ledger_rejects_capture"],
            "order-4",
            tenant_id=tenant_id,
            idempotency_key="c2",
            payee_account_id="seller",
        )

        # Extended straight in the ledger: the workflow's timer fires too early, the ledger
        # answers hold_not_expired, the workflow reads the new expiry and waits again.
        hold_ids["expiry_recheck_after_extension_outside"] = recheck = await freeze(
            "recheck", "1.00", ttl_seconds=1
        )
        ledger.extend_hold(recheck, tenant_id=tenant_id, idempotency_key="outside", ttl_seconds=2)

        # Released straight in the ledger: the expiry is refused, the workflow follows.
        hold_ids["resync_after_failed_expire"] = resync = await freeze(
            "resync", "1.00", ttl_seconds=1
        )
        ledger.release_hold(resync, tenant_id=tenant_id, idempotency_key="outside-release")

        # Terminated, then frozen again under the same key: the new run reads the hold.
        rerun = await freeze("rerun", "1.00")
        await temporal.get_workflow_handle(hold_workflow_id(rerun)).terminate("operator")
        hold_ids["rerun_over_existing_hold"] = await freeze("rerun", "1.00")
        await client.release_hold(rerun, tenant_id=tenant_id, idempotency_key="r")

        hold_ids["extend"] = extended = await freeze("extend", "1.00", ttl_seconds=1)
        await client.extend_hold(extended, tenant_id=tenant_id, idempotency_key="e", ttl_seconds=2)

        hold_ids["cancelled_while_active"] = cancelled = await freeze("cancel", "1.00")
        await temporal.get_workflow_handle(hold_workflow_id(cancelled)).cancel()

        with contextlib.suppress(InsufficientFunds):
            await freeze("rejected", "1000.00")
        hold_ids["rejected_freeze"] = derive_hold_id(tenant_id, "rejected")

        histories: dict[str, str] = {}
        for name in PATHS:
            hold_id = hold_ids[name]
            await ended(hold_id)
            history = await temporal.get_workflow_handle(hold_workflow_id(hold_id)).fetch_history()
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
    V2_HISTORIES.mkdir(parents=True, exist_ok=True)
    for name, text in histories.items():
        path = V2_HISTORIES / f"hold_{name}.json"
        path.write_text(json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path.relative_to(REPOSITORY)}")


if __name__ == "__main__":
    asyncio.run(main())
