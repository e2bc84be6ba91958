"""What every ``compute-ledger`` command prints, and how every failure ends.

Success: ``emit(data, json_mode)`` prints JSON on stdout (pydantic models through their JSON
form, so amounts are exact decimal text next to their currency) or a rich rendering for people.

Failure: ``fail(error, json_mode)`` prints ``{"error": {"code": ..., "message": ...}}`` on stdout
in JSON mode, or a rich message on stderr, and exits with the status that :data:`EXIT_CODES`
gives the code. That table is the only place where error codes become exit statuses, so a
script may branch on either and both stay stable.

``run_command`` wraps a command function (sync or ``async``) so that any ``LedgerError``, any
:class:`CliError` and a Temporal or database connection failure end through ``fail``. The
FinOps commands (``starter/cli_finops.py``) use the same three helpers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import functools
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ledger_db.errors import ERROR_CODES, LedgerError

__all__ = [
    "EXIT_CODES",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "CliError",
    "JsonOption",
    "balances_table",
    "emit",
    "emit_line",
    "entries_table",
    "error_body",
    "event_amounts",
    "event_row",
    "events_table",
    "exact_table",
    "exit_code_for",
    "fail",
    "hold_table",
    "holds_table",
    "key_value_table",
    "missing_exit_codes",
    "money",
    "records_table",
    "run_command",
    "stderr_console",
    "stdout_console",
    "to_jsonable",
]


_piped_width_columns = 160


def _stdout_console() -> Console:
    # Piped or redirected output has no terminal width; rich would assume 80 columns and squeeze
    # the tables. A file or a pager gets a generous width instead (COLUMNS still wins).
    console = Console(soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(soft_wrap=False, width=_piped_width_columns)
    return console


stdout_console = _stdout_console()
stderr_console = Console(stderr=True)

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print machine-readable JSON (amounts as exact decimal text with their currency).",
    ),
]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INVALID_REQUEST = 4
EXIT_CONFLICT = 5
EXIT_INSUFFICIENT_FUNDS = 6
EXIT_INTEGRITY = 7
EXIT_UNAVAILABLE = 8
EXIT_INTERRUPTED = 130

# The one table from stable error codes to exit statuses. Grouped so that a shell script can
# tell "you asked wrongly" (2, 4) from "it is not there" (3), "its state forbids it" (5),
# "no money" (6), "the journal is damaged" (7) and "try again later" (8).
EXIT_CODES: Mapping[str, int] = {
    # The command line itself is wrong.
    "usage_error": EXIT_USAGE,
    "idempotency_key_required": EXIT_USAGE,
    "invalid_duration": EXIT_USAGE,
    # The object does not exist in this tenant.
    "account_not_found": EXIT_NOT_FOUND,
    "hold_not_found": EXIT_NOT_FOUND,
    "transaction_not_found": EXIT_NOT_FOUND,
    # The request is malformed or out of its limits.
    "invalid_amount": EXIT_INVALID_REQUEST,
    "invalid_entry": EXIT_INVALID_REQUEST,
    "unknown_currency": EXIT_INVALID_REQUEST,
    "currency_mismatch": EXIT_INVALID_REQUEST,
    "capture_exceeds_hold": EXIT_INVALID_REQUEST,
    "payee_required": EXIT_INVALID_REQUEST,
    "ttl_out_of_range": EXIT_INVALID_REQUEST,
    "idempotency_key_invalid": EXIT_INVALID_REQUEST,
    # The object's state forbids the request.
    "account_closed": EXIT_CONFLICT,
    "account_already_exists": EXIT_CONFLICT,
    "hold_expired": EXIT_CONFLICT,
    "hold_not_expired": EXIT_CONFLICT,
    "hold_already_captured": EXIT_CONFLICT,
    "hold_already_released": EXIT_CONFLICT,
    "hold_not_captured": EXIT_CONFLICT,
    "hold_already_finalized": EXIT_CONFLICT,
    "idempotency_key_reused": EXIT_CONFLICT,
    "transaction_already_reversed": EXIT_CONFLICT,
    # Not enough money.
    "insufficient_funds": EXIT_INSUFFICIENT_FUNDS,
    # The journal refused a write that would break its invariants.
    "unbalanced_transaction": EXIT_INTEGRITY,
    "journal_is_append_only": EXIT_INTEGRITY,
    "audit_failed": EXIT_INTEGRITY,
    "statement_mismatch": EXIT_INTEGRITY,
    # A service the command needs is down or missing; retrying later may work.
    "temporal_unavailable": EXIT_UNAVAILABLE,
    "worker_unavailable": EXIT_UNAVAILABLE,
    "ledger_unavailable": EXIT_UNAVAILABLE,
    "database_unavailable": EXIT_UNAVAILABLE,
    "binary_not_found": EXIT_UNAVAILABLE,
    "relay_unavailable": EXIT_UNAVAILABLE,
    # Anything else is a bug or an unexpected outage.
    "ledger_error": EXIT_INTERNAL,
    "internal_error": EXIT_INTERNAL,
    "interrupted": EXIT_INTERRUPTED,
}


def missing_exit_codes() -> list[str]:
    """Ledger codes without a row above (a test keeps this empty; they would exit 1)."""
    return sorted(set(ERROR_CODES) - set(EXIT_CODES))


class CliError(Exception):
    """An error found by the command line itself (not by the ledger), with a stable code."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def exit_code_for(code: str) -> int:
    """The exit status of a stable error code; unknown codes are internal errors."""
    return EXIT_CODES.get(code, EXIT_INTERNAL)


