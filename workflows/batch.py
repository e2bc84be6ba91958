"""FinOps batch workflows, run by Temporal Schedules (``apply_schedules``) or on demand.

- :class:`ReconcileLedgerWorkflow` (hourly): the audit (``verify_journal`` plus every hold
  against its HoldWorkflow) and the expiry of orphaned holds: active, past expiry, and whose
  workflow is gone.
- :class:`MonthlyStatementsWorkflow` (the first of each month): every tenant's statement of
  the previous month, written as files (JSON, CSV, PDF).
- :class:`ProviderReconciliationWorkflow` (on demand): a provider bill matched against the
  journal, the report written next to the statements.

No I/O, clock or database import here: time is ``workflow.now()``, handed to the activities, so
a replay decides the same. The work itself is in ``activities/batch.py``.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ACTIVITY_GENERATE_STATEMENTS",
    "ACTIVITY_LIST_TENANTS",
    "ACTIVITY_RECONCILE_BILL",
    "ACTIVITY_RECONCILE_LEDGER",
    "BATCH_WORKFLOWS",
    "WORKFLOWS",
    "AuditSummary",
    "BillReconciliationSummary",
    "MonthlyStatementsInput",
    "MonthlyStatementsResult",
    "MonthlyStatementsWorkflow",
    "ProviderReconciliationInput",
    "ProviderReconciliationWorkflow",
    "ReconcileLedgerInput",
    "ReconcileLedgerWorkflow",
    "StatementsActivityInput",
    "previous_month",
]

ACTIVITY_RECONCILE_LEDGER = "finops_reconcile_ledger"
ACTIVITY_LIST_TENANTS = "finops_list_tenants"
ACTIVITY_GENERATE_STATEMENTS = "finops_generate_statements"
ACTIVITY_RECONCILE_BILL = "finops_reconcile_bill"

_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
    non_retryable_error_types=["invalid_entry", "statement_mismatch", "account_not_found"],
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReconcileLedgerInput(_Model):
    """Options of the hourly reconciliation."""

    expire_orphans: bool = True
    check_workflows: bool = True
    scope: str = Field(default="open", description="open (active/unpaid holds) or all")
    expiry_grace_seconds: int = 300


class ReconcileLedgerActivityInput(_Model):
    options: ReconcileLedgerInput
    now_iso: str


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


class MonthlyStatementsInput(_Model):
    """Which month (default: the one before the run), tenants (default: all) and formats."""

    month: str | None = None
    tenant_ids: list[str] | None = None
    formats: list[str] = Field(default_factory=lambda: ["json", "csv", "pdf"])
    time_field: str = "recorded_at"


class StatementsActivityInput(_Model):
    tenant_id: str
    month: str
    formats: list[str]
    time_field: str


class MonthlyStatementsResult(_Model):
    month: str
    files: list[str]


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


@workflow.defn(name="ReconcileLedgerWorkflow")
class ReconcileLedgerWorkflow:
    """Audit plus expiry of orphaned holds; fails loudly (in its result) when books are off."""

    @workflow.run
    async def run(self, request: ReconcileLedgerInput) -> AuditSummary:
        now = workflow.now()
        workflow.logger.info("ledger reconciliation at %s", now.isoformat())
        summary: AuditSummary = await workflow.execute_activity(
            ACTIVITY_RECONCILE_LEDGER,
            ReconcileLedgerActivityInput(options=request, now_iso=now.isoformat()),
            result_type=AuditSummary,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )
        return summary


@workflow.defn(name="MonthlyStatementsWorkflow")
class MonthlyStatementsWorkflow:
    """Every tenant's statements for one month, one activity per tenant."""

    @workflow.run
    async def run(self, request: MonthlyStatementsInput) -> MonthlyStatementsResult:
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
