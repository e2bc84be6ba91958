"""FinOps batch workflows, run by Temporal Schedules (``apply_schedules``) or on demand.

- :class:`ReconcileLedgerWorkflow` (hourly): the journal's hash chain verified from the last
  verified checkpoint on (or the whole journal, balances included, with ``full``), then every
  open hold checked against its HoldWorkflow page by page (found through visibility, not one
  query per workflow), and the expiry of orphaned holds: active, past expiry, workflow gone.
- :class:`MonthlyStatementsWorkflow` (the first of each month): every tenant's statement of
  the previous month, written as files (JSON, CSV, PDF), a page of tenants per activity.
- :class:`ProviderReconciliationWorkflow` (on demand): a provider bill matched against the
  journal, the report written next to the statements.

At scale: each page is one activity that heartbeats its progress and, when retried (a worker
restart, a timeout), resumes from its last heartbeat instead of redoing the page; the workflows
continue as new every ``pages_per_run`` pages (or when the server suggests it), carrying their
progress, so no history grows without bound. Runs started before paging (no
``paged-batches`` marker) finish on the code they started with.

No I/O, clock or database import here: time is ``workflow.now()``, handed to the activities, so
a replay decides the same. The work itself is in ``activities/batch.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ACTIVITY_CHECK_HOLDS_PAGE",
    "ACTIVITY_GENERATE_STATEMENTS",
    "ACTIVITY_GENERATE_STATEMENTS_PAGE",
    "ACTIVITY_LIST_TENANTS",
    "ACTIVITY_LIST_TENANTS_PAGE",
    "ACTIVITY_RECONCILE_BILL",
    "ACTIVITY_RECONCILE_LEDGER",
    "ACTIVITY_VERIFY_JOURNAL",
    "ACTIVITY_WRITE_AUDIT_REPORT",
    "BATCH_WORKFLOWS",
    "PROBLEMS_IN_RESULT_MAX",
    "WORKFLOWS",
    "AuditSummary",
    "BillReconciliationSummary",
    "HoldsPageInput",
    "HoldsPageResult",
    "JournalCheckInput",
    "JournalCheckResult",
    "ListTenantsPageInput",
    "MonthlyStatementsInput",
    "MonthlyStatementsResult",
    "MonthlyStatementsWorkflow",
    "ProviderReconciliationInput",
    "ProviderReconciliationWorkflow",
    "ReconcileLedgerInput",
    "ReconcileLedgerWorkflow",
    "ReconcileProgress",
    "StatementsActivityInput",
    "StatementsPageInput",
    "StatementsProgress",
    "previous_month",
]

# Activities of the runs started before paging (kept registered until those runs have ended).
ACTIVITY_RECONCILE_LEDGER = "finops_reconcile_ledger"
ACTIVITY_LIST_TENANTS = "finops_list_tenants"
ACTIVITY_GENERATE_STATEMENTS = "finops_generate_statements"
# The paged ones.
ACTIVITY_VERIFY_JOURNAL = "finops_verify_journal"
ACTIVITY_CHECK_HOLDS_PAGE = "finops_check_holds_page"
ACTIVITY_WRITE_AUDIT_REPORT = "finops_write_audit_report"
ACTIVITY_LIST_TENANTS_PAGE = "finops_list_tenants_page"
ACTIVITY_GENERATE_STATEMENTS_PAGE = "finops_generate_statements_page"
ACTIVITY_RECONCILE_BILL = "finops_reconcile_bill"

PAGED_PATCH = "paged-batches"
ResultT = TypeVar("ResultT")
PROBLEMS_IN_RESULT_MAX = 100
FILES_IN_RESULT_MAX = 1000

_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
    non_retryable_error_types=["invalid_entry", "statement_mismatch", "account_not_found"],
)
# A page activity must show progress this often; a silent one is retried (and resumes).
PAGE_HEARTBEAT_TIMEOUT = timedelta(minutes=2)
PAGE_TIMEOUT = timedelta(minutes=30)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class AuditSummary(_Model):
    """What the hourly reconciliation found and did."""

    ok: bool
    checked_at: str
    journal_problems: int
    hold_problems: int
    holds_checked: int
    problems: list[dict[str, object]] = Field(description="the first problems, as data")
    problems_truncated: bool = False
    expired_hold_ids: list[str]
    report_path: str | None = None
    full: bool = Field(default=False, description="the whole journal, balances included")
    journal_verified_from: int | None = Field(
        default=None, description="the checkpoint's journal sequence this run verified after"
    )
    journal_verified_to: int | None = Field(
        default=None, description="the last journal sequence this run verified"
    )


class JournalCheckInput(_Model):
    full: bool = False
    segment_size: int = 2000
    checked_at: str
    run_id: str


class JournalCheckResult(_Model):
    """The journal part of a reconciliation: problems, and the stretch of the chain checked."""

    problem_count: int
    problems: list[dict[str, object]]
    verified_from: int
    verified_to: int
    report_path: str


class ReconcileProgress(_Model):
    """A reconciliation's progress, carried from run to run by continue-as-new."""

    checked_at: str
    run_id: str
    journal: JournalCheckResult | None = None
    after_hold: tuple[str, str] | None = None
    pages_done: int = 0
    holds_checked: int = 0
    hold_problems: int = 0
    problems: list[dict[str, object]] = Field(default_factory=list)
    expired_hold_ids: list[str] = Field(default_factory=list)
    page_reports: list[str] = Field(default_factory=list)


