"""LedgerEntry v1.0 records in and out: parsing, validation and canonical rendering.

Reading never goes through a binary float: JSON is decoded with ``parse_float=Decimal`` so a
number such as ``20.00`` is the exact decimal the file wrote (and an integer too long for Python
to read as one becomes a ``Decimal`` that the checks refuse), and CSV cells are text. Amounts go
through ``ledger_db.money`` only: text must follow its one grammar, a JSON number is read as the
exact value JSON spells. Meta is normalised exactly as the ledger stores it
(``ledger_db.validation.normalise_json``), so a re-imported record compares equal to the stored
one. Every problem of every row is collected as data (:class:`RowProblem`, with the line and the
field), so one run reports all of them; the importer applies nothing unless that list is empty.

Writing is canonical so that exporting the same entries twice gives the same bytes: fields in
the schema's order, ``meta`` keys sorted, amounts with exactly the currency's decimals,
timestamps in UTC with a ``Z`` (microseconds only when there are some).
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from ledger_db import limits
from ledger_db.errors import LedgerError
from ledger_db.money import CurrencyRegistry, default_registry
from ledger_db.validation import check_instant, normalise_json
from ledger_db.vocabulary import LEDGER_ENTRY_FIELDS

__all__ = [
    "FIELDS",
    "FORMATS",
    "ParsedRecord",
    "RowProblem",
    "detect_format",
    "format_timestamp",
    "ledger_entry_schema",
    "parse_records",
    "parse_timestamp",
    "render_csv",
    "render_json",
    "render_jsonl",
]

# The LedgerEntry v1.0 fields in the schema's order: the column order of every export.
FIELDS: tuple[str, ...] = LEDGER_ENTRY_FIELDS
FORMATS: tuple[str, ...] = ("json", "jsonl", "csv")

_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)
# Python refuses to read longer integers (``sys.int_info.default_max_str_digits``).
_JSON_INTEGER_DIGITS_MAX = 4300


@cache
def ledger_entry_schema() -> dict[str, Any]:
    """The JSON Schema of LedgerEntry v1.0 shipped in ``ledger_db/finops/schema``."""
    text = (
        resources.files("ledger_db.finops")
        .joinpath("schema/ledger_entry_v1.json")
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(ledger_entry_schema())


@dataclass(frozen=True)
class RowProblem:
    """One thing wrong with one row of an input file."""

    line: int
    field: str
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class ParsedRecord:
    """A valid row: the ledger's view of one LedgerEntry v1.0 record."""

    line: int
    ledger_entry_id: str
    tenant_id: str
    project_id: str | None
    env: str
    asset_id: str | None
    task_id: str | None
    external_ref: str | None
    direction: str
    amount_minor: int
    currency: str
    reason: str
    category: str
    tags: list[str] | None
    meta: dict[str, Any]
    occurred_at: datetime
    recorded_at: datetime | None = field(default=None, compare=False)

    def comparable(self) -> tuple[Any, ...]:
        """Every field the ledger stores from the record (recorded_at is the ledger's own)."""
        return (
            self.ledger_entry_id,
            self.tenant_id,
            self.project_id,
            self.env,
            self.asset_id,
            self.task_id,
            self.external_ref,
            self.direction,
            self.amount_minor,
            self.currency,
            self.reason,
            self.category,
            list(self.tags) if self.tags is not None else None,
            canonical_json(self.meta),
            self.occurred_at,
        )


def canonical_json(value: Any) -> str:
    """Key-sorted compact JSON: the one serialisation used to compare and hash meta."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Timestamps


def parse_timestamp(text: object) -> datetime:
    """ISO 8601 with an explicit UTC offset -> aware UTC datetime. Naive times are refused."""
    if not isinstance(text, str) or not _TIMESTAMP.match(text.strip()):
        raise ValueError(f"{text!r} is not an ISO 8601 timestamp with a UTC offset")
    value = text.strip()
    if value[-1] in "Zz":
        value = value[:-1] + "+00:00"
    main, dot, rest = value.partition(".")
    if dot:
        # Python keeps microseconds: more than six digits would be silently truncated.
        digits = rest[: len(rest) - 6]
        offset = rest[len(rest) - 6 :]
        if len(digits) > 6:
            if set(digits[6:]) != {"0"}:
                raise ValueError(f"{text!r} is more precise than a microsecond")
            digits = digits[:6]
        value = f"{main}.{digits.ljust(6, '0')}{offset}"
    try:
        parsed = datetime.fromisoformat(value.replace("t", "T"))
        return check_instant(parsed, "timestamp")
    except LedgerError as error:
        raise ValueError(f"{text!r}: {error.message.removeprefix('timestamp ')}") from error


def format_timestamp(value: datetime) -> str:
    """Aware datetime -> canonical UTC text, e.g. ``2025-01-15T10:00:00Z``."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# Reading


