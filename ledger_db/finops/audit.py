"""The audit: the journal's own verification plus the hold checks, every problem as data.

``Ledger.verify_journal()`` recomputes the hash chain, the balance of every transaction, every
balance snapshot and every hold bucket. This module adds what only FinOps can see:

- each hold's row agrees with the journal: an active hold has no resolving transaction, a
  resolved one points at a transaction of the matching kind (capture, release, expire);
- each hold agrees with its HoldWorkflow, as answered by a caller-supplied lookup (so this
  package never imports Temporal): an active hold's workflow is running; a workflow that reports
  a hold state reports the journal's; a captured hold still to be paid out has a workflow to do it;
- no active hold is past its expiry (plus a grace period) unless its workflow is still about to
  expire it; an active, expired hold whose workflow is gone is *orphaned*: the hourly
  reconciliation expires it (:func:`expire_orphaned_holds`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from ledger_db.errors import LedgerError
from ledger_db.journal import iso
from ledger_db.ledger import Ledger
from ledger_db.schema import holds, journal_transactions

__all__ = [
    "CLOSED_STATUSES",
    "AuditProblem",
    "AuditReport",
    "HoldKey",
    "HoldRef",
    "WorkflowLookup",
    "WorkflowView",
    "expire_orphaned_holds",
    "holds_to_check",
    "run_audit",
]

_BATCH_HOLDS = 1000
CLOSED_STATUSES = frozenset(
    {"completed", "failed", "canceled", "terminated", "timed_out", "continued_as_new"}
)


class WorkflowView(BaseModel):
    """What Temporal says about a hold's workflow: its status and, if known, the hold state."""

    model_config = ConfigDict(frozen=True)

    status: str  # running, not_found, or one of CLOSED_STATUSES
    hold_state: str | None = None


class HoldRef(BaseModel):
    """A hold whose workflow the audit wants to hear about."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    hold_id: str
    state: str
    expires_at: datetime
    finalized: bool


# Answers a hold's workflow view; ``None`` means "not looked up" (the hold is skipped), whereas a
# workflow that does not exist is ``WorkflowView(status="not_found")``.
WorkflowLookup = Callable[[HoldRef], WorkflowView | None]


class AuditProblem(BaseModel):
    """One thing wrong, where it is, and what was expected."""

    model_config = ConfigDict(frozen=True)

    kind: str
    message: str
    source: str  # journal (verify_journal), holds, or checkpoint (audit --checkpoint)
    journal_sequence: int | None = None
    transaction_id: str | None = None
    tenant_id: str | None = None
    account_id: str | None = None
    hold_id: str | None = None
    field: str | None = None
    expected: str | None = None
    actual: str | None = None


class AuditReport(BaseModel):
    """Every problem found; ``ok`` when there is none."""

    model_config = ConfigDict(frozen=True)

    checked_at: datetime
    journal_problems: int
    hold_problems: int
    holds_checked: int
    workflows_checked: bool
    problems: list[AuditProblem]
    orphaned_expired_holds: list[HoldRef]

    @property
    def ok(self) -> bool:
        return not self.problems


# A (tenant_id, hold_id) position in the holds' keyset order: where a page of holds starts or ends.
HoldKey = tuple[str, str]


def _hold_rows(
    connection: sa.Connection,
    conditions: Sequence[Any],
    after: HoldKey = ("", ""),
    until: HoldKey | None = None,
) -> Iterator[Any]:
    """Holds with their resolving transaction's kind, in (tenant, hold) keyset batches; only
    those after ``after`` and up to ``until`` (inclusive) when given."""
    resolving = journal_transactions.alias("resolving")
    key = sa.tuple_(holds.c.tenant_id, holds.c.hold_id)
    if until is not None:
        conditions = [*conditions, key <= sa.tuple_(sa.literal(until[0]), sa.literal(until[1]))]
    while True:
        rows = connection.execute(
            sa.select(holds, resolving.c.kind.label("resolve_kind"))
            .outerjoin(resolving, resolving.c.transaction_id == holds.c.resolve_transaction_id)
            .where(*conditions, key > sa.tuple_(sa.literal(after[0]), sa.literal(after[1])))
            .order_by(holds.c.tenant_id, holds.c.hold_id)
            .limit(_BATCH_HOLDS)
        ).all()
        yield from rows
        if len(rows) < _BATCH_HOLDS:
            return
        after = (rows[-1].tenant_id, rows[-1].hold_id)


def _scope_conditions(scope: str) -> list[Any]:
    if scope == "all":
        return []
    # Active holds, and captured ones still to be paid out: the ones a workflow must own.
    return [
        sa.or_(
            holds.c.state == "active",
            sa.and_(holds.c.state == "captured", holds.c.finalized == sa.false()),
        )
    ]


def _ref(row: Any) -> HoldRef:
    return HoldRef(
        tenant_id=row.tenant_id,
        hold_id=row.hold_id,
        state=row.state,
        expires_at=row.expires_at,
        finalized=bool(row.finalized),
    )


def holds_to_check(
    ledger: Ledger,
    *,
    scope: str = "open",
    after: HoldKey = ("", ""),
    until: HoldKey | None = None,
) -> list[HoldRef]:
    """The holds whose workflows :func:`run_audit` will ask about (``open`` or ``all``), in the
    page ``(after, until]`` of the holds' keyset order when given."""
    with ledger.engine.connect() as connection:
        rows = _hold_rows(connection, _scope_conditions(scope), after, until)
        return [_ref(row) for row in rows]


_KIND_FOR_STATE = {"captured": "capture", "released": "release", "expired": "expire"}