def to_jsonable(data: Any) -> Any:
    """Plain JSON values for models, dataclasses, decimals, datetimes, enums and containers."""
    if hasattr(data, "model_dump") and callable(data.model_dump):
        return data.model_dump(mode="json")
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return to_jsonable(dataclasses.asdict(data))
    if isinstance(data, Mapping):
        return {str(key): to_jsonable(value) for key, value in data.items()}
    if isinstance(data, (list, tuple, set, frozenset)):
        return [to_jsonable(item) for item in data]
    if isinstance(data, enum.Enum):
        return to_jsonable(data.value)
    if isinstance(data, Decimal):
        # Decimals are money or rates: never let JSON turn them into binary floats.
        return str(data)
    if isinstance(data, (dt.datetime, dt.date)):
        return data.isoformat()
    if isinstance(data, bool | int | str | float) or data is None:
        return data
    return str(data)


def _dumps(data: Any) -> str:
    return json.dumps(to_jsonable(data), ensure_ascii=False, sort_keys=False)


def emit(
    data: Any,
    json_mode: bool,
    *,
    render: Callable[[Any], Any] | None = None,
    title: str | None = None,
) -> None:
    """Prints a command's result: JSON on stdout, or ``render(data)`` (a rich renderable)."""
    if json_mode:
        sys.stdout.write(_dumps(data) + "\n")
        sys.stdout.flush()
        return
    if render is not None:
        stdout_console.print(render(data))
        return
    plain = to_jsonable(data)
    if isinstance(plain, list) and all(isinstance(item, dict) for item in plain):
        stdout_console.print(records_table(plain, title=title))
    elif isinstance(plain, dict):
        stdout_console.print(key_value_table(plain, title=title))
    else:
        stdout_console.print(plain)