def detect_format(path_name: str, explicit: str | None = None) -> str:
    """``json``, ``jsonl`` or ``csv`` from an explicit choice or the file's extension."""
    if explicit:
        if explicit not in FORMATS:
            raise ValueError(f"unknown format {explicit!r}; use one of {', '.join(FORMATS)}")
        return explicit
    lowered = path_name.lower()
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lowered.endswith(".json"):
        return "json"
    if lowered.endswith(".csv"):
        return "csv"
    raise ValueError(f"cannot tell the format of {path_name!r}; pass it explicitly")


def _json_integer(text: str) -> int | Decimal:
    # Too long for int(): kept as a Decimal, which every check then refuses by its size.
    return int(text) if len(text) <= _JSON_INTEGER_DIGITS_MAX else Decimal(text)


def _decoder() -> json.JSONDecoder:
    return json.JSONDecoder(parse_float=Decimal, parse_int=_json_integer)


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _raw_rows_json(text: str) -> Iterator[tuple[int, Any]]:
    """Elements of a top-level JSON array with the line each one starts on."""
    decoder = _decoder()
    index = _skip_space(text, 0)
    if index >= len(text) or text[index] != "[":
        raise _FileProblem(_line_of(text, index), "a JSON file must hold an array of entries")
    index = _skip_space(text, index + 1)
    if index < len(text) and text[index] == "]":
        return
    while True:
        try:
            value, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as error:
            raise _FileProblem(error.lineno, f"invalid JSON: {error.msg}") from error
        yield _line_of(text, index), value
        index = _skip_space(text, end)
        if index < len(text) and text[index] == ",":
            index = _skip_space(text, index + 1)
            continue
        if index < len(text) and text[index] == "]":
            break
        raise _FileProblem(_line_of(text, index), "invalid JSON: expected ',' or ']'")
    if _skip_space(text, index + 1) != len(text):
        raise _FileProblem(_line_of(text, index + 1), "invalid JSON: data after the array")


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _raw_rows_jsonl(text: str) -> Iterator[tuple[int, Any]]:
    decoder = _decoder()
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, decoder.decode(line)
        except json.JSONDecodeError as error:
            yield number, _Unparsable(f"invalid JSON: {error.msg} (column {error.colno})")


class _Unparsable:
    def __init__(self, message: str) -> None:
        self.message = message


class _FileProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def numbered_csv_rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """The data rows of a ``csv.reader`` with the file line each starts on (a quoted cell may
    span lines, so this is not a count of rows); blank rows are skipped."""
    start = reader.line_num + 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if any(cell.strip() for cell in cells):
            yield line, cells


def _raw_rows_csv(text: str) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [name.strip() for name in header]
    unknown = [name for name in header if name not in FIELDS]
    if unknown:
        raise _FileProblem(1, f"unknown CSV column(s): {', '.join(unknown)}")
    for line, cells in numbered_csv_rows(reader):
        if len(cells) != len(header):
            yield line, _Unparsable(f"{len(cells)} cells where the header has {len(header)}")
            continue
        yield line, _csv_row(dict(zip(header, cells, strict=True)))


