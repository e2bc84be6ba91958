"""Activities of the FinOps batch workflows, and the schedules that run them.

The activities call ``ledger_db.finops`` from a thread (the ledger is synchronous). Each page
activity heartbeats after every unit of work (a chain segment, a tenant) with its progress as
details, and a retried attempt resumes from the last heartbeat's details instead of starting
the page over.

The hold checks of the audit find each hold's workflow through visibility: one list query per
hundred holds (``WorkflowId IN (...) AND ExecutionStatus = 'Running'``, with the
``LedgerHoldState`` search attribute), never a query to each workflow; only the few holds that
visibility shows not running, or in another state (it lags a moment behind), are described one
by one. The answers go to the Temporal-free audit as a lookup table.

The journal is verified from the last verified checkpoint on: ``audit/checkpoint.json`` keeps
the last journal sequence verified clean and its hash, and a run checks the chain after it (a
``full`` run checks the whole journal, balances and hold buckets included, and re-anchors it).

Outputs go under ``LEDGER_FINOPS_OUTPUT_DIR`` (default ``./.compute-ledger/finops``):
``statements/<month>/<tenant>.<format>``, ``audit/<instant>.json`` (the summary) next to
``audit/<instant>-<run>/`` (the journal's and each hold page's problems),
``audit/checkpoint.json``, ``reconciliation/<tenant>-<bill>.{csv,json}``.

``apply_schedules(client, ...)`` creates or updates the schedules, idempotently.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

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
    AuditReport,
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
from ledger_db.journal import GENESIS_HASH, last_position, verify_segment
from ledger_db.schema import accounts, holds
from workflows import search_attributes as hold_attributes
from workflows.batch import (
    ACTIVITY_CHECK_HOLDS_PAGE,
    ACTIVITY_GENERATE_STATEMENTS,
    ACTIVITY_GENERATE_STATEMENTS_PAGE,
    ACTIVITY_LIST_TENANTS,
    ACTIVITY_LIST_TENANTS_PAGE,
    ACTIVITY_RECONCILE_BILL,
    ACTIVITY_RECONCILE_LEDGER,
    ACTIVITY_VERIFY_JOURNAL,
    ACTIVITY_WRITE_AUDIT_REPORT,
    PROBLEMS_IN_RESULT_MAX,
    AuditSummary,
    BillReconciliationSummary,
    HoldsPageInput,
    HoldsPageResult,
    JournalCheckInput,
    JournalCheckResult,
    ListTenantsPageInput,
    MonthlyStatementsInput,
    MonthlyStatementsWorkflow,
    ProviderReconciliationInput,
    ReconcileLedgerActivityInput,
    ReconcileLedgerInput,
    ReconcileLedgerWorkflow,
    StatementsActivityInput,
    StatementsPageInput,
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

T = TypeVar("T")

WORKFLOW_LOOKUP_CONCURRENCY = 16
# Workflow IDs per visibility query: well within a list query's length limit.
VISIBILITY_IDS_PER_QUERY = 100
CHECKPOINT_FILE = "checkpoint.json"
# How often a long single call (a full journal verification) tells Temporal it is alive.
HEARTBEAT_EVERY_SECONDS = 20.0

_STATUS_NAMES = {
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.CANCELED: "canceled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "continued_as_new",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}

# A HoldWorkflow's LedgerHoldState, as the hold state the ledger would record; None where the
# workflow is between states (or has no hold), which the audit then does not compare.
_LEDGER_STATE_OF_PHASE = {
    "active": "active",
    "finalizing": "captured",
    "payout_failed": "captured",
    "captured": "captured",
    "released": "released",
    "expired": "expired",
}


def default_output_dir() -> Path:
    return Path(os.environ.get("LEDGER_FINOPS_OUTPUT_DIR") or ".compute-ledger/finops")


def _business_error(error: LedgerError) -> ApplicationError:
    return ApplicationError(error.message, error.to_dict(), type=error.code, non_retryable=True)


async def lookup_hold_workflows(
    client: Client, holds: Sequence[HoldRef], *, concurrency: int = WORKFLOW_LOOKUP_CONCURRENCY
) -> dict[str, WorkflowView]:
    """Each hold's workflow status and, when it runs, the hold state it shows.

    One visibility query per ``VISIBILITY_IDS_PER_QUERY`` holds; a hold visibility does not show
    running, or shows in another state than the ledger's, is described (visibility lags).
    """
    views: dict[str, WorkflowView] = {}
    for start in range(0, len(holds), VISIBILITY_IDS_PER_QUERY):
        chunk = {
            hold_workflow_id(hold.hold_id): hold
            for hold in holds[start : start + VISIBILITY_IDS_PER_QUERY]
        }
        listed = ", ".join("'" + workflow_id.replace("'", "\\'") + "'" for workflow_id in chunk)
        query = f"WorkflowId IN ({listed}) AND ExecutionStatus = 'Running'"
        async for execution in client.list_workflows(query):
            hold = chunk.get(execution.id)
            if hold is not None:
                phase = execution.typed_search_attributes.get(hold_attributes.LEDGER_HOLD_STATE)
                views[hold.hold_id] = WorkflowView(
                    status="running", hold_state=_LEDGER_STATE_OF_PHASE.get(phase or "")
                )
    doubtful = [
        hold
        for hold in holds
        if (view := views.get(hold.hold_id)) is None
        or (view.hold_state is not None and view.hold_state != hold.state)
    ]
    semaphore = asyncio.Semaphore(concurrency)

    async def describe(hold: HoldRef) -> None:
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
                if description.status
                else "unknown"
            )
            phase = description.typed_search_attributes.get(hold_attributes.LEDGER_HOLD_STATE)
            hold_state = _LEDGER_STATE_OF_PHASE.get(phase or "") if status == "running" else None
            views[hold.hold_id] = WorkflowView(status=status, hold_state=hold_state)

    await asyncio.gather(*(describe(hold) for hold in doubtful))
    return views


def _resumed(default: T, parse: Callable[[Any], T]) -> T:
    """The progress a retried attempt's last heartbeat left, or ``default`` on a first attempt."""
    details = activity.info().heartbeat_details
    if not details:
        return default
    try:
        return parse(details[0])
    except (TypeError, ValueError, KeyError):
        return default


