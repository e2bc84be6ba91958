"""Activities of the FinOps batch workflows, and the schedules that run them.

The activities call ``ledger_db.finops`` from a thread (the ledger is synchronous). The hold
checks of the audit ask Temporal about each hold's workflow (describe, then the ``state`` query
when it runs), through the worker's own client, and hand the answers to the Temporal-free audit
as a lookup table.

Outputs go under ``LEDGER_FINOPS_OUTPUT_DIR`` (default ``./.compute-ledger/finops``):
``statements/<month>/<tenant>.<format>``, ``audit/<instant>.json``,
``reconciliation/<tenant>-<bill>.{csv,json}``.

``apply_schedules(client, ...)`` creates or updates the schedules, idempotently.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowExecutionStatus,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from ledger_db import Ledger
from ledger_db.errors import LedgerError
from ledger_db.finops import (
    EntryFilter,
    HoldRef,
    WorkflowView,
    expire_orphaned_holds,
    holds_to_check,
    parse_bill,
    reconcile_bill,
    run_audit,
    tenant_statement,
    write_statement,
)
from ledger_db.finops.reconcile import render_reconciliation_csv, render_reconciliation_json
from ledger_db.ids import hold_workflow_id
from ledger_db.schema import accounts
from workflows.batch import (
    ACTIVITY_GENERATE_STATEMENTS,
    ACTIVITY_LIST_TENANTS,
    ACTIVITY_RECONCILE_BILL,
    ACTIVITY_RECONCILE_LEDGER,
    AuditSummary,
    BillReconciliationSummary,
    MonthlyStatementsInput,
    MonthlyStatementsWorkflow,
    ProviderReconciliationInput,
    ReconcileLedgerActivityInput,
    ReconcileLedgerInput,
    ReconcileLedgerWorkflow,
    StatementsActivityInput,
)

__all__ = [
    "BATCH_ACTIVITIES",
    "SCHEDULE_IDS",
    "BatchActivities",
    "activities_for",
    "apply_schedules",
    "default_output_dir",
    "lookup_hold_workflows",
]

PROBLEMS_IN_RESULT_MAX = 100
WORKFLOW_LOOKUP_CONCURRENCY = 16

_STATUS_NAMES = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "canceled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "continued_as_new",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}


def default_output_dir() -> Path:
    return Path(os.environ.get("LEDGER_FINOPS_OUTPUT_DIR") or ".compute-ledger/finops")


def _business_error(error: LedgerError) -> ApplicationError:
    return ApplicationError(error.message, error.to_dict(), type=error.code, non_retryable=True)


async def lookup_hold_workflows(
    client: Client, holds: Sequence[HoldRef], *, concurrency: int = WORKFLOW_LOOKUP_CONCURRENCY
) -> dict[str, WorkflowView]:
    """Each hold's workflow status (and, when running, the hold state its query reports)."""
    semaphore = asyncio.Semaphore(concurrency)
    views: dict[str, WorkflowView] = {}

    async def one(hold: HoldRef) -> None:
        async with semaphore:
            handle = client.get_workflow_handle(hold_workflow_id(hold.hold_id))
            try:
                description = await handle.describe()
            except RPCError as error:
                if error.status == RPCStatusCode.NOT_FOUND:
                    views[hold.hold_id] = WorkflowView(status="not_found")
                    return
                raise
            status = (
                _STATUS_NAMES.get(description.status, "unknown")
                if description.status is not None
                else "unknown"
            )
            hold_state: str | None = None
            if status == "running":
                try:
                    state = await handle.query("state")
                    hold_data = state.get("hold") if isinstance(state, dict) else None
                    if isinstance(hold_data, dict):
                        hold_state = hold_data.get("state")
                except Exception:  # a query may fail on an old or busy workflow: status suffices
                    hold_state = None
            views[hold.hold_id] = WorkflowView(status=status, hold_state=hold_state)

    await asyncio.gather(*(one(hold) for hold in holds))
    return views