def _csv_row(cells: Mapping[str, str]) -> dict[str, Any] | _Unparsable:
    """CSV text cells -> the JSON shape: empty cells are absent, tags and meta are JSON."""
    row: dict[str, Any] = {}
    for name, cell in cells.items():
        if cell == "":
            continue
        if name == "meta":
            try:
                row[name] = _decoder().decode(cell)
            except json.JSONDecodeError:
                return _Unparsable("meta: not a JSON object")
        elif name == "tags":
            if cell.lstrip().startswith("["):
                try:
                    row[name] = _decoder().decode(cell)
                except json.JSONDecodeError:
                    return _Unparsable("tags: not a JSON array")
            else:
                row[name] = [tag.strip() for tag in cell.split(";") if tag.strip()]
        else:
            row[name] = cell
    return row


def _schema_field(error: jsonschema.ValidationError) -> str:
    if error.validator == "required":
        match = re.match(r"^'([^']+)' is a required property", error.message)
        if match:
            return match.group(1)
    if error.validator == "additionalProperties":
        match = re.search(r"\('([^']+)'", error.message)
        return match.group(1) if match else "(record)"
    path = [str(part) for part in error.absolute_path]
    return ".".join(path) if path else "(record)"


def _schema_message(error: jsonschema.ValidationError, name: str) -> tuple[str, str]:
    if error.validator == "required":
        return "missing_field", f"{name} is required"
    if error.validator == "additionalProperties":
        return "unknown_field", error.message
    if name == "amount":
        return "invalid_amount", "amount must be a non-negative decimal (text or JSON number)"
    if name == "direction":
        return "invalid_direction", "direction must be IN or OUT"
    if name == "currency":
        return "invalid_currency", "currency must be an upper-case code such as USD or USDT"
    if name == "ledger_entry_id":
        return "invalid_uuid", "ledger_entry_id must be a UUID"
    return "invalid_field", error.message


def _validate_row(
    line: int, row: Any, registry: CurrencyRegistry, problems: list[RowProblem]
) -> ParsedRecord | None:
    if isinstance(row, _Unparsable):
        problems.append(RowProblem(line, "(record)", "unparsable_row", row.message))
        return None
    if not isinstance(row, dict):
        problems.append(RowProblem(line, "(record)", "invalid_record", "an entry is an object"))
        return None
    before = len(problems)
    seen_fields: set[str] = set()
    for error in sorted(_validator().iter_errors(row), key=lambda error: error.path):
        name = _schema_field(error)
        if name in seen_fields:
            continue
        seen_fields.add(name)
        code, message = _schema_message(error, name)
        problems.append(RowProblem(line, name, code, message))

    def bad(name: str, code: str, message: str) -> None:
        if name not in seen_fields:
            seen_fields.add(name)
            problems.append(RowProblem(line, name, code, message))

    amount_minor = 0
    currency = row.get("currency")
    if "currency" not in seen_fields and isinstance(currency, str):
        try:
            registry.exponent(currency)
        except LedgerError as error:
            bad("currency", "invalid_currency", error.message)
    if "amount" not in seen_fields and "currency" not in seen_fields and "amount" in row:
        try:
            # Text follows the one grammar; a JSON number (a Decimal here) is its exact value.
            amount_minor = registry.to_minor(row["amount"], str(currency))
        except LedgerError as error:
            bad("amount", "invalid_amount", error.message)
    timestamps: dict[str, datetime | None] = {"occurred_at": None, "recorded_at": None}
    for name in timestamps:
        value = row.get(name)
        if value is None or name in seen_fields:
            continue
        try:
            timestamps[name] = parse_timestamp(value)
        except ValueError as error:
            bad(name, "invalid_timestamp", str(error))
    meta = row.get("meta", {})
    if "meta" not in seen_fields and isinstance(meta, dict):
        try:
            meta = normalise_json(meta, "meta")
        except LedgerError as error:
            bad("meta", "invalid_meta", error.message + " (quote a number to keep it exactly)")
        else:
            if len(canonical_json(meta).encode()) > limits.meta_bytes_max:
                bad("meta", "meta_too_large", f"meta is above {limits.meta_bytes_max} bytes")
    entry_id = row.get("ledger_entry_id")
    if "ledger_entry_id" not in seen_fields and isinstance(entry_id, str):
        try:
            entry_id = str(uuid.UUID(entry_id))
        except ValueError:
            bad("ledger_entry_id", "invalid_uuid", "ledger_entry_id must be a UUID")
    if len(problems) != before:
        return None
    occurred_at = timestamps["occurred_at"]
    assert occurred_at is not None
    return ParsedRecord(
        line=line,
        ledger_entry_id=str(entry_id),
        tenant_id=row["tenant_id"],
        project_id=row.get("project_id"),
        env=row["env"],
        asset_id=row.get("asset_id"),
        task_id=row.get("task_id"),
        external_ref=row.get("external_ref"),
        direction=row["direction"],
        amount_minor=amount_minor,
        currency=row["currency"],
        reason=row["reason"],
        category=row["category"],
        tags=list(row["tags"]) if row.get("tags") is not None else None,
        meta=meta,
        occurred_at=occurred_at,
        recorded_at=timestamps["recorded_at"],
    )


