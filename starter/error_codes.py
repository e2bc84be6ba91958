"""The one table from stable error codes to what each face answers: an HTTP status (the read
API) and an exit status (the CLI).

Every failure of the command line and of the read API carries ``{"error": {"code", "message"}}``
with one of these codes; the table is the only place where a code becomes a status, so a script
or a client may branch on either and both stay stable. The rows are grouped by meaning:

| exit | HTTP | meaning |
|---|---|---|
| 2 | 400 | the command line or the request is wrong |
| 2 | 401 | no valid API key (missing, unknown or revoked) |
| 3 | 404 | it is not there (another tenant's object answers exactly the same) |
| 4 | 400 | a field is malformed or out of its limits |
| 5 | 409 | the object's state forbids the request |
| 6 | 422 | not enough money |
| 7 | 500 | the journal refused a write that would break its invariants |
| 8 | 503 | a service the command needs is down, missing or not upgraded; retry later |
| 1 | 500 | anything else: a bug or an unexpected outage |

Importing this module costs nothing (no ledger, no web framework): the CLI reads it at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "ERROR_STATUSES",
    "EXIT_CODES",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "HTTP_STATUSES",
    "CodedError",
    "ErrorStatus",
    "exit_code_for",
    "http_status_for",
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


class CodedError(Exception):
    """An error found by a face itself (the CLI, the read API), not by the ledger: a stable
    code, a message for people and optional details, in the same wire form as a LedgerError."""

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


class ErrorStatus(NamedTuple):
    """What one error code answers: the read API's HTTP status and the CLI's exit status."""

    http_status: int
    exit_code: int


_USAGE = ErrorStatus(400, EXIT_USAGE)
_UNAUTHENTICATED = ErrorStatus(401, EXIT_USAGE)
_NOT_FOUND = ErrorStatus(404, EXIT_NOT_FOUND)
_INVALID = ErrorStatus(400, EXIT_INVALID_REQUEST)
_CONFLICT = ErrorStatus(409, EXIT_CONFLICT)
_NO_MONEY = ErrorStatus(422, EXIT_INSUFFICIENT_FUNDS)
_INTEGRITY = ErrorStatus(500, EXIT_INTEGRITY)
_UNAVAILABLE = ErrorStatus(503, EXIT_UNAVAILABLE)
_INTERNAL = ErrorStatus(500, EXIT_INTERNAL)

ERROR_STATUSES: Mapping[str, ErrorStatus] = {
    # The command line or the HTTP request itself is wrong.
    "usage_error": _USAGE,
    "idempotency_key_required": _USAGE,
    "invalid_duration": _USAGE,
    "invalid_request": _USAGE,
    "temporal_config_invalid": _USAGE,
    "method_not_allowed": ErrorStatus(405, EXIT_USAGE),
    # No valid API key: missing, unknown, malformed or revoked.
    "unauthenticated": _UNAUTHENTICATED,
    # The object does not exist in this tenant (another tenant's object looks the same).
    "account_not_found": _NOT_FOUND,
    "hold_not_found": _NOT_FOUND,
    "transaction_not_found": _NOT_FOUND,
    "api_key_not_found": _NOT_FOUND,
    "not_found": _NOT_FOUND,
    # The request is malformed or out of its limits.
    "invalid_amount": _INVALID,
    "invalid_entry": _INVALID,
    "unknown_currency": _INVALID,
    "currency_mismatch": _INVALID,
    "capture_exceeds_hold": _INVALID,
    "payee_required": _INVALID,
    "ttl_out_of_range": _INVALID,
    "idempotency_key_invalid": _INVALID,
    # The object's state forbids the request.
    "account_closed": _CONFLICT,
    "account_already_exists": _CONFLICT,
    "hold_expired": _CONFLICT,
    "hold_not_expired": _CONFLICT,
    "hold_already_captured": _CONFLICT,
    "hold_already_released": _CONFLICT,
    "hold_not_captured": _CONFLICT,
    "hold_already_finalized": _CONFLICT,
    "idempotency_key_reused": _CONFLICT,
    "transaction_already_reversed": _CONFLICT,
    # Not enough money.
    "insufficient_funds": _NO_MONEY,
    # The journal refused a write that would break its invariants.
    "unbalanced_transaction": _INTEGRITY,
    "journal_is_append_only": _INTEGRITY,
    "audit_failed": _INTEGRITY,
    "statement_mismatch": _INTEGRITY,
    # A service the command needs is down, missing or not upgraded; retrying later may work.
    "temporal_unavailable": _UNAVAILABLE,
    "worker_unavailable": _UNAVAILABLE,
    "ledger_unavailable": _UNAVAILABLE,
    "database_unavailable": _UNAVAILABLE,
    "schema_outdated": _UNAVAILABLE,
    "schema_unknown": _UNAVAILABLE,
    "binary_not_found": _UNAVAILABLE,
    "relay_unavailable": _UNAVAILABLE,
    # Anything else is a bug or an unexpected outage.
    "ledger_error": _INTERNAL,
    "internal_error": _INTERNAL,
    "interrupted": ErrorStatus(499, EXIT_INTERRUPTED),
}

EXIT_CODES: Mapping[str, int] = {code: row.exit_code for code, row in ERROR_STATUSES.items()}
HTTP_STATUSES: Mapping[str, int] = {code: row.http_status for code, row in ERROR_STATUSES.items()}


def exit_code_for(code: str) -> int:
    """The exit status of a stable error code; unknown codes are internal errors."""
    return ERROR_STATUSES.get(code, _INTERNAL).exit_code


def http_status_for(code: str) -> int:
    """The HTTP status of a stable error code; unknown codes are internal errors."""
    return ERROR_STATUSES.get(code, _INTERNAL).http_status