async def _heartbeating(call: Awaitable[T], details: Any) -> T:
    """Awaits ``call`` while heartbeating ``details`` every ``HEARTBEAT_EVERY_SECONDS``."""
    task = asyncio.ensure_future(call)
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY_SECONDS)
        if done:
            return task.result()
        activity.heartbeat(details)


def _problem_dicts(problems: Sequence[Any]) -> list[dict[str, object]]:
    return [problem.model_dump(mode="json") for problem in problems]


class BatchActivities:
    """The FinOps activities over one ledger (and the worker's Temporal client)."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        output_dir: Path | None = None,
        client: Client | None = None,
        progress_hook: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.ledger = ledger
        self.output_dir = output_dir
        self.client = client
        # Test hook: awaited after each unit of page work (e.g. "statements:<tenant>").
        self.progress_hook = progress_hook

    def _out(self) -> Path:
        return self.output_dir or default_output_dir()

    def _client(self) -> Client | None:
        if self.client is not None:
            return self.client
        try:
            return activity.client()
        except RuntimeError:
            return None

    async def _progressed(self, unit: str, details: Any) -> None:
        activity.heartbeat(details)
        if self.progress_hook is not None:
            await self.progress_hook(unit)

    def _run_directory(self, checked_at: str, run_id: str) -> Path:
        instant = datetime.fromisoformat(checked_at).strftime("%Y%m%dT%H%M%SZ")
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
        return self._out() / "audit" / f"{instant}-{digest}"

    # ------------------------------------------------------------------ reconciliation

    @activity.defn(name=ACTIVITY_VERIFY_JOURNAL)
    async def verify_journal(self, request: JournalCheckInput) -> JournalCheckResult:
        """The chain after the checkpoint (or the whole journal), segment by segment."""
        checkpoint_path = self._out() / "audit" / CHECKPOINT_FILE
        if request.full:
            start: dict[str, Any] = {"sequence": 0, "hash": GENESIS_HASH}
            problems = _problem_dicts(
                await _heartbeating(asyncio.to_thread(self.ledger.verify_journal), "full")
            )
            head_sequence, head_hash = await asyncio.to_thread(self._journal_head)
            position: dict[str, Any] = {"sequence": head_sequence, "hash": head_hash}
            problem_count = len(problems)
        else:
            start = await asyncio.to_thread(_read_checkpoint, checkpoint_path)
            progress: dict[str, Any] = _resumed(
                {"position": start, "problems": [], "problem_count": 0},
                lambda saved: {
                    "position": {
                        "sequence": int(saved["position"]["sequence"]),
                        "hash": str(saved["position"]["hash"]),
                    },
                    "problems": list(saved["problems"]),
                    "problem_count": int(saved["problem_count"]),
                },
            )
            position = progress["position"]
            problems = progress["problems"]
            problem_count = progress["problem_count"]
            while True:
                segment = await asyncio.to_thread(
                    self._verify_segment, position, request.segment_size
                )
                problems = (problems + _problem_dicts(segment.problems))[:PROBLEMS_IN_RESULT_MAX]
                problem_count += len(segment.problems)
                position = {"sequence": segment.last_sequence, "hash": segment.last_hash}
                await self._progressed(
                    f"journal:{segment.last_sequence}",
                    {"position": position, "problems": problems, "problem_count": problem_count},
                )
                if segment.reached_head:
                    break
        if problem_count == 0:
            # Verified clean up to here: the next run starts after it.
            await asyncio.to_thread(
                _write_json,
                checkpoint_path,
                {
                    "journal_sequence": position["sequence"],
                    "journal_hash": position["hash"],
                    "verified_at": datetime.now(UTC).isoformat(),
                },
            )
        path = self._run_directory(request.checked_at, request.run_id) / "journal.json"
        await asyncio.to_thread(
            _write_json, path, {"problem_count": problem_count, "problems": problems}
        )
        return JournalCheckResult(
            problem_count=problem_count,
            problems=problems,
            verified_from=int(start["sequence"]),
            verified_to=int(position["sequence"]),
            report_path=str(path),
        )

    def _verify_segment(self, position: dict[str, Any], size: int) -> Any:
        with self.ledger.engine.connect() as connection:
            return verify_segment(
                connection,
                after_sequence=int(position["sequence"]),
                prev_hash=str(position["hash"]),
                transactions_max=size,
            )

    def _journal_head(self) -> tuple[int, str]:
        # The last transaction in global order (tenant chains: there is no single head row).
        with self.ledger.engine.connect() as connection:
            return last_position(connection)

    @activity.defn(name=ACTIVITY_CHECK_HOLDS_PAGE)
    async def check_holds_page(self, request: HoldsPageInput) -> HoldsPageResult:
        """One page of holds: the audit's hold checks, with workflows found by visibility."""
        after = request.after or ("", "")
        until = await asyncio.to_thread(self._page_end, after, request.page_size)
        report, expired = await self._audit(
            ReconcileLedgerInput(
                scope=request.scope,
                check_workflows=request.check_workflows,
                expire_orphans=request.expire_orphans,
                expiry_grace_seconds=request.expiry_grace_seconds,
            ),
            datetime.fromisoformat(request.now_iso),
            verify_journal=False,
            after=after,
            until=until,
        )
        problems = _problem_dicts(report.problems)
        path = (
            self._run_directory(request.now_iso, request.run_id)
            / f"holds-{request.page_number:05d}.json"
        )
        await asyncio.to_thread(
            _write_json,
            path,
            {"after": after, "until": until, "problems": problems, "expired_hold_ids": expired},
        )
        await self._progressed(f"holds:{request.page_number}", {"until": until})
        return HoldsPageResult(
            checked=report.holds_checked,
            problem_count=len(problems),
            problems=problems[:PROBLEMS_IN_RESULT_MAX],
            expired_hold_ids=expired,
            next_after=until,
            report_path=str(path),
        )

    async def _audit(
        self,
        options: ReconcileLedgerInput,
        now: datetime,
        *,
        verify_journal: bool = True,
        after: tuple[str, str] = ("", ""),
        until: tuple[str, str] | None = None,
    ) -> tuple[AuditReport, list[str]]:
        """The audit of the holds in ``(after, until]`` (all by default) against their workflows,
        and the expiry of the orphaned ones; returns the report and the holds expired."""
        views: dict[str, WorkflowView] | None = None
        client = self._client()
        if options.check_workflows and client is not None:
            refs = await asyncio.to_thread(
                holds_to_check, self.ledger, scope=options.scope, after=after, until=until
            )
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
            verify_journal=verify_journal,
            after=after,
            until=until,
        )
        expired: list[str] = []
        if options.expire_orphans and report.orphaned_expired_holds:
            expired = await asyncio.to_thread(
                expire_orphaned_holds, self.ledger, report.orphaned_expired_holds, now=now
            )
        return report, expired

    def _page_end(self, after: tuple[str, str], size: int) -> tuple[str, str] | None:
        """The key of the ``size``-th hold after ``after``: the page's last; None when the page
        reaches the end of the holds."""
        key = sa.tuple_(holds.c.tenant_id, holds.c.hold_id)
        with self.ledger.engine.connect() as connection:
            row = connection.execute(
                sa.select(holds.c.tenant_id, holds.c.hold_id)
                .where(key > sa.tuple_(sa.literal(after[0]), sa.literal(after[1])))
                .order_by(holds.c.tenant_id, holds.c.hold_id)
                .offset(max(size, 1) - 1)
                .limit(1)
            ).first()
        return None if row is None else (row.tenant_id, row.hold_id)

    @activity.defn(name=ACTIVITY_WRITE_AUDIT_REPORT)
    async def write_audit_report(self, summary: AuditSummary) -> str:
        instant = datetime.fromisoformat(summary.checked_at).strftime("%Y%m%dT%H%M%SZ")
        path = self._out() / "audit" / f"{instant}.json"
        await asyncio.to_thread(_write_json, path, summary.model_dump(mode="json"))
        return str(path)

    @activity.defn(name=ACTIVITY_RECONCILE_LEDGER)
    async def reconcile_ledger(self, request: ReconcileLedgerActivityInput) -> AuditSummary:
        """The whole reconciliation in one activity: runs started before paging call it."""
        now = datetime.fromisoformat(request.now_iso)
        report, expired = await self._audit(request.options, now)
        path = self._out() / "audit" / f"{now.strftime('%Y%m%dT%H%M%SZ')}.json"
        body = report.model_dump(mode="json")
        body["expired_hold_ids"] = expired
        await asyncio.to_thread(_write_json, path, body)
        problems = _problem_dicts(report.problems)
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

    # ------------------------------------------------------------------ statements

    @activity.defn(name=ACTIVITY_LIST_TENANTS_PAGE)
    async def list_tenants_page(self, request: ListTenantsPageInput) -> list[str]:
        """Up to ``limit`` tenant IDs after ``after``, in order (of ``only`` when given)."""
        if request.only is not None:
            chosen = sorted({tenant for tenant in request.only if tenant > (request.after or "")})
            return chosen[: request.limit]

        def query() -> list[str]:
            statement = sa.select(accounts.c.tenant_id).distinct().order_by(accounts.c.tenant_id)
            if request.after is not None:
                statement = statement.where(accounts.c.tenant_id > request.after)
            with self.ledger.engine.connect() as connection:
                return [row[0] for row in connection.execute(statement.limit(request.limit))]

        return await asyncio.to_thread(query)

    @activity.defn(name=ACTIVITY_LIST_TENANTS)
    async def list_tenants(self) -> list[str]:
        """Every tenant at once: runs started before paging call it."""
        tenants: list[str] = []
        while True:
            page = await self.list_tenants_page(
                ListTenantsPageInput(after=tenants[-1] if tenants else None, limit=1000)
            )
            tenants.extend(page)
            if len(page) < 1000:
                return tenants

    @activity.defn(name=ACTIVITY_GENERATE_STATEMENTS_PAGE)
    async def generate_statements_page(self, request: StatementsPageInput) -> list[str]:
        """A page of tenants' statements; a retry resumes after the last tenant written."""
        progress: dict[str, Any] = _resumed(
            {"done": 0, "files": []},
            lambda saved: {"done": int(saved["done"]), "files": [str(f) for f in saved["files"]]},
        )
        files: list[str] = progress["files"]
        for index in range(progress["done"], len(request.tenant_ids)):
            tenant_id = request.tenant_ids[index]
            files += await self.generate_statements(
                StatementsActivityInput(
                    tenant_id=tenant_id,
                    month=request.month,
                    formats=request.formats,
                    time_field=request.time_field,
                )
            )
            await self._progressed(f"statements:{tenant_id}", {"done": index + 1, "files": files})
        return files

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

    # ------------------------------------------------------------------ provider bills

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
            self.verify_journal,
            self.check_holds_page,
            self.write_audit_report,
            self.reconcile_ledger,
            self.list_tenants_page,
            self.list_tenants,
            self.generate_statements_page,
            self.generate_statements,
            self.reconcile_bill,
        ]


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The last position verified clean, or the genesis when there is none (or it is unreadable)."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        saved = json.loads(path.read_text(encoding="utf-8"))
        return {"sequence": int(saved["journal_sequence"]), "hash": str(saved["journal_hash"])}
    return {"sequence": 0, "hash": GENESIS_HASH}


def _write_json(path: Path, body: Any) -> None:
    """Writes ``path`` whole or not at all (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    temporary.replace(path)


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
