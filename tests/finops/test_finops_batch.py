"""The batch workflows: statements and bills on the time-skipping server; the reconciliation
(which finds hold workflows through visibility) and ``apply_schedules`` on a dev server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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
from starter.client import ClientConfig, LedgerClient
from starter.dev import free_port
from worker import build_worker
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
from workflows.search_attributes import ALL_SEARCH_ATTRIBUTE_KEYS

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


async def test_apply_schedules_is_idempotent(dev_env: WorkflowEnvironment) -> None:
    client: Client = dev_env.client
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
    assert "Managed by `compute-ledger schedules apply`" in (description.schedule.state.note or "")
    assert description.schedule.action.task_queue == "finops-other"  # type: ignore[union-attr]
    summary = description.schedule.action.static_summary  # type: ignore[union-attr]
    # A described schedule hands the summary back as its raw payload.
    assert b"audit" in getattr(summary, "data", str(summary).encode())
    ids = [schedule.id async for schedule in await client.list_schedules()]
    assert sorted(set(ids) & set(SCHEDULE_IDS)) == sorted(SCHEDULE_IDS)


# ---------------------------------------------------------------------------------------------
# At scale: pages, continue-as-new, the checkpoint, a worker restart mid-page.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server: the reconciliation finds hold workflows through visibility, which the
    time-skipping server does not have."""
    env = await WorkflowEnvironment.start_local(
        # A port below the ephemeral range (see starter.dev.free_port).
        port=free_port(),
        dev_server_existing_path=str(BIN / "temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=ALL_SEARCH_ATTRIBUTE_KEYS,
        ui=False,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


def _batch_worker(env: WorkflowEnvironment, ledger: Ledger, output: Path, **options: Any) -> Worker:
    """The real worker (both HoldWorkflow types and their activities) plus the batch ones."""
    return build_worker(
        env.client,
        ledger,
        task_queue=options.pop("task_queue"),
        include_contributions=False,
        workflows=BATCH_WORKFLOWS,
        activities=activities_for(ledger, output_dir=output, client=env.client, **options),
    )


async def _runs(env: WorkflowEnvironment, workflow_id: str) -> int:
    for _ in range(100):
        runs = [e async for e in env.client.list_workflows(f"WorkflowId = '{workflow_id}'")]
        if all(run.status is not None and run.status.name != "RUNNING" for run in runs):
            return len(runs)
        await asyncio.sleep(0.1)
    raise AssertionError("the workflow's runs did not all close")


async def test_reconcile_ledger_expires_orphaned_holds(
    dev_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    ledger = Ledger.from_url(sqlite_url)
    task_queue = f"finops-{uuid.uuid4().hex[:8]}"
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
        async with _batch_worker(dev_env, ledger, tmp_path, task_queue=task_queue):
            summary = await dev_env.client.execute_workflow(
                ReconcileLedgerWorkflow.run,
                ReconcileLedgerInput(),
                id=f"reconcile-{uuid.uuid4()}",
                task_queue=task_queue,
            )
            assert summary.expired_hold_ids == [orphan.hold_id]
            assert [problem["kind"] for problem in summary.problems] == ["orphaned_expired_hold"]
            assert Path(summary.report_path).exists()
            assert ledger.get_hold(orphan.hold_id, tenant_id=TENANT).state == "expired"
            again = await dev_env.client.execute_workflow(
                ReconcileLedgerWorkflow.run,
                ReconcileLedgerInput(),
                id=f"reconcile-{uuid.uuid4()}",
                task_queue=task_queue,
            )
        assert again.ok and again.expired_hold_ids == []
    finally:
        ledger.close()


async def test_reconcile_pages_through_holds_and_verifies_from_the_checkpoint(
    dev_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    ledger = Ledger.from_url(sqlite_url)
    task_queue = f"finops-{uuid.uuid4().hex[:8]}"
    client = await LedgerClient.connect(
        ClientConfig(task_queue=task_queue), temporal=dev_env.client, ledger=ledger
    )
    # A ledger whose clock read three hours ago freezes the orphans (a caller's ``now`` may not
    # lag that far).
    three_hours_ago = Ledger(ledger.engine, clock=lambda: datetime.now(UTC) - timedelta(hours=3))
    try:
        for account in ("payer", "seller"):
            ledger.open_account(
                tenant_id=TENANT, currency="USD", idempotency_key=f"o-{account}", account_id=account
            )
        ledger.deposit("payer", "500", tenant_id=TENANT, idempotency_key="d")
        # Three orphans expired long ago, two orphans not expired yet: all without a workflow.
        orphans = [
            three_hours_ago.freeze(
                "payer",
                "1",
                "N",
                tenant_id=TENANT,
                idempotency_key=f"orphan-{index}",
                ttl_seconds=60,
            ).hold_id
            for index in range(3)
        ]
        unowned = [
            ledger.freeze(
                "payer",
                "1",
                "N",
                tenant_id=TENANT,
                idempotency_key=f"gone-{index}",
                ttl_seconds=3600,
            ).hold_id
            for index in range(2)
        ]
        options = ReconcileLedgerInput(hold_page_size=3, pages_per_run=1, journal_segment_size=4)
        async with _batch_worker(dev_env, ledger, tmp_path, task_queue=task_queue):
            # Four holds with their HoldWorkflow running: found by visibility, no problem.
            owned = [
                (
                    await client.freeze(
                        "payer",
                        "2",
                        "N",
                        tenant_id=TENANT,
                        idempotency_key=f"owned-{index}",
                        ttl_seconds=3600,
                        payee_account_id="seller",
                    )
                ).hold_id
                for index in range(4)
            ]
            first_id = f"reconcile-{uuid.uuid4()}"
            first = await dev_env.client.execute_workflow(
                ReconcileLedgerWorkflow.run, options, id=first_id, task_queue=task_queue
            )
            # 9 open holds in pages of 3, one page per run: the workflow continued as new.
            assert first.holds_checked == 9
            assert await _runs(dev_env, first_id) >= 3
            assert sorted(first.expired_hold_ids) == sorted(orphans)
            kinds = sorted(str(problem["kind"]) for problem in first.problems)
            assert kinds == ["hold_workflow_gone"] * 2 + ["orphaned_expired_hold"] * 3
            assert {problem["hold_id"] for problem in first.problems} == set(orphans + unowned)
            # The whole chain, in segments of 4, from genesis to the head; then a checkpoint.
            head = first.journal_verified_to
            assert (first.journal_problems, first.journal_verified_from) == (0, 0)
            assert head is not None and head >= 10
            checkpoint = json.loads((tmp_path / "audit" / "checkpoint.json").read_text())
            assert checkpoint["journal_sequence"] == head
            # More business; the next run verifies only what came after the checkpoint.
            for index in range(3):
                ledger.deposit("payer", "1", tenant_id=TENANT, idempotency_key=f"more-{index}")
            second = await dev_env.client.execute_workflow(
                ReconcileLedgerWorkflow.run,
                options,
                id=f"reconcile-{uuid.uuid4()}",
                task_queue=task_queue,
            )
            # (The first run's three expiries came after its journal check, then three deposits.)
            assert (second.journal_verified_from, second.journal_verified_to) == (head, head + 6)
            assert second.expired_hold_ids == []
            # A checkpoint that no longer matches the journal is a problem, not a pass.
            checkpoint["journal_hash"] = "f" * 64
            (tmp_path / "audit" / "checkpoint.json").write_text(json.dumps(checkpoint))
            third = await dev_env.client.execute_workflow(
                ReconcileLedgerWorkflow.run,
                options,
                id=f"reconcile-{uuid.uuid4()}",
                task_queue=task_queue,
            )
            assert not third.ok and third.journal_problems >= 1
            assert "chain_broken" in {problem["kind"] for problem in third.problems}
            # A full run checks everything from genesis and re-anchors the checkpoint.
            full = await dev_env.client.execute_workflow(
                ReconcileLedgerWorkflow.run,
                options.model_copy(update={"full": True}),
                id=f"reconcile-{uuid.uuid4()}",
                task_queue=task_queue,
            )
            assert full.full and full.journal_problems == 0
            assert (full.journal_verified_from, full.journal_verified_to) == (0, head + 6)
            for hold_id in owned:
                await client.release_hold(hold_id, tenant_id=TENANT, idempotency_key="r")
        assert (
            json.loads((tmp_path / "audit" / "checkpoint.json").read_text())["journal_hash"]
            != "f" * 64
        )
    finally:
        await client.close()
        ledger.close()


def _tenants_with_examples(ledger: Ledger, count: int) -> list[str]:
    """``count`` tenants, each with the schema's three examples recorded (IDs of their own)."""
    tenants = [f"tenant-{index}" for index in range(count)]
    for tenant in tenants:
        entries = [
            {key: value for key, value in example.items() if key != "ledger_entry_id"}
            | {"tenant_id": tenant}
            for example in EXAMPLES
        ]
        ledger.record_entries(entries, tenant_id=tenant, idempotency_key="examples")
    return tenants


async def test_monthly_statements_page_through_tenants_with_continue_as_new(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    ledger = Ledger.from_url(sqlite_url, clock=lambda: datetime(2025, 1, 20, tzinfo=UTC))
    try:
        tenants = _tenants_with_examples(ledger, 5)
        result = await run_with_worker(
            time_skipping_env,
            ledger,
            tmp_path,
            MonthlyStatementsWorkflow.run,
            MonthlyStatementsInput(
                month="2025-01", formats=["json", "csv"], tenant_page_size=2, pages_per_run=1
            ),
        )
        assert (result.month, result.tenants, result.files_written) == ("2025-01", 5, 10)
        assert sorted(Path(path).name for path in result.files) == sorted(
            f"{tenant}.{suffix}" for tenant in tenants for suffix in ("json", "csv")
        )
    finally:
        ledger.close()


async def test_monthly_statements_resume_after_a_worker_restart(
    time_skipping_env: WorkflowEnvironment, sqlite_url: str, tmp_path: Path
) -> None:
    """The first worker stops in the middle of a page; the next one resumes the page from the
    activity's last heartbeat instead of writing its first statements again."""
    ledger = Ledger.from_url(sqlite_url, clock=lambda: datetime(2025, 1, 20, tzinfo=UTC))
    task_queue = f"finops-{uuid.uuid4().hex[:8]}"
    written: list[tuple[str, str]] = []
    stuck = asyncio.Event()

    def hook(worker_name: str) -> Callable[[str], Awaitable[None]]:
        async def progressed(unit: str) -> None:
            written.append((worker_name, unit))
            if worker_name == "first" and len(written) == 2:
                stuck.set()
                await asyncio.Event().wait()  # stuck until the worker stops

        return progressed

    try:
        tenants = _tenants_with_examples(ledger, 5)
        request = MonthlyStatementsInput(month="2025-01", formats=["json"], tenant_page_size=10)
        first = Worker(
            time_skipping_env.client,
            task_queue=task_queue,
            workflows=BATCH_WORKFLOWS,
            activities=activities_for(ledger, output_dir=tmp_path, progress_hook=hook("first")),
            max_cached_workflows=0,
            graceful_shutdown_timeout=timedelta(seconds=0),
        )
        first_run = asyncio.create_task(first.run())
        handle = await time_skipping_env.client.start_workflow(
            MonthlyStatementsWorkflow.run, request, id=f"test-{uuid.uuid4()}", task_queue=task_queue
        )
        await asyncio.wait_for(stuck.wait(), 30)
        await first.shutdown()
        await first_run
        async with Worker(
            time_skipping_env.client,
            task_queue=task_queue,
            workflows=BATCH_WORKFLOWS,
            activities=activities_for(ledger, output_dir=tmp_path, progress_hook=hook("second")),
        ):
            result = await handle.result()
        assert result.tenants == 5 and len(result.files) == 5
        by_second = [unit for worker_name, unit in written if worker_name == "second"]
        # The second worker went on from the heartbeat: it did not start the page over.
        assert "statements:tenant-0" not in by_second
        assert by_second[-1] == "statements:tenant-4"
        assert sorted({unit for _, unit in written}) == [f"statements:{t}" for t in tenants]
    finally:
        ledger.close()
