"""FinOps on the journal: LedgerEntry v1.0 in and out, reports, statements, audit, reconciliation.

Temporal-free (the batch workflows in ``workflows/batch.py`` call it through activities). The
modules:

- ``records``: the LedgerEntry v1.0 JSON Schema, exact parsing and canonical rendering;
- ``transfer``: all-or-nothing, idempotent import; export of any filter's entries;
- ``query`` / ``reports``: one filter for everything, SQL GROUP BY over every dimension;
- ``statements``: monthly statements per account and per tenant (JSON, CSV, PDF);
- ``audit``: ``verify_journal()`` plus hold / workflow agreement, every problem as data;
- ``beancount_export``: the journal for ``bean-check``;
- ``reconcile``: provider bills matched by ``external_ref``;
- ``allocation``: an asset's cost split over tasks by the largest remainder method.
"""

from ledger_db.finops.allocation import (
    Allocation,
    AllocationShare,
    allocate_cost,
    largest_remainder,
    record_allocation,
)
from ledger_db.finops.audit import (
    AuditProblem,
    AuditReport,
    HoldRef,
    WorkflowView,
    expire_orphaned_holds,
    holds_to_check,
    run_audit,
)
from ledger_db.finops.beancount_export import write_beancount
from ledger_db.finops.query import EntryFilter, month_range
from ledger_db.finops.reconcile import (
    BillLine,
    ReconciliationLine,
    ReconciliationReport,
    parse_bill,
    reconcile_bill,
)
from ledger_db.finops.records import ledger_entry_schema, parse_records
from ledger_db.finops.reports import DIMENSIONS, Report, ReportRow, parse_group_by, run_report
from ledger_db.finops.statements import (
    AccountStatement,
    StatementMismatch,
    TenantStatement,
    account_statement,
    render_statement,
    tenant_statement,
    write_statement,
)
from ledger_db.finops.transfer import (
    ImportRejected,
    ImportResult,
    export_entries,
    import_file,
    import_text,
)

__all__ = [
    "DIMENSIONS",
    "AccountStatement",
    "Allocation",
    "AllocationShare",
    "AuditProblem",
    "AuditReport",
    "BillLine",
    "EntryFilter",
    "HoldRef",
    "ImportRejected",
    "ImportResult",
    "ReconciliationLine",
    "ReconciliationReport",
    "Report",
    "ReportRow",
    "StatementMismatch",
    "TenantStatement",
    "WorkflowView",
    "account_statement",
    "allocate_cost",
    "expire_orphaned_holds",
    "export_entries",
    "holds_to_check",
    "import_file",
    "import_text",
    "largest_remainder",
    "ledger_entry_schema",
    "month_range",
    "parse_bill",
    "parse_group_by",
    "parse_records",
    "reconcile_bill",
    "record_allocation",
    "render_statement",
    "run_audit",
    "run_report",
    "tenant_statement",
    "write_beancount",
    "write_statement",
]