def _journal_agreement(row: Any) -> list[AuditProblem]:
    where = {"tenant_id": row.tenant_id, "hold_id": row.hold_id, "account_id": row.account_id}
    if row.state == "active":
        if row.resolve_transaction_id is not None:
            return [
                AuditProblem(
                    kind="hold_state_mismatch",
                    source="holds",
                    message=f"hold {row.hold_id} is active but has a resolving transaction",
                    expected="none",
                    actual=row.resolve_transaction_id,
                    **where,
                )
            ]
        return []
    expected = _KIND_FOR_STATE.get(row.state)
    if row.resolve_kind != expected:
        return [
            AuditProblem(
                kind="hold_state_mismatch",
                source="holds",
                message=f"hold {row.hold_id} is {row.state} but its resolving "
                f"transaction is {row.resolve_kind or 'missing'}",
                expected=expected,
                actual=row.resolve_kind,
                **where,
            )
        ]
    return []


def _workflow_agreement(
    row: Any, view: WorkflowView, now: datetime, grace: timedelta
) -> tuple[list[AuditProblem], bool]:
    """Problems, and whether the hold is an orphaned expired hold."""
    where = {"tenant_id": row.tenant_id, "hold_id": row.hold_id, "account_id": row.account_id}
    problems: list[AuditProblem] = []
    orphaned = False
    gone = view.status == "not_found" or view.status in CLOSED_STATUSES
    if view.hold_state is not None and view.hold_state != row.state:
        problems.append(
            AuditProblem(
                kind="workflow_state_mismatch",
                source="holds",
                message=f"hold {row.hold_id}: journal says {row.state}, "
                f"workflow says {view.hold_state}",
                expected=row.state,
                actual=view.hold_state,
                **where,
            )
        )
    if row.state == "active":
        if gone:
            expired = now >= row.expires_at
            orphaned = expired
            problems.append(
                AuditProblem(
                    kind="orphaned_expired_hold" if expired else "hold_workflow_gone",
                    source="holds",
                    message=f"active hold {row.hold_id} has no running workflow "
                    f"({view.status})" + (f"; expired at {iso(row.expires_at)}" if expired else ""),
                    expected="running",
                    actual=view.status,
                    **where,
                )
            )
        elif now >= row.expires_at + grace:
            problems.append(
                AuditProblem(
                    kind="hold_expiry_overdue",
                    source="holds",
                    message=f"active hold {row.hold_id} expired at "
                    f"{iso(row.expires_at)} and was not expired",
                    expected="expired",
                    actual="active",
                    **where,
                )
            )
    elif row.state == "captured" and not row.finalized and gone:
        problems.append(
            AuditProblem(
                kind="hold_not_finalized",
                source="holds",
                message=f"captured hold {row.hold_id} is not paid out and "
                f"its workflow is {view.status}",
                expected="running",
                actual=view.status,
                **where,
            )
        )
    return problems, orphaned


def run_audit(
    ledger: Ledger,
    *,
    workflow_lookup: WorkflowLookup | None = None,
    now: datetime | None = None,
    scope: str = "open",
    expiry_grace: timedelta = timedelta(minutes=5),
    verify_journal: bool = True,
    after: HoldKey = ("", ""),
    until: HoldKey | None = None,
) -> AuditReport:
    """``verify_journal()`` plus the hold checks; every problem found, in a report.

    A batch run audits page by page: ``verify_journal=False`` (it verifies the chain by
    segments itself) and the holds of the page ``(after, until]`` only.
    """
    now = now or ledger.clock()
    problems = [
        AuditProblem(source="journal", **problem.model_dump())
        for problem in (ledger.verify_journal() if verify_journal else [])
    ]
    journal_count = len(problems)
    orphaned: list[HoldRef] = []
    checked = 0
    with ledger.engine.connect() as connection:
        # Journal agreement is cheap (one join), so it covers every hold whatever the scope.
        for row in _hold_rows(connection, [], after, until):
            problems.extend(_journal_agreement(row))
        for row in _hold_rows(connection, _scope_conditions(scope), after, until):
            checked += 1
            if workflow_lookup is None:
                if row.state == "active" and now >= row.expires_at + expiry_grace:
                    problems.append(
                        AuditProblem(
                            kind="hold_expiry_overdue",
                            source="holds",
                            tenant_id=row.tenant_id,
                            hold_id=row.hold_id,
                            account_id=row.account_id,
                            message=f"active hold {row.hold_id} expired at "
                            f"{iso(row.expires_at)} and was not expired",
                            expected="expired",
                            actual="active",
                        )
                    )
                continue
            view = workflow_lookup(_ref(row))
            if view is None:
                # Not asked about (a hold newer than the lookup's list): nothing to compare.
                continue
            found, is_orphaned = _workflow_agreement(row, view, now, expiry_grace)
            problems.extend(found)
            if is_orphaned:
                orphaned.append(_ref(row))
    return AuditReport(
        checked_at=now,
        journal_problems=journal_count,
        hold_problems=len(problems) - journal_count,
        holds_checked=checked,
        workflows_checked=workflow_lookup is not None,
        problems=problems,
        orphaned_expired_holds=orphaned,
    )


def expire_orphaned_holds(
    ledger: Ledger, orphans: Sequence[HoldRef], *, now: datetime | None = None
) -> list[str]:
    """Expires each orphaned hold (idempotently, one key per hold); returns the IDs this call
    expired (a replay or a hold resolved meanwhile is not counted)."""
    expired: list[str] = []
    for hold in orphans:
        try:
            result = ledger.expire_hold(
                hold.hold_id,
                tenant_id=hold.tenant_id,
                idempotency_key=f"reconcile-expire:{hold.hold_id}",
                now=now,
            )
        except LedgerError:
            # Resolved meanwhile (by a late workflow or a person): nothing left to expire.
            continue
        if not result.replayed:
            expired.append(result.hold_id)
    return expired