class ReconcileLedgerInput(_Model):
    """Options of the hourly reconciliation (``progress`` is the workflow's own, between runs)."""

    expire_orphans: bool = True
    check_workflows: bool = True
    scope: str = Field(default="open", description="open (active/unpaid holds) or all")
    expiry_grace_seconds: int = 300
    full: bool = Field(
        default=False,
        description="verify the whole journal (balances and hold buckets too) from genesis, "
        "not the chain from the last verified checkpoint",
    )
    hold_page_size: int = 500
    journal_segment_size: int = 2000
    pages_per_run: int = 50
    progress: ReconcileProgress | None = None


class ReconcileLedgerActivityInput(_Model):
    options: ReconcileLedgerInput
    now_iso: str


class HoldsPageInput(_Model):
    after: tuple[str, str] | None
    page_size: int
    now_iso: str
    scope: str
    expiry_grace_seconds: int
    check_workflows: bool
    expire_orphans: bool
    run_id: str
    page_number: int


class HoldsPageResult(_Model):
    checked: int
    problem_count: int
    problems: list[dict[str, object]]
    expired_hold_ids: list[str]
    next_after: tuple[str, str] | None = Field(description="None: this was the last page")
    report_path: str


class StatementsProgress(_Model):
    """Monthly statements' progress, carried from run to run by continue-as-new."""

    month: str
    after_tenant: str | None = None
    tenants_done: int = 0
    files_written: int = 0
    files: list[str] = Field(default_factory=list)


class MonthlyStatementsInput(_Model):
    """Which month (default: the one before the run), tenants (default: all) and formats."""

    month: str | None = None
    tenant_ids: list[str] | None = None
    formats: list[str] = Field(default_factory=lambda: ["json", "csv", "pdf"])
    time_field: str = "recorded_at"
    tenant_page_size: int = 100
    pages_per_run: int = 20
    progress: StatementsProgress | None = None


class StatementsActivityInput(_Model):
    tenant_id: str
    month: str
    formats: list[str]
    time_field: str


class ListTenantsPageInput(_Model):
    after: str | None
    limit: int
    only: list[str] | None = None


class StatementsPageInput(_Model):
    tenant_ids: list[str]
    month: str
    formats: list[str]
    time_field: str


class MonthlyStatementsResult(_Model):
    month: str
    files: list[str] = Field(description=f"the first {FILES_IN_RESULT_MAX} files written")
    tenants: int = 0
    files_written: int = 0


class ProviderReconciliationInput(_Model):
    """A provider bill (CSV path readable by the worker) for one tenant."""

    tenant_id: str
    bill_path: str
    category: str | None = None
    reason: str | None = None


class BillReconciliationSummary(_Model):
    tenant_id: str
    bill_path: str
    clean: bool
    counts: dict[str, int]
    report_paths: list[str]


