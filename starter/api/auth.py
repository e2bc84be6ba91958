"""Who is asking (the API key of a request or a stream, and the tenant it reads), and how the
API answers a refusal: ``{"error": {"code", "message"}}`` with the status of the code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import JSONResponse

from ledger_db.api_keys import ApiKey, authenticate
from starter.error_codes import CodedError, http_status_for

if TYPE_CHECKING:
    from ledger_db import Ledger
    from ledger_db.errors import LedgerError

__all__ = ["ApiError", "error_response", "key_record"]


class ApiError(CodedError):
    """An error the read API itself finds (a missing key, a bad parameter), with a stable code."""


def key_record(ledger: Ledger, key: str | None) -> ApiKey:
    """The record of a presented key, or ``unauthenticated`` (missing, unknown or revoked).

    Blocking (one primary-key read): call it from the thread pool.
    """
    if not key:
        raise ApiError(
            "unauthenticated", "no API key: send Authorization: Bearer <key> (apikey create)"
        )
    with ledger.engine.connect() as connection:
        record = authenticate(connection, key)
    if record is None:
        raise ApiError("unauthenticated", "the API key is not valid")
    if record.revoked:
        raise ApiError("unauthenticated", "the API key was revoked")
    return record


def error_response(error: CodedError | LedgerError) -> JSONResponse:
    """The error body with the HTTP status of its code (``starter.error_codes``)."""
    status = http_status_for(error.code)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": error.to_dict()}, status_code=status, headers=headers)