def emit_line(data: Any) -> None:
    """One JSON document per line (JSON Lines), flushed at once: for ``--follow`` streams."""
    sys.stdout.write(_dumps(data) + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else ""
    return str(value)


def key_value_table(data: Mapping[str, Any], *, title: str | None = None) -> Table:
    """A two-column table of one record; money columns are right-aligned decimal text."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        table.add_row(key, _cell(value))
    return table


def records_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    money_columns: Sequence[str] = (),
) -> Table:
    """A table of records, one row each; ``money_columns`` are right-aligned."""
    if columns is None:
        columns = list(rows[0].keys()) if rows else []
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in money_columns else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def error_body(error: LedgerError | CliError) -> dict[str, Any]:
    """The ``{"error": {...}}`` document of a failure."""
    return {"error": error.to_dict()}


def fail(error: LedgerError | CliError, json_mode: bool) -> NoReturn:
    """Reports ``error`` by the error contract and exits with its status."""
    if json_mode:
        sys.stdout.write(_dumps(error_body(error)) + "\n")
        sys.stdout.flush()
    else:
        stderr_console.print(
            f"[bold red]error[/bold red] [red]{error.code}[/red]: {error.message}",
            highlight=False,
            markup=True,
        )
        if getattr(error, "details", None):
            stderr_console.print(_dumps(error.details), highlight=False, markup=False)
    raise typer.Exit(exit_code_for(error.code))


def _connection_error(error: BaseException) -> CliError | None:
    """A CliError for "the Temporal server or the database is not reachable", else None."""
    # Imported here: the output helpers load fast and the FinOps commands may never need them.
    from sqlalchemy.exc import OperationalError
    from temporalio.service import RPCError

    text = str(error)
    if isinstance(error, RPCError) or (
        isinstance(error, RuntimeError) and "Failed client connect" in text
    ):
        return CliError("temporal_unavailable", f"Temporal is not reachable: {text}")
    if isinstance(error, OperationalError):
        return CliError("database_unavailable", f"the ledger database failed: {text}")
    if isinstance(error, ConnectionError | TimeoutError):
        return CliError("temporal_unavailable", f"a service is not reachable: {text}")
    return None


F = TypeVar("F", bound=Callable[..., Any])


def run_command(function: F) -> F:
    """Runs a command (sync or ``async``) under the error contract.

    The JSON mode is read from the command's ``json_output`` parameter (the ``--json`` option).
    ``typer.Exit`` and ``typer.Abort`` pass through untouched.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        json_mode = bool(kwargs.get("json_output", False))
        try:
            result = function(*args, **kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
            return result
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except (LedgerError, CliError) as error:
            fail(error, json_mode)
        except KeyboardInterrupt:
            fail(CliError("interrupted", "interrupted"), json_mode)
        except Exception as error:
            mapped: LedgerError | CliError | None = _connection_error(error)
            if mapped is None:
                mapped = _unwrap_ledger_error(error)
            if mapped is None:
                mapped = CliError("internal_error", f"{type(error).__name__}: {error}")
            fail(mapped, json_mode)

    return wrapper  # type: ignore[return-value]


def _unwrap_ledger_error(error: BaseException) -> LedgerError | CliError | None:
    """A LedgerError found in the cause chain (e.g. wrapped by Temporal), else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, LedgerError | CliError):
            return current
        mapped = _connection_error(current) if current is not error else None
        if mapped is not None:
            return mapped
        current = current.__cause__ or current.__context__
    return None


# ---------------------------------------------------------------------------------------------
# Renderings of the ledger's records for people. JSON mode never uses these: it prints the
# records' own JSON form.
# ---------------------------------------------------------------------------------------------


def money(amount: str | None, currency: str | None) -> str:
    """Exact decimal text followed by its currency, as people read it."""
    if amount is None:
        return ""
    return f"{amount} {currency}" if currency else amount


def _short(identifier: str | None, length: int = 8) -> str:
    if not identifier:
        return ""
    return identifier if len(identifier) <= length + 1 else identifier[:length] + "…"


def _time(value: Any) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, dt.datetime | dt.date) else str(value)
    return text.replace("+00:00", "Z")


def _time_to_seconds(value: Any) -> str:
    """A time as people scan it in a table (``2026-11-21 15:20:45Z``); JSON keeps it whole."""
    text = _time(value)
    if len(text) >= 19 and text[10] == "T":
        return f"{text[:10]} {text[11:19]}Z"
    return text


def _fee_text(data: Mapping[str, Any]) -> str | None:
    fee_minor = data.get("fee_minor")
    currency = data.get("currency")
    if not fee_minor or not currency:
        return None
    from ledger_db.money import default_registry

    return default_registry().to_text(int(fee_minor), str(currency))


def exact_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    exact: Sequence[str] = (),
    right: Sequence[str] = (),
) -> Table:
    """A table whose ``exact`` columns (amounts, IDs people copy) are never cut or wrapped.

    Rich narrows columns to fit the terminal; for money that would print ``100.…``, which a
    ledger must never show. Exact columns get a minimum width of their longest cell, and the
    other columns fold instead.
    """
    table = Table(title=title, title_justify="left")
    for index, header in enumerate(headers):
        if header in exact:
            width = max([len(header), *(len(row[index]) for row in rows)])
            table.add_column(
                header,
                justify="right" if header in right else "left",
                no_wrap=True,
                min_width=width,
            )
        else:
            table.add_column(
                header, justify="right" if header in right else "left", overflow="fold"
            )
    for row in rows:
        table.add_row(*row)
    return table


def hold_table(hold: Any, *, title: str | None = "hold") -> Table:
    """One hold as a two-column table."""
    data = to_jsonable(hold)
    currency = data.get("currency")
    fee = _fee_text(data)
    rows = {
        "hold_id": data.get("hold_id"),
        "state": data.get("state"),
        "account": data.get("account_id"),
        "amount": money(data.get("amount"), currency),
        "captured": money(data.get("captured"), currency),
        "released": money(data.get("released"), currency),
        "payee": data.get("payee_account_id"),
        "order": data.get("order_id"),
        "finalized": data.get("finalized"),
        "fee": money(fee, currency) if fee else "",
        "reason": data.get("reason"),
        "expires_at": _time(data.get("expires_at")),
        "resolved_at": _time(data.get("resolved_at")),
        "replayed": data.get("replayed") or None,
    }
    shown = {key: _cell(value) for key, value in rows.items() if value not in (None, "")}
    return exact_table(
        ["field", "value"], list(shown.items()), title=title, exact=["field", "value"]
    )


def balances_table(pairs: Sequence[tuple[Any, Any]], *, title: str | None = "balances") -> Table:
    """Accounts with their balance snapshots: (account, balance) pairs."""
    rows = []
    for account, balance in pairs:
        account_data = to_jsonable(account)
        balance_data = to_jsonable(balance)
        rows.append(
            [
                str(account_data.get("account_id")),
                str(account_data.get("kind", "")),
                str(balance_data.get("posted", "")),
                str(balance_data.get("held", "")),
                str(balance_data.get("available", "")),
                str(balance_data.get("currency", "")),
            ]
        )
    money_columns = ["posted", "held", "available"]
    return exact_table(
        ["account", "kind", *money_columns, "currency"],
        rows,
        title=title,
        exact=["account", *money_columns, "currency"],
        right=money_columns,
    )


def entries_table(
    entries: Sequence[Any], *, title: str | None = "journal entries", compact: bool = False
) -> Table:
    """Journal entries in journal order, one line each (``seq`` = transaction.entry).

    ``compact`` fits 80 columns: amount and currency share a column, IDs are left out.
    """
    if compact:
        headers = ["seq", "account", "dir", "amount", "reason", "category"]
    else:
        headers = [
            "seq",
            "account",
            "direction",
            "amount",
            "currency",
            "reason",
            "category",
            "hold",
            "transaction",
            "recorded_at",
        ]
    rows = []
    for entry in entries:
        data = to_jsonable(entry)
        sequence = f"{data.get('journal_sequence')}.{data.get('entry_index')}"
        if compact:
            rows.append(
                [
                    sequence,
                    str(data.get("account_id")),
                    str(data.get("direction")),
                    money(str(data.get("amount")), str(data.get("currency"))),
                    str(data.get("reason")),
                    str(data.get("category")),
                ]
            )
            continue
        rows.append(
            [
                sequence,
                str(data.get("account_id")),
                str(data.get("direction")),
                str(data.get("amount")),
                str(data.get("currency")),
                str(data.get("reason")),
                str(data.get("category")),
                _short(data.get("hold_id")),
                _short(data.get("transaction_id")),
                _time_to_seconds(data.get("recorded_at")),
            ]
        )
    return exact_table(
        headers,
        rows,
        title=title,
        exact=[
            "seq",
            "account",
            "dir",
            "direction",
            "amount",
            "currency",
            "hold",
            "transaction",
            "recorded_at",
        ],
        right=["seq", "amount"],
    )


def events_table(
    events: Sequence[Any], *, title: str | None = "events", compact: bool = False
) -> Table:
    """Billing events in outbox order (``compact`` leaves out the IDs and times)."""
    headers = ["seq", "type", "hold", "order", "account", "amounts"]
    if not compact:
        headers += ["event_id", "occurred_at", "sent"]
    rows = [event_row(event)[: len(headers)] for event in events]
    if compact:
        headers.remove("account")
        rows = [row[:4] + row[5:] for row in rows]
    return exact_table(
        headers,
        rows,
        title=title,
        exact=["seq", "type", "hold", "event_id", "occurred_at", "sent"],
        right=["seq"],
    )


# In an event payload, the amounts worth a column, by the key they sit under. ``held`` (in a
# settlement) and ``gross`` (in a payment) repeat figures shown elsewhere, so they are left out.
_EVENT_AMOUNT_LABELS = {"captured": "captured", "released": "released", "net": "net", "fee": "fee"}
_EVENT_AMOUNT_SKIPPED = {"held", "gross"}


def _labelled_amounts(payload: Mapping[str, Any]) -> list[str]:
    parts = []
    for key, label in _EVENT_AMOUNT_LABELS.items():
        nested = payload.get(key)
        if isinstance(nested, Mapping) and "amount" in nested:
            parts.append(f"{label} {money(str(nested['amount']), nested.get('currency'))}")
    return parts


def event_amounts(payload: Mapping[str, Any]) -> str:
    """The money an event moved, as people read it: ``captured 25.50 USD, released 14.50 USD``."""
    parts: list[str] = []
    for key, value in payload.items():
        if not isinstance(value, Mapping) or key in _EVENT_AMOUNT_LABELS:
            continue
        if key in _EVENT_AMOUNT_SKIPPED:
            continue
        if "amount" in value and "currency" in value:
            parts.append(money(str(value["amount"]), str(value["currency"])))
        parts.extend(_labelled_amounts(value))
    parts.extend(_labelled_amounts(payload))
    return ", ".join(parts)


def event_row(event: Any) -> list[str]:
    """The cells of one event (table order), shared by the table and ``events --follow``."""
    data = to_jsonable(event)
    return [
        str(data.get("sequence", "")),
        str(data.get("type")),
        _short(data.get("hold_id")),
        str(data.get("order_id") or ""),
        str(data.get("account_id") or ""),
        event_amounts(data.get("payload") or {}),
        _short(data.get("event_id")),
        _time_to_seconds(data.get("occurred_at")),
        "yes" if data.get("sent_at") else "no",
    ]


def holds_table(holds: Sequence[Any], *, title: str | None = "holds") -> Table:
    """Holds, one line each: what was held, captured (and paid), released."""
    headers = ["hold", "state", "amount", "captured", "released", "fee", "account → payee"]
    rows = []
    for hold in holds:
        data = to_jsonable(hold)
        state = str(data.get("state"))
        rows.append(
            [
                _short(data.get("hold_id")),
                f"{state}, paid" if data.get("finalized") else state,
                money(data.get("amount"), data.get("currency")),
                str(data.get("captured", "")),
                str(data.get("released", "")),
                _fee_text(data) or "",
                f"{data.get('account_id')} → {data.get('payee_account_id') or '?'}",
            ]
        )
    money_columns = ["amount", "captured", "released", "fee"]
    return exact_table(
        headers, rows, title=title, exact=["hold", "state", *money_columns], right=money_columns
    )
