"""FinOps commands of ``compute-ledger``: import, export, report, statement, audit, reconcile,
reverse, allocate, schedules.

They read and write the ledger database directly (``LEDGER_DATABASE_URL``, SQLite by default);
only ``audit --workflows`` and ``schedules`` talk to Temporal. Every command takes ``--json`` and
follows the error contract of ``starter.output`` (``{"error": {"code", "message"}}`` and the exit
status of its code). Long runs (import, export) show a progress bar on stderr unless ``--json``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from starter.db import opened_ledger
from starter.output import (
    CliError,
    JsonOption,
    emit,
    money,
    records_table,
    run_command,
    stderr,
)
from starter.times import parse_time
from starter.views import entry_filter as build_filter
from starter.views import report_document, report_row

if TYPE_CHECKING:
    from rich.table import Table

    from ledger_db.finops.statements import AccountStatement, TenantStatement

__all__ = ["register_finops"]


def _check_path_text(option: str, path: str) -> None:
    """A path the file system can name: no NUL, encodable (a lone surrogate is not)."""
    if "\x00" in path:
        raise CliError("usage_error", f"{option} must not contain a NUL character")
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        raise CliError("usage_error", f"{option} is not a valid file name") from None


def _output_path(option: str, output: str) -> Path:
    """A file path the command writes: one with a file name (not empty, ``.`` or a bare
    directory), else ``usage_error``."""
    target = Path(output)
    _check_path_text(option, output)
    if not output.strip() or target.name in ("", ".", "..") or output.endswith(("/", "\\")):
        raise CliError("usage_error", f"{option} needs a file path, not {output!r}")
    return target


@contextlib.contextmanager
def _file_errors(option: str, path: object) -> Iterator[None]:
    """A file the command line names that cannot be read or written (missing directory, a
    directory, no permission, not UTF-8) is the caller's to mend: ``usage_error`` naming the
    option and the reason, never ``internal_error``."""
    try:
        yield
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise CliError("usage_error", f"{option} {path}: {reason}") from None


# ---------------------------------------------------------------------------------------------
# Options.

TenantFilter = Annotated[str | None, typer.Option("--tenant", help="Tenant ID.")]
ProjectFilter = Annotated[str | None, typer.Option("--project", help="Project / cost centre.")]
EnvFilter = Annotated[str | None, typer.Option("--env", help="prod, staging, dev...")]
TaskFilter = Annotated[str | None, typer.Option("--task", help="Task ID.")]
AssetFilter = Annotated[str | None, typer.Option("--asset", help="Asset ID.")]
ExternalRefFilter = Annotated[
    str | None, typer.Option("--external-ref", help="Provider / bank / chain reference.")
]
ReasonFilter = Annotated[str | None, typer.Option("--reason", help="e.g. TASK_BURN.")]
CategoryFilter = Annotated[str | None, typer.Option("--category", help="e.g. CLOUD_COST.")]
TagFilter = Annotated[str | None, typer.Option("--tag", help="Entries carrying this tag.")]
AccountFilter = Annotated[str | None, typer.Option("--account", help="Account ID.")]
CurrencyFilter = Annotated[str | None, typer.Option("--currency", help="Currency code.")]
MonthFilter = Annotated[
    str | None, typer.Option("--month", help="Calendar month YYYY-MM (UTC) of the time field.")
]
FromFilter = Annotated[
    str | None, typer.Option("--from", help="Start, inclusive (ISO 8601 with a zone).")
]
ToFilter = Annotated[str | None, typer.Option("--to", help="End, exclusive (ISO 8601).")]
TimeFieldOption = Annotated[
    str, typer.Option("--time-field", help="occurred_at (business time) or recorded_at.")
]
IncludeInternalOption = Annotated[
    bool,
    typer.Option("--include-internal", help="Count hold movements and counterpart entries too."),
]
IdempotencyKeyOption = Annotated[
    str | None,
    typer.Option("--idempotency-key", help="Required: the same key never applies twice."),
]


@contextlib.contextmanager
def _progress(enabled: bool, description: str) -> Iterator[Any]:
    """A progress bar on stderr (never in JSON mode, never when stderr is not a terminal)."""
    if not enabled or not stderr().is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr(),
        transient=True,
    ) as progress:
        yield (progress, progress.add_task(description, total=None))


def _require_key(key: str | None) -> str:
    if not key:
        raise CliError("idempotency_key_required", "--idempotency-key is required")
    return key


# ---------------------------------------------------------------------------------------------
# Commands.


@run_command
def import_command(
    path: Annotated[Path, typer.Argument(help="JSON, JSON Lines or CSV file of v1.0 entries.")],
    file_format: Annotated[
        str | None, typer.Option("--format", help="json, jsonl or csv (default: extension).")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Refuse rows of any other tenant.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Import LedgerEntry v1.0 records: all rows valid or nothing applied; re-import is a no-op."""
    from ledger_db.finops import import_file

    if not path.exists():
        raise CliError("usage_error", f"no such file: {path}")
    with opened_ledger() as ledger, _progress(not json_output, "importing") as bar:

        def progress(done: int, total: int) -> None:
            if bar is not None:
                bar[0].update(bar[1], completed=done, total=total)

        try:
            result = import_file(
                ledger,
                str(path),
                file_format=file_format,
                tenant_id=tenant,
                progress=progress,
                dry_run=dry_run,
            )
        except ValueError as error:
            raise CliError("usage_error", str(error)) from error
    emit({**result.to_dict(), "dry_run": dry_run}, json_output, title="import")


