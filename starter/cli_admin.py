"""Operator commands of ``compute-ledger``: the database (``db upgrade|status|grant``), journal
checkpoints (``checkpoint``), the read API's keys (``apikey create|list|revoke``) and the read
API itself (``serve``).

None of them talks to Temporal. They follow the output and error contract of ``starter.output``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from starter.output import CliError, JsonOption, emit, key_value_table, records_table, run_command
from starter.output import stderr as stderr_console

__all__ = ["register_admin"]

db_app = typer.Typer(help="The ledger database: migrations, roles.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys of the read API (one tenant each).", no_args_is_help=True)

TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant the key reads.")]


# ---------------------------------------------------------------------------------------------
# db upgrade | status | grant
# ---------------------------------------------------------------------------------------------


def _status_json(status: Any) -> dict[str, Any]:
    return {
        "database_url": status.database_url,
        "current": status.current,
        "head": status.head,
        "pending": list(status.pending),
        "ok": status.ok,
    }


@db_app.command("upgrade")
@run_command
def db_upgrade(json_output: JsonOption = False) -> None:
    """Bring the ledger's schema to this program's newest revision (idempotent).

    Every other command only checks the revision and asks for this when it is behind; ``dev``,
    ``demo`` and ``worker`` run it themselves.
    """
    from starter.db import upgrade

    before, after = upgrade()
    emit(
        {
            "database_url": after.database_url,
            "from_revision": before.current,
            "to_revision": after.current,
            "applied": list(before.pending),
        },
        json_output,
        title="db upgrade",
    )


@db_app.command("status")
@run_command
def db_status(json_output: JsonOption = False) -> None:
    """Show the schema revision of the ledger database against this program's (one query)."""
    from ledger_db import Ledger
    from starter.config import database_url
    from starter.db import schema_status

    ledger = Ledger.from_url(database_url(), migrate=False)
    try:
        status = schema_status(ledger.engine)
    finally:
        ledger.close()
    emit(_status_json(status), json_output, title="db status")


