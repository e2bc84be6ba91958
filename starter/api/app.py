"""The read API: HTTP JSON under ``/v1`` and a WebSocket stream of billing events.

Every request names an API key (``Authorization: Bearer clk_...``, made by ``compute-ledger
apikey create``) and sees only that key's tenant: another tenant's account, hold or transaction
answers exactly as a missing one (404, same code, same body). Money is exact decimal text next
to its currency (``starter.api.wire``). Errors are ``{"error": {"code", "message"}}`` with the
HTTP status of ``starter.error_codes``, the table the CLI's exit statuses come from.

The ledger is blocking (SQLAlchemy): path operations are plain functions, which FastAPI runs in
its thread pool, so the event loop only moves bytes. :func:`create_app` builds the application
for one :class:`~ledger_db.Ledger`; ``starter.api.server`` runs it on uvicorn.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger_db import Ledger, limits
from ledger_db.api_keys import ApiKey
from ledger_db.errors import LedgerError
from starter.api import wire
from starter.api.auth import ApiError, error_response, key_record
from starter.api.stream import Doorbell, EventStreams
from starter.config import ApiSettings
from starter.error_codes import CodedError

__all__ = ["API_VERSION", "ApiError", "create_app"]

log = logging.getLogger("compute_ledger.api")

API_VERSION = "1.0.0"
_ERRORS = {"model": wire.ErrorBody}
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {**_ERRORS, "description": "The database is unreachable or not upgraded."},
}
# What every keyed endpoint may answer besides its result.
_KEYED: dict[int | str, dict[str, Any]] = {
    400: {**_ERRORS, "description": "A parameter is malformed or out of its limits."},
    401: {**_ERRORS, "description": "No valid API key (missing, unknown or revoked)."},
    **_UNAVAILABLE,
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **_KEYED,
    404: {**_ERRORS, "description": "Not found in this key's tenant (another tenant's too)."},
}


# ---------------------------------------------------------------------------------------------
# Authentication and tenancy.
# ---------------------------------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key made by `compute-ledger apikey create --tenant T`; it reads T only.",
)


def _ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    # A plain function: FastAPI runs it in the thread pool, like the ledger reads it guards.
    return key_record(_ledger(request), credentials.credentials if credentials else None)


Principal = Annotated[ApiKey, Depends(_principal)]
LedgerDep = Annotated[Ledger, Depends(_ledger)]
Limit = Annotated[
    int,
    Query(ge=1, le=limits.page_size_max, description=f"Page size, 1..{limits.page_size_max}."),
]


# ---------------------------------------------------------------------------------------------
# Cursors of the pages the ledger does not number itself.
# ---------------------------------------------------------------------------------------------


def _holds_cursor(hold: Any) -> str:
    text = json.dumps([hold.created_at.isoformat(), hold.hold_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _parse_holds_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, hold_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None or not isinstance(hold_id, str):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError("invalid_request", f"bad cursor {cursor!r}", field="cursor") from None
    return parsed, hold_id


class ReportQuery(BaseModel):
    """The options of `compute-ledger report`, as query parameters (their names are those of
    ``starter.views.entry_filter``; ``from`` and ``to`` are spelled as on the command line)."""

    group_by: str | None = Field(
        default=None, description="Comma-separated dimensions, e.g. `task,month`."
    )
    project: str | None = None
    env: str | None = None
    task: str | None = None
    asset: str | None = None
    external_ref: str | None = None
    reason: str | None = None
    category: str | None = None
    tag: str | None = None
    account: str | None = None
    currency: str | None = None
    month: str | None = Field(default=None, description="YYYY-MM (UTC) of the time field.")
    from_text: str | None = Field(
        default=None, alias="from", description="Inclusive, ISO 8601 with a zone."
    )
    to_text: str | None = Field(
        default=None, alias="to", description="Exclusive, ISO 8601 with a zone."
    )
    time_field: Literal["occurred_at", "recorded_at"] = "occurred_at"
    include_internal: bool = Field(
        default=False, description="Count hold movements and counterpart entries too."
    )


def _probe_more(found: list[Any], limit: int, more: Any) -> bool:
    """Whether a full page is followed by more (one extra row read)."""
    return len(found) == limit and bool(more())


# ---------------------------------------------------------------------------------------------
# The application.
# ---------------------------------------------------------------------------------------------


def create_app(ledger: Ledger, settings: ApiSettings | None = None) -> FastAPI:
    """The read API over ``ledger`` (its schema checked by the caller)."""
    settings = settings or ApiSettings()
    doorbell = Doorbell(settings.nats) if settings.nats is not None else None
    streams = EventStreams(ledger, settings, doorbell)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if doorbell is not None:
            await doorbell.start()
        try:
            yield
        finally:
            if doorbell is not None:
                await doorbell.close()

    app = FastAPI(
        title="Compute Ledger read API",
        version=API_VERSION,
        description=(
            "Balances, journal entries, holds, transactions, FinOps reports and billing events "
            "of one tenant per API key. Money is exact decimal text with its currency."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.ledger = ledger
    app.state.settings = settings
    app.state.streams = streams
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET"],
            allow_headers=["Authorization"],
        )
    _install_error_handlers(app)
    _add_routes(app, streams)
    _document_errors_as_sent(app)
    return app


def _document_errors_as_sent(app: FastAPI) -> None:
    """The OpenAPI document without FastAPI's default 422 validation responses: this API
    answers a malformed parameter with 400 and the usual error body (documented per route)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = document.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LedgerError)
    async def ledger_error(_: Request, error: LedgerError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(CodedError)
    async def coded_error(_: Request, error: CodedError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "field": ".".join(str(part) for part in item.get("loc", ())[1:]),
                "message": item.get("msg", ""),
            }
            for item in error.errors()
        ]
        message = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "bad request"
        return error_response(ApiError("invalid_request", message, problems=problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            code, message = "not_found", f"no such endpoint: {request.method} {request.url.path}"
        elif error.status_code == 405:
            code, message = "method_not_allowed", f"{request.method} is not allowed here"
        else:
            code, message = "invalid_request", str(error.detail)
        return error_response(ApiError(code, message))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        from starter.output import contract_error

        mapped = contract_error(error)
        if mapped.code == "internal_error":
            log.exception("read API request failed")
            mapped = ApiError("internal_error", "internal error (logged by the server)")
        return error_response(mapped)


def _add_routes(app: FastAPI, streams: EventStreams) -> None:
    from fastapi import APIRouter

    router = APIRouter(prefix="/v1")

    @router.get(
        "/healthz",
        tags=["service"],
        summary="Liveness and schema",
        response_model=wire.Health,
        responses=_UNAVAILABLE,
    )
    def healthz(ledger: LedgerDep) -> dict[str, Any]:
        """No key needed. The database answers and its schema is this program's."""
        from starter.db import check_schema

        status = check_schema(ledger.engine)
        return {"status": "ok", "schema_revision": status.current, "events": streams.source}

    @router.get(
        "/accounts/{account_id}",
        tags=["accounts"],
        summary="An account",
        response_model=wire.AccountOut,
        responses=_NOT_FOUND,
    )
    def get_account(
        principal: Principal, ledger: LedgerDep, account_id: Annotated[str, Path()]
    ) -> JSONResponse:
        account = ledger.get_account(tenant_id=principal.tenant_id, account_id=account_id)
        return JSONResponse(wire.account_json(account))

    @router.get(
        "/accounts/{account_id}/balance",
        tags=["accounts"],
        summary="An account's balance",
        response_model=wire.BalanceOut,
        responses=_NOT_FOUND,
    )
    def get_balance(
        principal: Principal,
        ledger: LedgerDep,
        account_id: Annotated[str, Path()],
        as_of: Annotated[
            AwareDatetime | None,
            Query(description="Replay the journal up to this instant (ISO 8601 with a zone)."),
        ] = None,
    ) -> JSONResponse:
        """Posted (journal), held (active holds) and available, with the journal sequence the
        snapshot reflects."""
        balance = ledger.get_balance(account_id, tenant_id=principal.tenant_id, as_of=as_of)
        return JSONResponse(wire.balance_json(balance))

    @router.get(
        "/accounts/{account_id}/entries",
        tags=["accounts"],
        summary="An account's journal entries",
        response_model=wire.EntriesPage,
        responses=_NOT_FOUND,
    )
    def list_entries(
        principal: Principal,
        ledger: LedgerDep,
        account_id: Annotated[str, Path()],
        from_time: Annotated[
            AwareDatetime | None, Query(alias="from", description="Inclusive (ISO 8601).")
        ] = None,
        to_time: Annotated[
            AwareDatetime | None, Query(alias="to", description="Exclusive (ISO 8601).")
        ] = None,
        cursor: Annotated[
            str | None, Query(description="`next_cursor` of the previous page (opaque).")
        ] = None,
        limit: Limit = limits.page_size_default,
        time_field: Annotated[
            Literal["occurred_at", "recorded_at"], Query(description="Which time from/to bound.")
        ] = "occurred_at",
    ) -> JSONResponse:
        """The seed's `list_ledger_entries`: LedgerEntry v1.0 records in journal order,
        `from <= time < to`, keyset-paginated."""
        page = ledger.list_ledger_entries(
            account_id,
            from_time,
            to_time,
            tenant_id=principal.tenant_id,
            cursor=cursor,
            limit=limit,
            time_field=time_field,
        )
        return JSONResponse(wire.entries_page_json(page))

    @router.get(
        "/holds/{hold_id}",
        tags=["holds"],
        summary="A hold",
        response_model=wire.HoldOut,
        responses=_NOT_FOUND,
    )
    def get_hold(
        principal: Principal, ledger: LedgerDep, hold_id: Annotated[str, Path()]
    ) -> JSONResponse:
        return JSONResponse(wire.hold_json(ledger.get_hold(hold_id, tenant_id=principal.tenant_id)))

    @router.get(
        "/holds", tags=["holds"], summary="Holds", response_model=wire.HoldsPage, responses=_KEYED
    )
    def list_holds(
        principal: Principal,
        ledger: LedgerDep,
        state: Annotated[
            Literal["active", "captured", "released", "expired"] | None, Query()
        ] = None,
        account: Annotated[str | None, Query(description="One account's holds.")] = None,
        expires_before: Annotated[
            AwareDatetime | None, Query(description="Holds expiring before this instant.")
        ] = None,
        cursor: Annotated[
            str | None, Query(description="`next_cursor` of the previous page (opaque).")
        ] = None,
        limit: Limit = limits.page_size_default,
    ) -> JSONResponse:
        """The tenant's holds, oldest first, filtered."""

        def page(after: tuple[datetime, str] | None, size: int) -> list[Any]:
            return ledger.list_holds(
                tenant_id=principal.tenant_id,
                state=state,
                account_id=account,
                expires_before=expires_before,
                limit=size,
                after=after,
            )

        found = page(_parse_holds_cursor(cursor), limit)
        more = _probe_more(found, limit, lambda: page(_keyset(found[-1]), 1))
        return JSONResponse(
            {
                "holds": [wire.hold_json(hold) for hold in found],
                "next_cursor": _holds_cursor(found[-1]) if more else None,
            }
        )

    @router.get(
        "/transactions/{transaction_id}",
        tags=["journal"],
        summary="A journal transaction",
        response_model=wire.TransactionOut,
        responses=_NOT_FOUND,
    )
    def get_transaction(
        principal: Principal, ledger: LedgerDep, transaction_id: Annotated[str, Path()]
    ) -> JSONResponse:
        transaction = ledger.get_transaction(transaction_id, tenant_id=principal.tenant_id)
        return JSONResponse(wire.transaction_json(transaction))

    @router.get(
        "/reports",
        tags=["finops"],
        summary="A FinOps report",
        response_model=wire.Report,
        responses=_KEYED,
    )
    def get_report(
        principal: Principal, ledger: LedgerDep, query: Annotated[ReportQuery, Query()]
    ) -> dict[str, Any]:
        """Totals (IN, OUT, net) and counts per group and currency: `compute-ledger report`
        over HTTP, for this key's tenant."""
        from ledger_db.finops import parse_group_by, run_report
        from starter.views import entry_filter, report_document

        options = query.model_dump(exclude={"group_by"})
        question = entry_filter(tenant=principal.tenant_id, option_prefix="", **options)
        dimensions = parse_group_by(query.group_by)
        with ledger.engine.connect() as connection:
            return report_document(run_report(connection, question, dimensions))

    @router.get(
        "/events",
        tags=["events"],
        summary="Billing events",
        response_model=wire.EventsPage,
        responses=_KEYED,
    )
    def list_events(
        principal: Principal,
        ledger: LedgerDep,
        after: Annotated[
            int, Query(ge=0, description="Only events after this outbox sequence.")
        ] = 0,
        limit: Limit = limits.page_size_default,
    ) -> JSONResponse:
        """The tenant's billing events in outbox order (the envelope of DESIGN section 6 plus
        its `sequence`); read on with `after=last_sequence`."""

        def page(after_sequence: int, size: int) -> list[Any]:
            return ledger.list_events(
                tenant_id=principal.tenant_id, after_sequence=after_sequence, limit=size
            )

        found = page(after, limit)
        last = found[-1].sequence if found else after
        return JSONResponse(
            {
                "events": [wire.event_json(event) for event in found],
                "last_sequence": last,
                "has_more": _probe_more(found, limit, lambda: page(last, 1)),
            }
        )

    app.include_router(router)

    @app.websocket("/v1/events/stream")
    async def stream_events(websocket: WebSocket) -> None:
        await streams.serve(websocket)


def _keyset(hold: Any) -> tuple[datetime, str]:
    return hold.created_at, hold.hold_id
