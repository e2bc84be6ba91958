"""The batch workflows in the time-skipping environment, and apply_schedules on a dev server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from finops_data import EXAMPLES, TENANT
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.batch import SCHEDULE_IDS, activities_for, apply_schedules
from ledger_db import Ledger
from starter.dev import free_port
from workflows.batch import (
    BATCH_WORKFLOWS,
    MonthlyStatementsInput,
    MonthlyStatementsWorkflow,
    ProviderReconciliationInput,
    ProviderReconciliationWorkflow,
    ReconcileLedgerInput,
    ReconcileLedgerWorkflow,
    previous_month,
)

pytestmark = pytest.mark.temporal

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def run_with_worker(
    env: WorkflowEnvironment, ledger: Ledger, output: Path, workflow: Any, argument: Any
) -> Any:
    task_queue = f"finops-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=BATCH_WORKFLOWS,
        activities=activities_for(ledger, output_dir=output, client=env.client),
    ):
        return await env.client.execute_workflow(
            workflow, argument, id=f"test-{uuid.uuid4()}", task_queue=task_queue
        )


async def test_reconcile_ledger_expires_orphaned_holds(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    ledger = Ledger.from_url(sqlite_url)
    try:
        ledger.open_account(
            tenant_id=TENANT, currency="USD", idempotency_key="o", account_id="payer"
        )
        ledger.deposit("payer", "50", tenant_id=TENANT, idempotency_key="d")
        # Frozen without a workflow (as if its workflow had been lost), expired long ago: by
        # a ledger whose clock read three hours ago (a caller's ``now`` may not lag that far).
        three_hours_ago = Ledger(
            ledger.engine, clock=lambda: datetime.now(UTC) - timedelta(hours=3)
        )
        orphan = three_hours_ago.freeze(
            "payer", "10", "N", tenant_id=TENANT, idempotency_key="f", ttl_seconds=60
        )
        summary = await run_with_worker(
            time_skipping_env, ledger, tmp_path, ReconcileLedgerWorkflow.run, ReconcileLedgerInput()
        )
        assert summary.expired_hold_ids == [orphan.hold_id]
        assert [problem["kind"] for problem in summary.problems] == ["orphaned_expired_hold"]
        assert Path(summary.report_path).exists()
        assert ledger.get_hold(orphan.hold_id, tenant_id=TENANT).state == "expired"
        again = await run_with_worker(
            time_skipping_env, ledger, tmp_path, ReconcileLedgerWorkflow.run, ReconcileLedgerInput()
        )
        assert again.ok and again.expired_hold_ids == []
    finally:
        ledger.close()


async def test_monthly_statements_are_written(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    ledger = Ledger.from_url(sqlite_url, clock=lambda: datetime(2025, 1, 20, tzinfo=UTC))
    try:
        ledger.record_entries(EXAMPLES, tenant_id=TENANT, idempotency_key="examples")
        result = await run_with_worker(
            time_skipping_env,
            ledger,
            tmp_path,
            MonthlyStatementsWorkflow.run,
            MonthlyStatementsInput(month="2025-01"),
        )
        assert result.month == "2025-01"
        assert sorted(Path(path).name for path in result.files) == [
            f"{TENANT}.csv",
            f"{TENANT}.json",
            f"{TENANT}.pdf",
        ]
        first = {path: Path(path).read_bytes() for path in result.files}
        again = await run_with_worker(
            time_skipping_env,
            ledger,
            tmp_path,
            MonthlyStatementsWorkflow.run,
            MonthlyStatementsInput(month="2025-01"),
        )
        assert {path: Path(path).read_bytes() for path in again.files} == first
        # Without a month, the schedule's run covers the month before the workflow's clock.
        default = await run_with_worker(
            time_skipping_env,
            ledger,
            tmp_path,
            MonthlyStatementsWorkflow.run,
            MonthlyStatementsInput(formats=["json"]),
        )
        # (The time-skipping server's clock runs ahead, so only the shape is checked here.)
        assert len(default.month) == 7 and default.month[4] == "-"
        assert previous_month(2025, 1) == "2024-12" and previous_month(2025, 3) == "2025-02"
    finally:
        ledger.close()


async def test_provider_reconciliation_on_demand(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    ledger = Ledger.from_url(sqlite_url)
    try:
        ledger.record_entries(EXAMPLES, tenant_id=TENANT, idempotency_key="examples")
        bill = tmp_path / "bill.csv"
        bill.write_text(
            "external_ref,amount,currency,date\n"
            "ipvendor_tx_789,20.00,USD,2025-01-15\n"
            "ipvendor_tx_790,1.00,USD,2025-01-15\n"
        )
        summary = await run_with_worker(
            time_skipping_env,
            ledger,
            tmp_path,
            ProviderReconciliationWorkflow.run,
            ProviderReconciliationInput(
                tenant_id=TENANT, bill_path=str(bill), category="NETWORK_COST"
            ),
        )
        assert not summary.clean
        assert summary.counts["matched"] == 1 and summary.counts["missing_from_ledger"] == 1
        assert all(Path(path).exists() for path in summary.report_paths)
    finally:
        ledger.close()


async def test_apply_schedules_is_idempotent() -> None:
    env = await WorkflowEnvironment.start_local(
        # A port below the ephemeral range (see starter.dev.free_port).
        port=free_port(),
        dev_server_existing_path=str(BIN / "temporal"),
        data_converter=pydantic_data_converter,
    )
    try:
        client: Client = env.client
        first = await apply_schedules(client, task_queue="finops-test")
        second = await apply_schedules(client, task_queue="finops-test")
        assert [item["action"] for item in first] == ["created", "created"]
        assert [item["action"] for item in second] == ["unchanged", "unchanged"]
        moved = await apply_schedules(client, task_queue="finops-other")
        assert [item["action"] for item in moved] == ["updated", "updated"]
        assert [
            item["action"] for item in await apply_schedules(client, task_queue="finops-other")
        ] == ["unchanged", "unchanged"]
        description = await client.get_schedule_handle(SCHEDULE_IDS[0]).describe()
        assert "Managed by `compute-ledger schedules apply`" in (
            description.schedule.state.note or ""
        )
        assert description.schedule.action.task_queue == "finops-other"  # type: ignore[union-attr]
        summary = description.schedule.action.static_summary  # type: ignore[union-attr]
        # A described schedule hands the summary back as its raw payload.
        assert b"audit" in getattr(summary, "data", str(summary).encode())
        ids = [schedule.id async for schedule in await client.list_schedules()]
        assert sorted(set(ids) & set(SCHEDULE_IDS)) == sorted(SCHEDULE_IDS)
    finally:
        await env.shutdown()
