"""Pure tests of the command line: duration parsing, the error contract, the output helpers.

Nothing here needs a server: the commands under test fail before they would connect.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ledger_db.errors import ERROR_CODES, AccountNotFound, InsufficientFunds
from starter import cli
from starter.output import (
    EXIT_CODES,
    CliError,
    emit,
    exit_code_for,
    fail,
    missing_exit_codes,
    run_command,
    to_jsonable,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("0s", 0),
        ("05m", 300),
    ],
)
def test_parse_duration_accepts_unit_suffixed_integers(text: str, seconds: int) -> None:
    assert cli.parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "30",
        "s",
        "1.5h",
        "-5s",
        " 5s",
        "5s ",
        "5 s",
        "5S",
        "30m1h",
        "1h1h",
        "5sec",
        "1w",
        "2h 30m",
        "1e3s",
        "12345678901s",
    ],
)
def test_parse_duration_refuses_anything_else(text: str) -> None:
    with pytest.raises(CliError) as caught:
        cli.parse_duration(text)
    assert caught.value.code == "invalid_duration"


def test_every_ledger_error_code_has_an_exit_status() -> None:
    assert set(ERROR_CODES) <= set(EXIT_CODES)
    assert missing_exit_codes() == []
    assert all(status != 0 for status in EXIT_CODES.values())
    assert exit_code_for("account_not_found") == 3
    assert exit_code_for("insufficient_funds") == 6
    assert exit_code_for("idempotency_key_required") == 2
    assert exit_code_for("no_such_code") == 1


def test_require_idempotency_key() -> None:
    assert cli.require_idempotency_key("k-1") == "k-1"
    for missing in (None, ""):
        with pytest.raises(CliError) as caught:
            cli.require_idempotency_key(missing)
        assert caught.value.code == "idempotency_key_required"
    assert cli.read_only_idempotency_key(None).startswith("cli-read-")
    assert cli.read_only_idempotency_key("mine") == "mine"


def test_to_jsonable_keeps_money_exact() -> None:
    data = {
        "amount": Decimal("0.10"),
        "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "items": (Decimal("1.005"), 2),
    }
    assert to_jsonable(data) == {
        "amount": "0.10",
        "at": "2026-01-02T03:04:05+00:00",
        "items": ["1.005", 2],
    }


def test_emit_json_prints_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    emit({"amount": Decimal("25.50"), "currency": "USD"}, True)
    assert json.loads(capsys.readouterr().out) == {"amount": "25.50", "currency": "USD"}


def test_fail_json_prints_the_error_document(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    with pytest.raises(typer.Exit) as caught:
        fail(AccountNotFound("account nope not found", account_id="nope"), True)
    assert caught.value.exit_code == 3
    body = json.loads(capsys.readouterr().out)
    assert body["error"]["code"] == "account_not_found"
    assert body["error"]["message"] == "account nope not found"


def test_fail_human_prints_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    with pytest.raises(typer.Exit) as caught:
        fail(InsufficientFunds("not enough"), False)
    assert caught.value.exit_code == 6
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "insufficient_funds" in captured.err


def test_run_command_maps_ledger_errors_of_async_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import typer

    @run_command
    async def command(json_output: bool = False) -> None:
        raise InsufficientFunds("available 1.00 USD < 2.00 USD")

    with pytest.raises(typer.Exit) as caught:
        command(json_output=True)
    assert caught.value.exit_code == 6
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "insufficient_funds"


def test_run_command_maps_unexpected_errors_to_internal_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import typer

    @run_command
    def command(json_output: bool = False) -> None:
        raise ZeroDivisionError("boom")

    with pytest.raises(typer.Exit) as caught:
        command(json_output=True)
    assert caught.value.exit_code == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "internal_error"


def _run_main(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as caught:
        cli.main(arguments)
    code = caught.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments",
    [
        ["freeze", "--tenant", "t", "--account", "a", "--amount", "1.00"],
        ["capture", "--tenant", "t", "--hold", "h", "--order", "o"],
        ["release", "--tenant", "t", "--hold", "h"],
        ["account", "open", "--tenant", "t", "--currency", "USD"],
        ["account", "deposit", "--tenant", "t", "--account", "a", "--amount", "1.00"],
    ],
)
def test_mutating_commands_refuse_a_missing_idempotency_key(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = _run_main([*arguments, "--json"], capsys)
    assert status == 2
    assert json.loads(out) == {
        "error": {
            "code": "idempotency_key_required",
            "message": json.loads(out)["error"]["message"],
        }
    }


def test_usage_errors_follow_the_error_contract_in_json_mode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out = _run_main(["freeze", "--account", "a", "--amount", "1", "--json"], capsys)
    assert status == 2
    body = json.loads(out)
    assert body["error"]["code"] == "usage_error"
    assert "--tenant" in body["error"]["message"]


def test_a_bad_ttl_is_refused_before_anything_is_sent(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = [
        "freeze",
        "--tenant",
        "t",
        "--account",
        "a",
        "--amount",
        "1.00",
        "--idempotency-key",
        "k",
        "--ttl",
        "90",
        "--json",
    ]
    status, out = _run_main(arguments, capsys)
    assert status == 2
    assert json.loads(out)["error"]["code"] == "invalid_duration"


def test_default_database_url_is_under_the_working_directory(tmp_path: object) -> None:
    from pathlib import Path

    url = cli.default_database_url(Path(str(tmp_path)))
    assert url == f"sqlite:///{Path(str(tmp_path)).resolve()}/.compute-ledger/ledger.db"


def test_every_command_is_registered() -> None:
    commands = {command.name for command in cli.app.registered_commands}
    groups = {group.name for group in cli.app.registered_groups}
    assert {"freeze", "capture", "release", "entries", "events", "relay", "serve"} <= commands
    assert {"import", "export", "report", "statement", "audit", "reconcile"} <= commands
    assert {"account", "hold", "db", "apikey", "schedules"} <= groups


def test_only_the_command_asked_for_is_built() -> None:
    # Building every command costs more than a ledger read: main() builds the one it runs.
    narrowed = cli._app_for(["account", "show", "--tenant", "t"])
    assert [group.name for group in narrowed.registered_groups] == ["account"]
    assert narrowed.registered_commands == []
    assert [command.name for command in cli._app_for(["entries"]).registered_commands] == [
        "entries"
    ]
    # No command, or an unknown one: the whole application (its help, its error message).
    assert cli._app_for(["--help"]) is cli.app
    assert cli._app_for(["frezee"]) is cli.app


def test_a_ledger_read_does_not_load_temporal_alembic_or_rich(tmp_path: object) -> None:
    import subprocess
    import sys

    from cli_helpers import clean_environment

    url = f"sqlite:///{tmp_path}/l.db"
    from ledger_db import Ledger

    ledger = Ledger.from_url(url)
    ledger.open_account(tenant_id="t", account_id="a", currency="USD", idempotency_key="k")
    ledger.close()
    probe = (
        "import sys; from starter.cli import main\n"
        "try:\n    main(['account', 'show', '--tenant', 't', '--account', 'a', '--json'])\n"
        "except SystemExit as exiting:\n    assert exiting.code == 0, exiting.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'temporalio', 'alembic', 'rich', 'fastapi', 'uvicorn', 'nats', 'workflows', "
        "'activities'}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        env=clean_environment(LEDGER_DATABASE_URL=url),
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip().splitlines()[-1] == "[]", completed.stdout
