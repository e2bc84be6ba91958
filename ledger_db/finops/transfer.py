"""Import and export of LedgerEntry v1.0 records (JSON, JSON Lines, CSV; Beancount out).

Import is all or nothing, for the whole file. Every row is validated first: the schema, then
exactly the rules ``record_entries`` applies (``Ledger.check_entry``: tenant ID, text, ``env``
length, instants within the stored range, meta, amount grammar and precision, the reference
rule), then duplicates inside the file and IDs already used in the ledger by a *different*
entry of the same tenant. If anything is wrong nothing is written and every problem is reported
with its line and field. A valid file is then recorded in ONE database transaction
(``Ledger.record_entries_atomically``), every tenant of the file together: journal transactions
of at most ``records_per_transaction`` records each, per tenant, in file order. A process that
dies half-way has applied nothing; a file is at most ``limits.import_records_max`` new records.

Re-importing is a no-op: a record whose ``ledger_entry_id`` is in the ledger already with the
same content is skipped, and each transaction's idempotency key is the SHA-256 of its canonical
content, so a retried or resumed import answers from the stored result instead of writing.

``recorded_at`` is the ledger's own stamp. Exports carry it; import reads and validates it but
the importing ledger stamps the time it records the entry (an entry already present keeps its
stamp). So exporting, re-importing into the same ledger and exporting again gives the same
bytes; between two ledgers the records are identical except for ``recorded_at``, which
``include_recorded_at=False`` leaves out to give an exact interchange form.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import sqlalchemy as sa

from ledger_db import limits
from ledger_db.errors import InvalidEntry, LedgerError
from ledger_db.finops.beancount_export import write_beancount
from ledger_db.finops.query import EntryFilter, entry_rows
from ledger_db.finops.records import (
    FIELDS,
    ParsedRecord,
    RowProblem,
    canonical_json,
    detect_format,
    parse_records,
    record_dict,
    render_csv,
    render_json,
    render_jsonl,
)
from ledger_db.ledger import Ledger, RecordRequest
from ledger_db.models import LedgerEntryInput
from ledger_db.schema import journal_entries

__all__ = [
    "EXPORT_FORMATS",
    "ImportRejected",
    "ImportResult",
    "export_entries",
    "import_file",
    "import_text",
    "validate_text",
]

EXPORT_FORMATS: tuple[str, ...] = ("json", "jsonl", "csv", "beancount")
RECORDS_PER_TRANSACTION_MAX = 500
_LOOKUP_CHUNK = 500

Progress = Callable[[int, int], None]


class ImportRejected(InvalidEntry):
    """The file has bad rows; nothing was applied. ``details['problems']`` lists every one."""

    def __init__(self, problems: Sequence[RowProblem], *, rows: int) -> None:
        first = problems[0]
        super().__init__(
            f"{len(problems)} problem(s) in the file, nothing applied; first: line {first.line}, "
            f"{first.field}: {first.message}",
            problems=[problem.to_dict() for problem in problems],
            rows=rows,
        )
        self.problems = list(problems)


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    file_sha256: str
    format: str
    rows: int
    applied: int
    already_present: int
    transactions: int
    replayed_transactions: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "file_sha256": self.file_sha256,
            "format": self.format,
            "rows": self.rows,
            "applied": self.applied,
            "already_present": self.already_present,
            "transactions": self.transactions,
            "replayed_transactions": self.replayed_transactions,
        }


def _stored_comparable(row: Any) -> tuple[Any, ...]:
    return (
        row.ledger_entry_id,
        row.tenant_id,
        row.project_id,
        row.env,
        row.asset_id,
        row.task_id,
        row.external_ref,
        row.direction,
        int(row.amount_minor),
        row.currency,
        row.reason,
        row.category,
        list(row.tags) if row.tags is not None else None,
        canonical_json(row.meta or {}),
        row.occurred_at,
    )


def _check_against_ledger(
    connection: sa.Connection, records: Sequence[ParsedRecord], problems: list[RowProblem]
) -> set[tuple[str, str]]:
    """IDs already recorded (by the record's tenant: IDs are unique per tenant) with the same
    content, which are skipped; a different content is a problem."""
    present: set[tuple[str, str]] = set()
    table = journal_entries.c
    for start in range(0, len(records), _LOOKUP_CHUNK):
        chunk = {
            (record.tenant_id, record.ledger_entry_id): record
            for record in records[start : start + _LOOKUP_CHUNK]
        }
        keys = sa.tuple_(table.tenant_id, table.ledger_entry_id).in_(list(chunk))
        for row in connection.execute(
            sa.select(journal_entries).where(keys, table.counterpart == sa.false())
        ):
            record = chunk[(row.tenant_id, row.ledger_entry_id)]
            if _stored_comparable(row) == record.comparable():
                present.add((record.tenant_id, record.ledger_entry_id))
            else:
                problems.append(
                    RowProblem(
                        record.line,
                        "ledger_entry_id",
                        "ledger_entry_id_conflict",
                        f"ledger_entry_id {record.ledger_entry_id} is recorded already with a "
                        "different content; an entry is never modified, record an adjustment",
                    )
                )
        # A counterpart's ID is derived from its primary's: a record cannot reuse it either.
        for row in connection.execute(
            sa.select(table.tenant_id, table.ledger_entry_id).where(
                keys, table.counterpart == sa.true()
            )
        ):
            record = chunk[(row.tenant_id, row.ledger_entry_id)]
            problems.append(
                RowProblem(
                    record.line,
                    "ledger_entry_id",
                    "ledger_entry_id_conflict",
                    f"ledger_entry_id {record.ledger_entry_id} is used by the ledger",
                )
            )
    return present


def _ledger_rules(
    ledger: Ledger,
    records: Sequence[ParsedRecord],
    problems: list[RowProblem],
    tenant_id: str | None,
) -> list[ParsedRecord]:
    """Each record checked by the rules ``record_entries`` applies (so that a row that would
    fail only when written fails here, before anything is applied); returns the good ones."""
    good: list[ParsedRecord] = []
    for record in records:
        before = len(problems)
        try:
            ledger.check_entry(_entry_fields(record, ledger), tenant_id=record.tenant_id)
        except LedgerError as error:
            field = error.details.get("field")
            problems.append(
                RowProblem(record.line, str(field or "(record)"), error.code, error.message)
            )
        if tenant_id is not None and record.tenant_id != tenant_id:
            problems.append(
                RowProblem(
                    record.line,
                    "tenant_id",
                    "tenant_mismatch",
                    f"tenant_id {record.tenant_id!r} is not the import's {tenant_id!r}",
                )
            )
        if len(problems) == before:
            good.append(record)
    return good


def validate_text(
    ledger: Ledger, text: str, file_format: str, *, tenant_id: str | None = None
) -> tuple[list[ParsedRecord], set[tuple[str, str]], list[RowProblem]]:
    """Parses and checks a whole file: (valid records, (tenant, ID) pairs present already,
    problems)."""
    records, problems = parse_records(text, file_format, registry=ledger.registry)
    good = _ledger_rules(ledger, records, problems, tenant_id)
    with ledger.engine.connect() as connection:
        present = _check_against_ledger(connection, good, problems)
    problems.sort(key=lambda problem: problem.line)
    return records, present, problems


def _entry_fields(record: ParsedRecord, ledger: Ledger) -> dict[str, Any]:
    return {
        "ledger_entry_id": record.ledger_entry_id,
        "tenant_id": record.tenant_id,
        "project_id": record.project_id,
        "env": record.env,
        "asset_id": record.asset_id,
        "task_id": record.task_id,
        "external_ref": record.external_ref,
        "direction": record.direction,
        "amount": ledger.registry.to_text(record.amount_minor, record.currency),
        "currency": record.currency,
        "reason": record.reason,
        "category": record.category,
        "tags": record.tags,
        "meta": record.meta,
        "occurred_at": record.occurred_at,
    }


def _entry_input(record: ParsedRecord, ledger: Ledger) -> LedgerEntryInput:
    return LedgerEntryInput.model_validate(_entry_fields(record, ledger))


def _chunk_key(entries: Sequence[LedgerEntryInput]) -> str:
    body = json.dumps([entry.model_dump(mode="json") for entry in entries], sort_keys=True)
    return "import:" + hashlib.sha256(body.encode()).hexdigest()


def import_text(
    ledger: Ledger,
    text: str,
    file_format: str,
    *,
    tenant_id: str | None = None,
    records_per_transaction: int = RECORDS_PER_TRANSACTION_MAX,
    progress: Progress | None = None,
    dry_run: bool = False,
) -> ImportResult:
    """Validates then records ``text`` (see the module docstring). Raises ImportRejected."""
    if not 1 <= records_per_transaction <= RECORDS_PER_TRANSACTION_MAX:
        raise InvalidEntry(
            f"records_per_transaction must be 1..{RECORDS_PER_TRANSACTION_MAX}",
            field="records_per_transaction",
        )
    digest = hashlib.sha256(text.encode()).hexdigest()
    records, present, problems = validate_text(ledger, text, file_format, tenant_id=tenant_id)
    row_count = len(records) + len({problem.line for problem in problems})
    if problems:
        raise ImportRejected(problems, rows=row_count)
    todo = [
        record for record in records if (record.tenant_id, record.ledger_entry_id) not in present
    ]
    if len(todo) > limits.import_records_max:
        raise InvalidEntry(
            f"{len(todo)} new records: one import applies at most {limits.import_records_max} "
            "(all in one database transaction); split the file",
            field="file",
        )
    by_tenant: dict[str, list[ParsedRecord]] = {}
    for record in todo:
        by_tenant.setdefault(record.tenant_id, []).append(record)
    transactions = replayed = applied = 0
    if progress:
        progress(0, len(todo))
    if not dry_run and todo:
        # One part per tenant and per batch_size_max records, each idempotent on the hash of
        # its content, all in ONE database transaction: the file applies whole or not at all.
        parts: list[RecordRequest] = []
        for tenant, tenant_records in by_tenant.items():
            for start in range(0, len(tenant_records), limits.batch_size_max):
                part = [
                    _entry_input(record, ledger)
                    for record in tenant_records[start : start + limits.batch_size_max]
                ]
                batches = [
                    part[offset : offset + records_per_transaction]
                    for offset in range(0, len(part), records_per_transaction)
                ]
                parts.append(RecordRequest(tenant, _chunk_key(part), batches))
        for part_request, result in zip(
            parts, ledger.record_entries_atomically(parts), strict=True
        ):
            transactions += len(result.transactions)
            if result.replayed:
                replayed += len(result.transactions)
            else:
                applied += sum(len(batch) for batch in part_request.batches)
        if progress:
            progress(applied, len(todo))
    return ImportResult(
        file_sha256=digest,
        format=file_format,
        rows=len(records),
        applied=applied,
        already_present=len(present),
        transactions=transactions,
        replayed_transactions=replayed,
    )


def import_file(
    ledger: Ledger,
    path: str,
    *,
    file_format: str | None = None,
    tenant_id: str | None = None,
    progress: Progress | None = None,
    dry_run: bool = False,
) -> ImportResult:
    """Imports the file at ``path``; the format comes from its extension unless given."""
    chosen = detect_format(path, file_format)
    with open(path, encoding="utf-8", newline="") as handle:
        text = handle.read()
    return import_text(
        ledger, text, chosen, tenant_id=tenant_id, progress=progress, dry_run=dry_run
    )


def _records(
    rows: Iterable[dict[str, Any]], ledger: Ledger, include_recorded_at: bool, counter: list[int]
) -> Iterator[dict[str, Any]]:
    for row in rows:
        record = record_dict(row, ledger.registry)
        if not include_recorded_at:
            del record["recorded_at"]
        counter[0] += 1
        yield record


def export_entries(
    ledger: Ledger,
    entry_filter: EntryFilter,
    file_format: str,
    output: TextIO,
    *,
    include_recorded_at: bool = True,
) -> int:
    """Writes the filter's entries (journal order) to ``output``; returns how many.

    ``beancount`` writes the whole journal of the filter's tenant (or of every tenant) instead:
    a Beancount file must hold both sides of every transaction to balance.
    """
    with ledger.engine.connect() as connection:
        if file_format == "beancount":
            counts = write_beancount(connection, output, tenant_id=entry_filter.tenant_id)
            return counts["transactions"]
        renderers = {"json": render_json, "jsonl": render_jsonl, "csv": render_csv}
        if file_format not in renderers:
            raise InvalidEntry(
                f"unknown format {file_format!r}; use one of {', '.join(EXPORT_FORMATS)}",
                field="format",
            )
        counter = [0]
        records = _records(
            entry_rows(connection, entry_filter), ledger, include_recorded_at, counter
        )
        if file_format == "csv":
            fields = FIELDS if include_recorded_at else FIELDS[:-1]
            chunks = render_csv(records, fields)
        else:
            chunks = renderers[file_format](records)
        for chunk in chunks:
            output.write(chunk)
        return counter[0]
