"""What the command line and the read API share about FinOps questions: the filter built from
their options, and the shape of a report.

``report`` on the command line and ``GET /v1/reports`` take the same options (the API's query
parameters are the CLI's flags without ``--``) and answer with the same JSON document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starter.output import CliError
from starter.times import parse_time

if TYPE_CHECKING:
    from ledger_db.finops import EntryFilter, Report, ReportRow

__all__ = ["entry_filter", "report_document", "report_row"]


def entry_filter(
    *,
    tenant: str | None = None,
    project: str | None = None,
    env: str | None = None,
    task: str | None = None,
    asset: str | None = None,
    external_ref: str | None = None,
    reason: str | None = None,
    category: str | None = None,
    tag: str | None = None,
    account: str | None = None,
    currency: str | None = None,
    month: str | None = None,
    from_text: str | None = None,
    to_text: str | None = None,
    time_field: str = "occurred_at",
    include_internal: bool = False,
    option_prefix: str = "--",
) -> EntryFilter:
    """The ``EntryFilter`` of a report or an export; ``option_prefix`` names the options in
    messages as the caller spells them (``--month`` on the command line, ``month`` over HTTP)."""
    from ledger_db.finops import EntryFilter

    def option(name: str) -> str:
        return f"{option_prefix}{name}"

    if time_field not in ("occurred_at", "recorded_at"):
        raise CliError("usage_error", f"{option('time-field')} is occurred_at or recorded_at")
    if month and (from_text or to_text):
        raise CliError(
            "usage_error",
            f"{option('month')} and {option('from')}/{option('to')} exclude each other",
        )
    built = EntryFilter(
        tenant_id=tenant,
        project_id=project,
        env=env,
        task_id=task,
        asset_id=asset,
        external_ref=external_ref,
        reason=reason,
        category=category,
        tag=tag,
        account_id=account,
        currency=currency.upper() if currency else None,
        time_field="occurred_at" if time_field == "occurred_at" else "recorded_at",
        from_ts=parse_time(from_text, option("from")),
        to_ts=parse_time(to_text, option("to")),
        include_internal=include_internal,
        include_counterparts=include_internal,
    )
    return built.with_month(month) if month else built


def report_row(row: ReportRow) -> dict[str, Any]:
    """One row of a report: its dimension values, currency, count and exact totals."""
    return {
        **row.group,
        "currency": row.currency,
        "count": row.count,
        "total_in": row.total_in,
        "total_out": row.total_out,
        "net": row.net,
    }


def report_document(report: Report) -> dict[str, Any]:
    """``report --json`` and ``GET /v1/reports``: the question, its rows, totals per currency."""
    return {
        "group_by": report.group_by,
        "filter": report.filter.model_dump(mode="json", exclude_none=True),
        "rows": [report_row(row) for row in report.rows],
        "totals": [report_row(row) for row in report.totals().values()],
    }