class BatchActivities:
    """The FinOps activities over one ledger (and the worker's Temporal client)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        output_dir: Path | None = None,
        client: Client | None = None,
    ) -> None:
        self.ledger = ledger
        self.output_dir = output_dir
        self.client = client

    def _out(self) -> Path:
        return self.output_dir or default_output_dir()

    def _client(self) -> Client | None:
        if self.client is not None:
            return self.client
        try:
            return activity.client()
        except RuntimeError:
            return None

    @activity.defn(name=ACTIVITY_RECONCILE_LEDGER)
    async def reconcile_ledger(self, request: ReconcileLedgerActivityInput) -> AuditSummary:
        options = request.options
        now = datetime.fromisoformat(request.now_iso)
        views: dict[str, WorkflowView] | None = None
        client = self._client()
        if options.check_workflows and client is not None:
            refs = await asyncio.to_thread(holds_to_check, self.ledger, scope=options.scope)
            activity.heartbeat(f"asking about {len(refs)} hold workflows")
            views = await lookup_hold_workflows(client, refs)
        lookup: Callable[[HoldRef], WorkflowView | None] | None = (
            None if views is None else (lambda hold: views.get(hold.hold_id))
        )
        report = await asyncio.to_thread(
            run_audit,
            self.ledger,
            workflow_lookup=lookup,
            now=now,
            scope=options.scope,
            expiry_grace=timedelta(seconds=options.expiry_grace_seconds),
        )
        expired: list[str] = []
        if options.expire_orphans and report.orphaned_expired_holds:
            expired = await asyncio.to_thread(
                expire_orphaned_holds, self.ledger, report.orphaned_expired_holds, now=now
            )
        path = self._out() / "audit" / f"{now.strftime('%Y%m%dT%H%M%SZ')}.json"
        body = report.model_dump(mode="json")
        body["expired_hold_ids"] = expired
        await asyncio.to_thread(_write_json, path, body)
        problems = [problem.model_dump(mode="json") for problem in report.problems]
        return AuditSummary(
            ok=report.ok,
            checked_at=now.isoformat(),
            journal_problems=report.journal_problems,
            hold_problems=report.hold_problems,
            holds_checked=report.holds_checked,
            problems=problems[:PROBLEMS_IN_RESULT_MAX],
            problems_truncated=len(problems) > PROBLEMS_IN_RESULT_MAX,
            expired_hold_ids=expired,
            report_path=str(path),
        )

    @activity.defn(name=ACTIVITY_LIST_TENANTS)
    async def list_tenants(self) -> list[str]:
        def query() -> list[str]:
            with self.ledger.engine.connect() as connection:
                return [
                    row[0]
                    for row in connection.execute(
                        sa.select(accounts.c.tenant_id).distinct().order_by(accounts.c.tenant_id)
                    )
                ]

        return await asyncio.to_thread(query)

    @activity.defn(name=ACTIVITY_GENERATE_STATEMENTS)
    async def generate_statements(self, request: StatementsActivityInput) -> list[str]:
        def generate() -> list[str]:
            with self.ledger.engine.connect() as connection:
                statement = tenant_statement(
                    connection,
                    tenant_id=request.tenant_id,
                    month=request.month,
                    time_field=request.time_field,  # type: ignore[arg-type]
                )
            directory = self._out() / "statements" / request.month
            return [
                str(
                    write_statement(
                        statement,
                        statement_format,
                        directory / f"{request.tenant_id}.{statement_format}",
                    )
                )
                for statement_format in request.formats
            ]

        try:
            return await asyncio.to_thread(generate)
        except LedgerError as error:
            raise _business_error(error) from error

    @activity.defn(name=ACTIVITY_RECONCILE_BILL)
    async def reconcile_bill(
        self, request: ProviderReconciliationInput
    ) -> BillReconciliationSummary:
        def run() -> BillReconciliationSummary:
            text = Path(request.bill_path).read_text(encoding="utf-8")
            bill = parse_bill(text, registry=self.ledger.registry)
            base = EntryFilter(category=request.category, reason=request.reason)
            with self.ledger.engine.connect() as connection:
                report = reconcile_bill(
                    connection, bill, tenant_id=request.tenant_id, base_filter=base
                )
            stem = f"{request.tenant_id}-{Path(request.bill_path).stem}"
            directory = self._out() / "reconciliation"
            directory.mkdir(parents=True, exist_ok=True)
            csv_path = directory / f"{stem}.csv"
            json_path = directory / f"{stem}.json"
            csv_path.write_text(render_reconciliation_csv(report), encoding="utf-8")
            json_path.write_text(render_reconciliation_json(report), encoding="utf-8")
            return BillReconciliationSummary(
                tenant_id=request.tenant_id,
                bill_path=request.bill_path,
                clean=report.clean,
                counts=report.counts,
                report_paths=[str(csv_path), str(json_path)],
            )

        try:
            return await asyncio.to_thread(run)
        except LedgerError as error:
            raise _business_error(error) from error

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.reconcile_ledger,
            self.list_tenants,
            self.generate_statements,
            self.reconcile_bill,
        ]


def _write_json(path: Path, body: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def activities_for(ledger: Ledger, **options: Any) -> list[Callable[..., Any]]:
    """The batch activities over ``ledger``, for the worker to register."""
    return BatchActivities(ledger, **options).all()


# The factory under the name the brief uses (a list needs a ledger, so it is a function).
BATCH_ACTIVITIES = activities_for


# ---------------------------------------------------------------------------------------------
# Schedules

SCHEDULE_RECONCILE = "finops-reconcile-ledger"
SCHEDULE_STATEMENTS = "finops-monthly-statements"
SCHEDULE_IDS: tuple[str, ...] = (SCHEDULE_RECONCILE, SCHEDULE_STATEMENTS)


def _schedules(task_queue: str) -> dict[str, tuple[Schedule, str]]:
    reconcile = Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileLedgerWorkflow.run,
            ReconcileLedgerInput(),
            id="finops-reconcile-ledger-run",
            task_queue=task_queue,
            execution_timeout=timedelta(hours=1),
            memo={"purpose": "hourly ledger audit and orphaned hold expiry"},
            static_summary="Ledger reconciliation: audit + expire orphaned holds",
            static_details="verify_journal() (hash chain, balances, holds), every open hold "
            "against its HoldWorkflow, and expiry of active expired holds whose workflow is gone.",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    statements = Schedule(
        action=ScheduleActionStartWorkflow(
            MonthlyStatementsWorkflow.run,
            MonthlyStatementsInput(),
            id="finops-monthly-statements-run",
            task_queue=task_queue,
            execution_timeout=timedelta(hours=6),
            memo={"purpose": "previous month's statements of every tenant"},
            static_summary="Monthly statements: previous month, every tenant (JSON, CSV, PDF)",
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    day_of_month=[ScheduleRange(1)],
                    hour=[ScheduleRange(1)],
                    minute=[ScheduleRange(0)],
                    second=[ScheduleRange(0)],
                    comment="01:00 UTC on the first of every month",
                )
            ],
            time_zone_name="UTC",
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    return {
        SCHEDULE_RECONCILE: (reconcile, "Hourly: audit the journal and holds, expire orphans."),
        SCHEDULE_STATEMENTS: (statements, "Monthly (1st, 01:00 UTC): tenant statements."),
    }


def _fingerprint(schedule: Schedule) -> str:
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    body = {
        "workflow": action.workflow,
        "args": [repr(argument) for argument in action.args],
        "id": action.id,
        "task_queue": action.task_queue,
        "summary": action.static_summary,
        "spec": repr(schedule.spec),
        "policy": repr(schedule.policy),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


async def apply_schedules(
    client: Client, *, task_queue: str, paused: bool = False
) -> list[dict[str, str]]:
    """Creates missing schedules and updates changed ones; unchanged ones are left alone.

    Each schedule's note carries a fingerprint of its definition, so a second run with the same
    definition reports ``unchanged`` and writes nothing.
    """
    results: list[dict[str, str]] = []
    for schedule_id, (schedule, purpose) in _schedules(task_queue).items():
        fingerprint = _fingerprint(schedule)
        note = f"{purpose} Managed by `compute-ledger schedules apply` [config {fingerprint}]"
        schedule.state = ScheduleState(note=note, paused=paused)
        handle = client.get_schedule_handle(schedule_id)
        try:
            description = await handle.describe()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            description = None
        if description is None:
            try:
                await client.create_schedule(
                    schedule_id, schedule, memo={"managed_by": "compute-ledger", "purpose": purpose}
                )
                results.append(
                    {"schedule_id": schedule_id, "action": "created", "fingerprint": fingerprint}
                )
                continue
            except ScheduleAlreadyRunningError:
                description = await handle.describe()  # a concurrent apply created it
        current_note = description.schedule.state.note or ""
        if f"[config {fingerprint}]" in current_note and (
            description.schedule.state.paused == paused
        ):
            results.append(
                {"schedule_id": schedule_id, "action": "unchanged", "fingerprint": fingerprint}
            )
            continue

        def update(_: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=new)

        await handle.update(update)
        results.append(
            {"schedule_id": schedule_id, "action": "updated", "fingerprint": fingerprint}
        )
    return results