def parse_records(
    text: str, file_format: str, *, registry: CurrencyRegistry | None = None
) -> tuple[list[ParsedRecord], list[RowProblem]]:
    """Every valid record and every problem of a whole file (both lists in line order).

    Duplicate ``ledger_entry_id`` values of one tenant inside the file are problems of the later
    lines (IDs are unique per tenant).
    """
    registry = registry or default_registry()
    rows = {"json": _raw_rows_json, "jsonl": _raw_rows_jsonl, "csv": _raw_rows_csv}[file_format]
    records: list[ParsedRecord] = []
    problems: list[RowProblem] = []
    first_line: dict[tuple[str, str], int] = {}
    try:
        for line, row in rows(text):
            record = _validate_row(line, row, registry, problems)
            if record is None:
                continue
            key = (record.tenant_id, record.ledger_entry_id)
            if key in first_line:
                problems.append(
                    RowProblem(
                        line,
                        "ledger_entry_id",
                        "duplicate_ledger_entry_id",
                        f"ledger_entry_id {record.ledger_entry_id} already appears on line "
                        f"{first_line[key]}",
                    )
                )
                continue
            first_line[key] = line
            records.append(record)
    except _FileProblem as error:
        problems.append(RowProblem(error.line, "(file)", "unparsable_file", error.message))
    return records, problems


# --------------------------------------------------------------------------------------------
# Writing


def record_dict(
    entry: Mapping[str, Any], registry: CurrencyRegistry | None = None
) -> dict[str, Any]:
    """A journal row (mapping with the journal's columns) -> the canonical v1.0 record."""
    registry = registry or default_registry()
    tags = entry.get("tags")
    return {
        "ledger_entry_id": entry["ledger_entry_id"],
        "tenant_id": entry["tenant_id"],
        "project_id": entry.get("project_id"),
        "env": entry["env"],
        "asset_id": entry.get("asset_id"),
        "task_id": entry.get("task_id"),
        "external_ref": entry.get("external_ref"),
        "direction": str(entry["direction"]),
        "amount": registry.to_text(int(entry["amount_minor"]), entry["currency"]),
        "currency": entry["currency"],
        "reason": entry["reason"],
        "category": entry["category"],
        "tags": list(tags) if tags is not None else None,
        "meta": _sorted_meta(entry.get("meta") or {}),
        "occurred_at": format_timestamp(entry["occurred_at"]),
        "recorded_at": format_timestamp(entry["recorded_at"]),
    }


def _sorted_meta(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_meta(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_meta(item) for item in value]
    return value


def render_jsonl(records: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """One compact JSON object per line, each line ending with a newline."""
    for record in records:
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def render_json(records: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """A JSON array, one entry per line, streamed."""
    first = True
    for record in records:
        yield ("[\n  " if first else ",\n  ") + json.dumps(
            record, ensure_ascii=False, separators=(",", ":")
        )
        first = False
    yield "[]\n" if first else "\n]\n"


def render_csv(
    records: Iterable[Mapping[str, Any]], fields: Sequence[str] = FIELDS
) -> Iterator[str]:
    """A header and one row per entry; tags and meta as JSON text, nulls as empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for record in records:
        writer.writerow([_csv_cell(name, record.get(name)) for name in fields])
        if buffer.tell() > 1 << 16:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in ("tags", "meta"):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)