def previous_month(year: int, month: int) -> str:
    """``YYYY-MM`` of the month before ``year``-``month``."""
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


async def _page_activity(name: str, argument: BaseModel, result_type: type[ResultT]) -> ResultT:
    """A page of work: heartbeating, resumed from its last heartbeat when retried."""
    result: ResultT = await workflow.execute_activity(
        name,
        argument,
        result_type=result_type,
        start_to_close_timeout=PAGE_TIMEOUT,
        heartbeat_timeout=PAGE_HEARTBEAT_TIMEOUT,
        retry_policy=_RETRY,
    )
    return result


def _time_to_continue(pages_this_run: int, pages_per_run: int) -> bool:
    return pages_this_run >= pages_per_run or workflow.info().is_continue_as_new_suggested()


@workflow.defn(name="ReconcileLedgerWorkflow")
class ReconcileLedgerWorkflow:
    """Audit plus expiry of orphaned holds; fails loudly (in its result) when books are off."""

    @workflow.run
    async def run(self, request: ReconcileLedgerInput) -> AuditSummary:
        if not workflow.patched(PAGED_PATCH):
            return await self._run_unpaged(request)
        progress = request.progress or ReconcileProgress(
            checked_at=workflow.now().isoformat(), run_id=workflow.info().workflow_id
        )
        if progress.journal is None:
            journal = await _page_activity(
                ACTIVITY_VERIFY_JOURNAL,
                JournalCheckInput(
                    full=request.full,
                    segment_size=request.journal_segment_size,
                    checked_at=progress.checked_at,
                    run_id=progress.run_id,
                ),
                JournalCheckResult,
            )
            progress = progress.model_copy(update={"journal": journal})
        pages_this_run = 0
        while progress.pages_done == 0 or progress.after_hold is not None:
            if _time_to_continue(pages_this_run, request.pages_per_run):
                workflow.continue_as_new(request.model_copy(update={"progress": progress}))
            page = await _page_activity(
                ACTIVITY_CHECK_HOLDS_PAGE,
                HoldsPageInput(
                    after=progress.after_hold,
                    page_size=request.hold_page_size,
                    now_iso=progress.checked_at,
                    scope=request.scope,
                    expiry_grace_seconds=request.expiry_grace_seconds,
                    check_workflows=request.check_workflows,
                    expire_orphans=request.expire_orphans,
                    run_id=progress.run_id,
                    page_number=progress.pages_done,
                ),
                HoldsPageResult,
            )
            pages_this_run += 1
            progress = progress.model_copy(
                update={
                    "after_hold": page.next_after,
                    "pages_done": progress.pages_done + 1,
                    "holds_checked": progress.holds_checked + page.checked,
                    "hold_problems": progress.hold_problems + page.problem_count,
                    "problems": _first(progress.problems, page.problems),
                    "expired_hold_ids": progress.expired_hold_ids + page.expired_hold_ids,
                    "page_reports": [*progress.page_reports, page.report_path],
                }
            )
        summary = _summary(request, progress)
        path: str = await workflow.execute_activity(
            ACTIVITY_WRITE_AUDIT_REPORT,
            summary,
            result_type=str,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=_RETRY,
        )
        return summary.model_copy(update={"report_path": path})

    async def _run_unpaged(self, request: ReconcileLedgerInput) -> AuditSummary:
        """A run started before paging: one activity did it all."""
        now = workflow.now()
        summary: AuditSummary = await workflow.execute_activity(
            ACTIVITY_RECONCILE_LEDGER,
            ReconcileLedgerActivityInput(options=request, now_iso=now.isoformat()),
            result_type=AuditSummary,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )
        return summary


def _first(kept: list[dict[str, object]], more: list[dict[str, object]]) -> list[dict[str, object]]:
    return (kept + more)[:PROBLEMS_IN_RESULT_MAX]