@db_app.command("grant")
@run_command
def db_grant(
    role: Annotated[str, typer.Option("--role", help="The application's role.")] = "ledger_app",
    password: Annotated[
        str | None,
        typer.Option("--password", help="Its password (visible to `ps`: prefer --password-stdin)."),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """PostgreSQL: create or update a DML-only role for the application to write with.

    Run as the schema's owner, after ``db upgrade``. The role may SELECT/INSERT/UPDATE/DELETE
    the ledger's tables (only SELECT/INSERT on the journal) and use their sequences; it owns
    nothing, so it cannot ALTER tables, disable or drop the append-only triggers, or TRUNCATE.
    """
    from ledger_db.roles import grant_application_role
    from starter.db import opened_ledger

    if password is not None and password_stdin:
        raise CliError("usage_error", "--password and --password-stdin exclude each other")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    with opened_ledger() as ledger:
        if ledger.engine.dialect.name != "postgresql":
            raise CliError(
                "usage_error",
                "db grant is for PostgreSQL: SQLite has no roles (its file's permissions are "
                "the access control)",
            )
        try:
            result = grant_application_role(ledger.engine, role, password=password)
        except ValueError as error:
            raise CliError("usage_error", str(error)) from error
    emit(
        {
            "role": result.role,
            "created": result.created,
            "password_set": result.password_set,
            "schema": result.schema,
            "owner": result.owner,
            "journal_tables": list(result.journal_tables),
        },
        json_output,
        title="db grant",
    )


# ---------------------------------------------------------------------------------------------
# checkpoint
# ---------------------------------------------------------------------------------------------


@run_command
def checkpoint_command(
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the checkpoint JSON to this file.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Take a checkpoint: every tenant chain's head and their Merkle root, stored and published.

    It is stored in the database and enqueued as a LEDGER_CHECKPOINT event (subject
    billing._ledger.LEDGER_CHECKPOINT; the relay sends it). Keep a copy outside the database:
    ``audit --checkpoint FILE`` checks the books against it. ``--json`` prints the document.
    """
    from ledger_db.checkpoint import take_checkpoint
    from starter.db import opened_ledger

    with opened_ledger() as ledger:
        checkpoint, _ = take_checkpoint(ledger.engine, ledger.clock())
    if out is not None:
        try:
            out.write_text(checkpoint.to_json() + "\n", encoding="utf-8")
        except OSError as error:
            raise CliError("usage_error", f"cannot write {out}: {error.strerror}") from error
    document = checkpoint.document()

    def render(body: dict[str, Any]) -> Any:
        from rich.console import Group

        summary = {key: value for key, value in body.items() if key != "chains"}
        if out is not None:
            summary["written_to"] = str(out)
        return Group(
            key_value_table(summary, title="checkpoint"),
            records_table(
                body["chains"], columns=["tenant_id", "sequence", "hash"], title="chains"
            ),
        )

    emit(document, json_output, render=render)


# ---------------------------------------------------------------------------------------------
# apikey create | list | revoke
# ---------------------------------------------------------------------------------------------


def _key_json(record: Any) -> dict[str, Any]:
    return record.model_dump(mode="json")  # type: ignore[no-any-return]


@apikey_app.command("create")
@run_command
def apikey_create(
    tenant: TenantOption,
    name: Annotated[
        str | None, typer.Option("--name", help="What the key is for (shown in lists).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Make an API key for one tenant; the key is printed this once and never stored.

    Every call makes a new key (a retry cannot show the secret again: revoke a spare one).
    """
    from ledger_db.api_keys import create_api_key
    from starter.db import opened_ledger

    with opened_ledger() as ledger:
        created = create_api_key(ledger.engine, tenant_id=tenant, name=name, clock=ledger.clock)
    body = {"key": created.key, **_key_json(created.api_key)}

    def render(_: Any) -> Any:
        from rich.console import Group

        return Group(
            key_value_table(body, title="API key"),
            "Copy the key now: it is not stored and cannot be shown again.",
        )

    emit(body, json_output, render=render)


@apikey_app.command("list")
@run_command
def apikey_list(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="One tenant's keys (every key when omitted).")
    ] = None,
    active: Annotated[bool, typer.Option("--active", help="Leave out revoked keys.")] = False,
    json_output: JsonOption = False,
) -> None:
    """List API keys (their public IDs, never the keys)."""
    from ledger_db.api_keys import list_api_keys
    from starter.db import opened_ledger

    with opened_ledger() as ledger:
        found = list_api_keys(ledger.engine, tenant_id=tenant, include_revoked=not active)
    keys = [_key_json(record) for record in found]
    emit(
        {"api_keys": keys},
        json_output,
        render=lambda _: records_table(
            keys, columns=["key_id", "tenant_id", "name", "created_at", "revoked_at"], title="keys"
        ),
    )


@apikey_app.command("revoke")
@run_command
def apikey_revoke(
    key_id: Annotated[str, typer.Option("--key-id", help="The key's ID (clk_...).")],
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Refuse unless the key is this tenant's.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Revoke an API key: every later request with it gets 401 (open streams close)."""
    from ledger_db.api_keys import revoke_api_key
    from starter.db import opened_ledger

    with opened_ledger() as ledger:
        revoked = revoke_api_key(ledger.engine, key_id, tenant_id=tenant, clock=ledger.clock)
    emit(_key_json(revoked), json_output, title="API key revoked")


# ---------------------------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------------------------


@run_command
def serve_command(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (LEDGER_API_HOST).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Port (LEDGER_API_PORT, default 8700)."),
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            help="One log line per request on stderr (LEDGER_API_ACCESS_LOG, default on).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Serve the read API (HTTP JSON under /v1, WebSocket event stream) until Ctrl-C.

    OpenAPI at /openapi.json, interactive docs at /docs. Requests need an API key
    (``compute-ledger apikey create``); each key reads one tenant.
    """
    import asyncio
    import dataclasses

    from starter.api.server import ApiServer, event_loop_factory
    from starter.config import ApiSettings
    from starter.db import opened_ledger
    from starter.output import emit_line

    settings = ApiSettings.from_env()
    settings = dataclasses.replace(
        settings,
        host=host or settings.host,
        port=port or settings.port,
        access_log=settings.access_log if access_log is None else access_log,
    )

    async def serve(ledger: Any) -> None:
        server = ApiServer(ledger, settings)
        await server.start()
        details = {
            "url": server.url,
            "openapi": f"{server.url}/openapi.json",
            "docs": f"{server.url}/docs",
            "database_url": ledger.engine.url.render_as_string(hide_password=True),
            "events": server.app.state.streams.source,
        }
        if json_output:
            emit_line({"serve": "running", **details})
        else:
            emit(details, False, title="compute-ledger serve")
            stderr_console().print("Ctrl-C stops it.")
        await server.wait_stopped(stop_on_signals=True)

    with opened_ledger() as ledger, asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(serve(ledger))
    if json_output:
        emit_line({"serve": "stopped"})


def register_admin(app: typer.Typer) -> None:
    """Adds the database, API key and serve commands to the ``compute-ledger`` application."""
    app.add_typer(db_app, name="db")
    app.command("checkpoint")(checkpoint_command)
    app.add_typer(apikey_app, name="apikey")
    app.command("serve")(serve_command)