@run_command
def export_command(
    export_format: Annotated[
        str, typer.Option("--format", help="jsonl, json, csv or beancount.")
    ] = "jsonl",
    output: Annotated[str, typer.Option("--output", help="File path, or - for stdout.")] = "-",
    tenant: TenantFilter = None,
    project: ProjectFilter = None,
    env: EnvFilter = None,
    task: TaskFilter = None,
    asset: AssetFilter = None,
    external_ref: ExternalRefFilter = None,
    reason: ReasonFilter = None,
    category: CategoryFilter = None,
    tag: TagFilter = None,
    account: AccountFilter = None,
    currency: CurrencyFilter = None,
    month: MonthFilter = None,
    from_text: FromFilter = None,
    to_text: ToFilter = None,
    time_field: TimeFieldOption = "occurred_at",
    include_internal: IncludeInternalOption = False,
    without_recorded_at: Annotated[
        bool,
        typer.Option(
            "--without-recorded-at",
            help="Leave out the ledger's own stamp (exact interchange form).",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Export the entries of a query (journal order) as JSON Lines, JSON, CSV or Beancount."""
    from ledger_db.finops import export_entries

    entry_filter = build_filter(
        tenant=tenant,
        project=project,
        env=env,
        task=task,
        asset=asset,
        external_ref=external_ref,
        reason=reason,
        category=category,
        tag=tag,
        account=account,
        currency=currency,
        month=month,
        from_text=from_text,
        to_text=to_text,
        time_field=time_field,
        include_internal=include_internal,
    )
    if export_format not in ("jsonl", "json", "csv", "beancount"):
        raise CliError("usage_error", "--format is jsonl, json, csv or beancount")
    if output == "-" and json_output:
        raise CliError("usage_error", "--json needs --output PATH (stdout carries the summary)")
    with opened_ledger() as ledger:
        if output == "-":
            count = export_entries(
                ledger,
                entry_filter,
                export_format,
                sys.stdout,
                include_recorded_at=not without_recorded_at,
            )
            return
        target = _output_path("--output", output)
        temporary = target.with_name(f".{target.name}.tmp")
        with _file_errors("--output", output):
            target.parent.mkdir(parents=True, exist_ok=True)
            handle = temporary.open("w", encoding="utf-8", newline="")
        with handle:
            count = export_entries(
                ledger,
                entry_filter,
                export_format,
                handle,
                include_recorded_at=not without_recorded_at,
            )
        with _file_errors("--output", output):
            try:
                temporary.replace(target)
            except OSError:
                temporary.unlink(missing_ok=True)
                raise
    unit = "transactions" if export_format == "beancount" else "entries"
    emit({"format": export_format, "output": str(target), unit: count}, json_output, title="export")


@run_command
def report_command(
    tenant: TenantFilter = None,
    project: ProjectFilter = None,
    env: EnvFilter = None,
    task: TaskFilter = None,
    asset: AssetFilter = None,
    external_ref: ExternalRefFilter = None,
    reason: ReasonFilter = None,
    category: CategoryFilter = None,
    tag: TagFilter = None,
    account: AccountFilter = None,
    currency: CurrencyFilter = None,
    month: MonthFilter = None,
    from_text: FromFilter = None,
    to_text: ToFilter = None,
    time_field: TimeFieldOption = "occurred_at",
    include_internal: IncludeInternalOption = False,
    group_by: Annotated[
        str | None,
        typer.Option(
            "--group-by",
            help="Comma-separated: tenant, project, env, task, asset, "
            "external_ref, reason, category, tag, account, direction, day, month.",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Totals (IN, OUT, net) and counts per group and currency."""
    from ledger_db.finops import parse_group_by, run_report

    entry_filter = build_filter(
        tenant=tenant,
        project=project,
        env=env,
        task=task,
        asset=asset,
        external_ref=external_ref,
        reason=reason,
        category=category,
        tag=tag,
        account=account,
        currency=currency,
        month=month,
        from_text=from_text,
        to_text=to_text,
        time_field=time_field,
        include_internal=include_internal,
    )
    dimensions = parse_group_by(group_by)
    with opened_ledger() as ledger, ledger.engine.connect() as connection:
        report = run_report(connection, entry_filter, dimensions)
    if json_output:
        emit(report_document(report), True)
        return
    rows = [report_row(row) for row in report.rows]
    columns = [*dimensions, "currency", "count", "total_in", "total_out", "net"]
    table = records_table(
        rows,
        columns=columns,
        title="report",
        money_columns=("count", "total_in", "total_out", "net"),
    )
    if dimensions:
        for row in report.totals().values():
            table.add_row(
                "TOTAL",
                *[""] * (len(dimensions) - 1),
                row.currency,
                str(row.count),
                row.total_in,
                row.total_out,
                row.net,
            )
    emit(None, False, render=lambda _: table)


@run_command
def statement_command(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant ID.")],
    month: Annotated[str, typer.Option("--month", help="YYYY-MM (UTC).")],
    account: Annotated[
        str | None, typer.Option("--account", help="One account (default: every account).")
    ] = None,
    statement_format: Annotated[str, typer.Option("--format", help="json, csv or pdf.")] = "json",
    output: Annotated[
        str | None, typer.Option("--output", help="File path (default: stdout for json/csv).")
    ] = None,
    time_field: TimeFieldOption = "recorded_at",
    json_output: JsonOption = False,
) -> None:
    """A monthly statement: opening balance, every entry, closing balance (checked first)."""
    from ledger_db.finops import account_statement, render_statement, tenant_statement
    from ledger_db.finops.query import parse_month

    parse_month(month)
    if statement_format not in ("json", "csv", "pdf"):
        raise CliError("usage_error", "--format is json, csv or pdf")
    if time_field not in ("occurred_at", "recorded_at"):
        raise CliError("usage_error", "--time-field is occurred_at or recorded_at")
    if output is None and (statement_format == "pdf" or json_output):
        raise CliError("usage_error", "--output PATH is needed for pdf and with --json")
    field: Literal["occurred_at", "recorded_at"] = (
        "occurred_at" if time_field == "occurred_at" else "recorded_at"
    )
    statement: AccountStatement | TenantStatement
    with opened_ledger() as ledger, ledger.engine.connect() as connection:
        if account:
            statement = account_statement(
                connection, tenant_id=tenant, account_id=account, month=month, time_field=field
            )
        else:
            statement = tenant_statement(
                connection, tenant_id=tenant, month=month, time_field=field
            )
    data = render_statement(statement, statement_format)
    if output is None:
        sys.stdout.write(data.decode())
        return
    from ledger_db.finops import write_statement

    with _file_errors("--output", output):
        path = write_statement(statement, statement_format, _output_path("--output", output))
    accounts = statement.accounts if hasattr(statement, "accounts") else [statement]
    emit(
        {
            "output": str(path),
            "format": statement_format,
            "bytes": len(data),
            "accounts": [
                {
                    "account_id": item.account_id,
                    "currency": item.currency,
                    "opening": _money(item.opening_minor, item.currency),
                    "entries": len(item.lines),
                    "closing": _money(item.closing_minor, item.currency),
                }
                for item in accounts
            ],
        },
        json_output,
        render=lambda body: _statement_table(body),
    )


def _money(amount_minor: int, currency: str) -> str:
    from ledger_db.money import default_registry

    return default_registry().to_text(amount_minor, currency)


def _statement_table(body: dict[str, Any]) -> Table:
    table = records_table(
        body["accounts"],
        title=f"statement written to {body['output']}",
        money_columns=("opening", "closing", "entries"),
    )
    return table


@run_command
def audit_command(
    workflows: Annotated[
        bool,
        typer.Option(
            "--workflows/--no-workflows", help="Ask Temporal about every open hold's workflow."
        ),
    ] = False,
    expire_orphans: Annotated[
        bool, typer.Option("--expire-orphans", help="Expire orphaned expired holds.")
    ] = False,
    scope: Annotated[str, typer.Option("--scope", help="open or all holds.")] = "open",
    checkpoint_file: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="Also check the books against this checkpoint (compute-ledger checkpoint --out, "
            "or a LEDGER_CHECKPOINT event as published).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """verify_journal() plus the hold checks; exits non-zero listing every problem.

    With ``--checkpoint FILE`` every tenant chain the checkpoint lists must still carry the
    checkpointed hash at the checkpointed sequence: a rewrite that recomputed every hash is
    caught there, at that tenant's chain.
    """
    import asyncio

    from ledger_db.finops import expire_orphaned_holds, holds_to_check, run_audit

    checkpoint = _read_checkpoint(checkpoint_file) if checkpoint_file is not None else None
    with opened_ledger() as ledger:
        lookup = None
        if workflows:
            refs = holds_to_check(ledger, scope=scope)
            views = asyncio.run(_workflow_views(refs))
            lookup = lambda hold: views.get(hold.hold_id)  # noqa: E731
        report = run_audit(ledger, workflow_lookup=lookup, scope=scope)
        expired = (
            expire_orphaned_holds(ledger, report.orphaned_expired_holds) if expire_orphans else []
        )
        found = _checkpoint_problems(ledger, checkpoint) if checkpoint is not None else []
    problems = [
        problem.model_dump(mode="json", exclude_none=True) for problem in [*report.problems, *found]
    ]
    against: dict[str, Any] = {}
    if checkpoint is not None:
        against = {
            "checkpoint": {
                "checkpoint_id": checkpoint.checkpoint_id,
                "created_at": checkpoint.document()["created_at"],
                "root": checkpoint.root,
                "chains_checked": len(checkpoint.chains),
                "problems": len(found),
            }
        }
    if problems:
        summary = f"{report.journal_problems} in the journal, {report.hold_problems} with holds"
        if checkpoint is not None:
            summary += f", {len(found)} against the checkpoint"
        raise CliError(
            "audit_failed",
            f"{len(problems)} problem(s): {summary}",
            problems=problems,
            expired_hold_ids=expired,
            **against,
        )
    emit(
        {
            "ok": True,
            "holds_checked": report.holds_checked,
            "workflows_checked": report.workflows_checked,
            "expired_hold_ids": expired,
            "checked_at": report.checked_at,
            **against,
        },
        json_output,
        title="audit",
    )


def _read_checkpoint(path: Path) -> Any:
    from ledger_db.checkpoint import parse_checkpoint

    try:
        text = path.read_bytes()
    except OSError as error:
        raise CliError("usage_error", f"cannot read {path}: {error.strerror}") from error
    try:
        return parse_checkpoint(text)
    except ValueError as error:
        raise CliError("usage_error", f"{path} is not a checkpoint: {error}") from error


def _checkpoint_problems(ledger: Any, checkpoint: Any) -> list[Any]:
    """The checkpoint's disagreements with the books, as audit problems (source checkpoint)."""
    from ledger_db.checkpoint import checkpoint_problems
    from ledger_db.finops.audit import AuditProblem

    with ledger.engine.connect() as connection:
        return [
            AuditProblem(source="checkpoint", **problem.model_dump())
            for problem in checkpoint_problems(connection, checkpoint)
        ]


async def _workflow_views(refs: Any) -> Any:
    from activities.batch import lookup_hold_workflows
    from starter.config import ClientConfig, connect_temporal

    client = await connect_temporal(ClientConfig.from_env())
    return await lookup_hold_workflows(client, refs)


@run_command
def reconcile_command(
    bill: Annotated[
        Path,
        typer.Option("--bill", help="Provider bill CSV: external_ref, amount, currency, date."),
    ],
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant ID.")],
    category: CategoryFilter = None,
    reason: ReasonFilter = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table, csv or json (with --output: csv or json).")
    ] = "table",
    output: Annotated[str | None, typer.Option("--output", help="Write the report here.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Match a provider bill against the journal by external_ref; non-zero exit on mismatch."""
    from ledger_db.finops import EntryFilter, parse_bill, reconcile_bill
    from ledger_db.finops.reconcile import render_reconciliation_csv, render_reconciliation_json

    _check_path_text("--bill", str(bill))
    if not bill.exists():
        raise CliError("usage_error", f"no such file: {bill}")
    with opened_ledger() as ledger:
        with _file_errors("--bill", bill):
            text = bill.read_text(encoding="utf-8")
        lines = parse_bill(text, registry=ledger.registry)
        with ledger.engine.connect() as connection:
            report = reconcile_bill(
                connection,
                lines,
                tenant_id=tenant,
                base_filter=EntryFilter(category=category, reason=reason),
            )
    if output is not None:
        text = (
            render_reconciliation_json(report)
            if output_format == "json"
            else render_reconciliation_csv(report)
        )
        target = _output_path("--output", output)
        with _file_errors("--output", output):
            target.write_text(text, encoding="utf-8")
    elif output_format == "csv" and not json_output:
        sys.stdout.write(render_reconciliation_csv(report))
    elif output_format == "json" and not json_output:
        sys.stdout.write(render_reconciliation_json(report))
    if json_output:
        emit(report.model_dump(mode="json"), True)
    elif output_format == "table":
        rows = [
            {
                "status": line.status,
                "external_ref": line.external_ref,
                "line": line.bill_line,
                "bill": money(line.bill_amount, line.bill_currency),
                "ledger": money(line.ledger_amount, line.ledger_currency),
                "difference": line.difference,
            }
            for line in report.lines
        ]
        counts = ", ".join(f"{name} {count}" for name, count in report.counts.items() if count)
        emit(
            None,
            False,
            render=lambda _: records_table(
                rows, title=f"{bill.name}: {counts}", money_columns=("bill", "ledger", "difference")
            ),
        )
    if not report.clean:
        raise typer.Exit(code=9)


@run_command
def reverse_command(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant ID.")],
    transaction: Annotated[str, typer.Option("--transaction", help="Transaction to reverse.")],
    idempotency_key: IdempotencyKeyOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Why.")] = "ADJUSTMENT",
    json_output: JsonOption = False,
) -> None:
    """A new transaction with every entry of the original, direction swapped (once)."""
    key = _require_key(idempotency_key)
    with opened_ledger() as ledger:
        result = ledger.reverse_transaction(
            transaction, tenant_id=tenant, idempotency_key=key, reason=reason
        )
    emit(
        result,
        json_output,
        render=lambda data: records_table(
            [
                {
                    "ledger_entry_id": entry.ledger_entry_id,
                    "account": entry.account_id,
                    "direction": entry.direction.value,
                    "amount": f"{entry.amount} {entry.currency}",
                    "reverses": entry.meta.get("reverses_ledger_entry_id"),
                }
                for entry in data.entries
            ],
            title=f"reversal {data.transaction_id} of {data.reverses_transaction_id}",
        ),
    )


@run_command
def allocate_command(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant ID.")],
    asset: Annotated[str, typer.Option("--asset", help="The asset whose cost is split.")],
    amount: Annotated[str, typer.Option("--amount", help="Exact decimal cost, e.g. 10.00.")],
    currency: Annotated[str, typer.Option("--currency", help="Currency code.")],
    weights: Annotated[
        str, typer.Option("--weights", help="task=weight,... e.g. task-a=120000,task-b=60000")
    ],
    weight_name: Annotated[
        str, typer.Option("--weight-name", help="What the weights are.")
    ] = "runtime_ms",
    project: ProjectFilter = None,
    env: Annotated[str, typer.Option("--env", help="Environment.")] = "prod",
    occurred_at: Annotated[str | None, typer.Option("--occurred-at", help="ISO 8601.")] = None,
    idempotency_key: IdempotencyKeyOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the split only.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Split an asset's cost over tasks (largest remainder) and record TASK_BURN entries."""
    from ledger_db.finops import allocate_cost, record_allocation

    parsed: dict[str, int] = {}
    for item in weights.split(","):
        task_id, _, value = item.strip().partition("=")
        if not task_id or not value.strip().isdigit():
            raise CliError("usage_error", f"bad weight {item!r}: use task=integer")
        parsed[task_id.strip()] = int(value)
    allocation = allocate_cost(
        tenant_id=tenant,
        asset_id=asset,
        amount=amount,
        currency=currency.upper(),
        weights=parsed,
        weight_name=weight_name,
    )
    transaction_id = None
    if not dry_run:
        key = _require_key(idempotency_key)
        with opened_ledger() as ledger:
            result = record_allocation(
                ledger,
                allocation,
                idempotency_key=key,
                project_id=project,
                env=env,
                occurred_at=parse_time(occurred_at, "--occurred-at"),
            )
            transaction_id = result.transaction_id
    shares = [
        {
            "task_id": share.task_id,
            "weight": share.weight,
            "amount": _money(share.amount_minor, allocation.currency),
        }
        for share in allocation.shares
    ]
    emit(
        {
            "asset_id": asset,
            "total": _money(allocation.amount_minor, allocation.currency),
            "currency": allocation.currency,
            "shares": shares,
            "transaction_id": transaction_id,
            "dry_run": dry_run,
        },
        json_output,
        render=lambda body: records_table(
            body["shares"],
            title=f"{body['total']} {body['currency']} of {asset}"
            + ("" if transaction_id else " (dry run)"),
            money_columns=("weight", "amount"),
        ),
    )


@run_command
def schedules_apply_command(
    paused: Annotated[bool, typer.Option("--paused", help="Create them paused.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Create or update the FinOps schedules (hourly reconciliation, monthly statements)."""
    import asyncio

    from activities.batch import apply_schedules
    from starter.config import ClientConfig, connect_temporal

    async def apply() -> list[dict[str, str]]:
        config = ClientConfig.from_env()
        client = await connect_temporal(config)
        return await apply_schedules(client, task_queue=config.task_queue, paused=paused)

    emit(asyncio.run(apply()), json_output, title="schedules")


def register_finops(app: typer.Typer) -> None:
    """Adds the FinOps commands to the ``compute-ledger`` application."""
    app.command("import")(import_command)
    app.command("export")(export_command)
    app.command("report")(report_command)
    app.command("statement")(statement_command)
    app.command("audit")(audit_command)
    app.command("reconcile")(reconcile_command)
    app.command("reverse")(reverse_command)
    app.command("allocate")(allocate_command)
    schedules = typer.Typer(help="FinOps schedules on Temporal.", no_args_is_help=True)
    schedules.command("apply")(schedules_apply_command)
    app.add_typer(schedules, name="schedules")