def _summary(request: ReconcileLedgerInput, progress: ReconcileProgress) -> AuditSummary:
    journal = progress.journal
    assert journal is not None
    problem_count = journal.problem_count + progress.hold_problems
    problems = _first(journal.problems, progress.problems)
    return AuditSummary(
        ok=problem_count == 0,
        checked_at=progress.checked_at,
        journal_problems=journal.problem_count,
        hold_problems=progress.hold_problems,
        holds_checked=progress.holds_checked,
        problems=problems,
        problems_truncated=problem_count > len(problems),
        expired_hold_ids=progress.expired_hold_ids,
        full=request.full,
        journal_verified_from=journal.verified_from,
        journal_verified_to=journal.verified_to,
        report_path=None,
    )


@workflow.defn(name="MonthlyStatementsWorkflow")
class MonthlyStatementsWorkflow:
    """Every tenant's statements for one month, a page of tenants per activity."""

    @workflow.run
    async def run(self, request: MonthlyStatementsInput) -> MonthlyStatementsResult:
        if not workflow.patched(PAGED_PATCH):
            return await self._run_unpaged(request)
        progress = request.progress
        if progress is None:
            now = workflow.now()
            progress = StatementsProgress(
                month=request.month or previous_month(now.year, now.month)
            )
        pages_this_run = 0
        while True:
            if _time_to_continue(pages_this_run, request.pages_per_run):
                workflow.continue_as_new(request.model_copy(update={"progress": progress}))
            tenants: list[str] = await workflow.execute_activity(
                ACTIVITY_LIST_TENANTS_PAGE,
                ListTenantsPageInput(
                    after=progress.after_tenant,
                    limit=request.tenant_page_size,
                    only=request.tenant_ids,
                ),
                result_type=list[str],
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=_RETRY,
            )
            if not tenants:
                break
            written = await _page_activity(
                ACTIVITY_GENERATE_STATEMENTS_PAGE,
                StatementsPageInput(
                    tenant_ids=tenants,
                    month=progress.month,
                    formats=request.formats,
                    time_field=request.time_field,
                ),
                list[str],
            )
            pages_this_run += 1
            progress = progress.model_copy(
                update={
                    "after_tenant": tenants[-1],
                    "tenants_done": progress.tenants_done + len(tenants),
                    "files_written": progress.files_written + len(written),
                    "files": (progress.files + written)[:FILES_IN_RESULT_MAX],
                }
            )
            if len(tenants) < request.tenant_page_size:
                break
        return MonthlyStatementsResult(
            month=progress.month,
            files=progress.files,
            tenants=progress.tenants_done,
            files_written=progress.files_written,
        )

    async def _run_unpaged(self, request: MonthlyStatementsInput) -> MonthlyStatementsResult:
        """A run started before paging: one activity per tenant, all in one history."""
        now = workflow.now()
        month = request.month or previous_month(now.year, now.month)
        tenants = request.tenant_ids
        if tenants is None:
            tenants = await workflow.execute_activity(
                ACTIVITY_LIST_TENANTS,
                result_type=list[str],
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=_RETRY,
            )
        files: list[str] = []
        for tenant_id in sorted(tenants):
            written: list[str] = await workflow.execute_activity(
                ACTIVITY_GENERATE_STATEMENTS,
                StatementsActivityInput(
                    tenant_id=tenant_id,
                    month=month,
                    formats=request.formats,
                    time_field=request.time_field,
                ),
                result_type=list[str],
                start_to_close_timeout=timedelta(minutes=30),
                retry_policy=_RETRY,
            )
            files.extend(written)
        return MonthlyStatementsResult(month=month, files=files)


@workflow.defn(name="ProviderReconciliationWorkflow")
class ProviderReconciliationWorkflow:
    """One provider bill against the journal; the report is written as CSV and JSON."""

    @workflow.run
    async def run(self, request: ProviderReconciliationInput) -> BillReconciliationSummary:
        summary: BillReconciliationSummary = await workflow.execute_activity(
            ACTIVITY_RECONCILE_BILL,
            request,
            result_type=BillReconciliationSummary,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=_RETRY,
        )
        return summary


BATCH_WORKFLOWS: list[type] = [
    ReconcileLedgerWorkflow,
    MonthlyStatementsWorkflow,
    ProviderReconciliationWorkflow,
]
# The name the worker's contribution hook looks for.
WORKFLOWS = BATCH_WORKFLOWS
