"""Hypothesis fuzz of the ``compute-ledger`` command line: random commands, options in any
order, values of any unicode (NUL and lone surrogates included in-process), sizes around the
limits, boundary amounts and times, missing and unknown options, stray arguments.

The only outcomes are a result (exit 0) or a typed refusal: an exit status of the one table
(``starter.error_codes``: 2 usage, 3 not found, 4 invalid, 5 conflict, 6 funds, 7 integrity,
8 unavailable), never 1 (a bug) and never a traceback; with ``--json`` stdout is JSON and a
failure is ``{"error": {"code", "message"}}`` with a known code; a refused command writes
nothing (every ledger table identical before and after).

Most examples run in-process (``starter.cli.main``, the console script's own entry point, with
streams captured); a sample runs as real subprocesses, where argv cannot carry NUL. Temporal is
a closed port, so the saga commands end at their validation or at ``temporal_unavailable``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fuzz_helpers import AMOUNT_TEXT, TEXT, changed_tables, examples, take_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger_db import Ledger
from starter.dev import free_port
from starter.error_codes import ERROR_STATUSES

pytestmark = pytest.mark.fuzz

REPOSITORY = Path(__file__).resolve().parents[2]
TENANT = "fz-cli"
ALLOWED_EXITS = {0, 2, 3, 4, 5, 6, 7, 8}

# Options every command shares are added by the generator; these are each command's own.
# (Long-running or server commands are left out: worker, dev, demo, serve, events --follow,
# schedules apply, db upgrade/grant.)
COMMANDS: dict[tuple[str, ...], dict[str, str]] = {
    ("freeze",): {
        "--tenant": "tenant",
        "--account": "account",
        "--amount": "amount",
        "--currency": "currency",
        "--reason": "text",
        "--ttl": "int",
        "--payee": "account",
        "--order": "text",
        "--idempotency-key": "key",
        "--timeout": "number",
    },
    ("capture",): {
        "--tenant": "tenant",
        "--hold": "hold",
        "--order": "text",
        "--amount": "amount",
        "--currency": "currency",
        "--payee": "account",
        "--wait": "flag",
        "--idempotency-key": "key",
        "--timeout": "number",
    },
    ("release",): {"--tenant": "tenant", "--hold": "hold", "--idempotency-key": "key"},
    ("extend",): {
        "--tenant": "tenant",
        "--hold": "hold",
        "--ttl": "int",
        "--idempotency-key": "key",
    },
    ("retry-payout",): {"--tenant": "tenant", "--hold": "hold", "--idempotency-key": "key"},
    ("entries",): {
        "--tenant": "tenant",
        "--account": "account",
        "--from": "time",
        "--to": "time",
        "--cursor": "text",
        "--limit": "int",
    },
    ("events",): {"--tenant": "tenant", "--after": "int", "--limit": "int", "--unsent": "flag"},
    ("relay",): {"--tenant": "tenant"},
    ("import",): {"PATH": "path", "--format": "format", "--tenant": "tenant", "--dry-run": "flag"},
    ("export",): {
        "--format": "format",
        "--output": "output",
        "--tenant": "tenant",
        "--account": "account",
        "--currency": "currency",
        "--month": "month",
        "--from": "time",
        "--to": "time",
        "--time-field": "time_field",
        "--reason": "text",
        "--tag": "text",
        "--include-internal": "flag",
    },
    ("report",): {
        "--tenant": "tenant",
        "--project": "text",
        "--env": "text",
        "--account": "account",
        "--currency": "currency",
        "--month": "month",
        "--from": "time",
        "--to": "time",
        "--time-field": "time_field",
        "--group-by": "group_by",
        "--include-internal": "flag",
    },
    ("statement",): {
        "--tenant": "tenant",
        "--month": "month",
        "--account": "account",
        "--format": "format",
        "--output": "output",
    },
    ("audit",): {"--scope": "text", "--expire-orphans": "flag"},
    ("reconcile",): {
        "--bill": "path",
        "--tenant": "tenant",
        "--format": "format",
        "--output": "output",
    },
    ("reverse",): {
        "--tenant": "tenant",
        "--transaction": "text",
        "--idempotency-key": "key",
        "--reason": "text",
    },
    ("allocate",): {
        "--tenant": "tenant",
        "--asset": "text",
        "--amount": "amount",
        "--currency": "currency",
        "--weights": "weights",
        "--weight-name": "text",
        "--occurred-at": "time",
        "--idempotency-key": "key",
        "--dry-run": "flag",
    },
    ("account", "open"): {
        "--tenant": "tenant",
        "--currency": "currency",
        "--account": "account",
        "--kind": "kind",
        "--name": "text",
        "--overdraft-limit": "amount",
        "--idempotency-key": "key",
    },
    ("account", "deposit"): {
        "--tenant": "tenant",
        "--account": "account",
        "--amount": "amount",
        "--currency": "currency",
        "--reason": "text",
        "--external-ref": "text",
        "--idempotency-key": "key",
    },
    ("account", "show"): {"--tenant": "tenant", "--account": "account"},
    ("hold", "show"): {"--tenant": "tenant", "--hold": "hold", "--workflow": "flag"},
    ("apikey", "create"): {"--tenant": "tenant", "--name": "text"},
    ("apikey", "list"): {"--tenant": "tenant", "--active": "flag"},
    ("apikey", "revoke"): {"--key-id": "text", "--tenant": "tenant"},
    ("db", "status"): {},
}


@dataclass
class Setup:
    ledger: Ledger
    directory: Path
    environment: dict[str, str]
    hold_id: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("cli-fuzz")
    url = f"sqlite:///{directory}/ledger.db"
    ledger = Ledger.from_url(url)
    ledger.ensure_platform_accounts(tenant_id=TENANT, currency="USD")
    for account in ("buyer", "payee"):
        ledger.open_account(
            tenant_id=TENANT, currency="USD", idempotency_key=f"o-{account}", account_id=account
        )
    ledger.deposit("buyer", "1000.00", tenant_id=TENANT, idempotency_key="d")
    hold = ledger.freeze(
        "buyer", "5.00", "N", tenant_id=TENANT, idempotency_key="f", ttl_seconds=3600
    )
    (directory / "bill.csv").write_text("external_ref,amount,currency\nx,1.00,USD\n")
    (directory / "junk.jsonl").write_bytes(b'{"a": 1}\n\x00\xff\n[1,2]\n')
    environment = {
        "LEDGER_DATABASE_URL": url,
        # Nobody listens there: saga commands end at temporal_unavailable (exit 8).
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "NATS_URL": "",
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "LEDGER_FINOPS_OUTPUT_DIR": str(directory / "out"),
    }
    try:
        yield Setup(ledger, directory, environment, hold.hold_id)
    finally:
        ledger.close()


def _value(kind: str, setup: Setup) -> st.SearchStrategy[str]:
    junk = TEXT.filter(lambda text: isinstance(text, str))
    valid: dict[str, st.SearchStrategy[str]] = {
        "tenant": st.sampled_from([TENANT, "other-tenant"]),
        "account": st.sampled_from(["buyer", "payee", "@escrow:USD", "nobody"]),
        "amount": st.sampled_from(AMOUNT_TEXT),
        "currency": st.sampled_from(["USD", "EUR", "usd", "XXX"]),
        "hold": st.sampled_from([setup.hold_id, "hold-unknown"]),
        "key": st.builds(lambda: uuid.uuid4().hex),
        "int": st.one_of(
            st.integers(-(2**70), 2**70).map(str),
            st.sampled_from(["0", "1", "-1", "1e3", "2147483648", "9223372036854775808"]),
        ),
        "number": st.sampled_from(["0", "0.1", "-1", "nan", "inf", "1e309", "5"]),
        "time": st.sampled_from(
            [
                "2026-01-01T00:00:00Z",
                "2026-01-01",
                "1970-01-01T00:00:00+00:00",
                "9999-12-31T23:59:59.999999Z",
                "0001-01-01T00:00:00Z",
                "2026-02-30T00:00:00Z",
                "now",
                "2026-01-01T00:00:00",
            ]
        ),
        "month": st.sampled_from(["2026-01", "2026-13", "1969-12", "9999-12", "26-1", "2026-1"]),
        "format": st.sampled_from(["jsonl", "json", "csv", "beancount", "pdf", "xml"]),
        "output": st.sampled_from(["-", str(setup.directory / "out" / "x"), "/proc/nope/x"]),
        "time_field": st.sampled_from(["occurred_at", "recorded_at", "sent_at"]),
        "group_by": st.sampled_from(["account", "month,currency", "tenant,bogus", ",", ""]),
        "kind": st.sampled_from(["agent", "escrow", "revenue", "external", "hold", "operating"]),
        "weights": st.sampled_from(["a=1,b=2", "a=0", "a=-1", "=", "a=1,a=2", "a=1e999"]),
        "path": st.sampled_from(
            [
                str(setup.directory / "bill.csv"),
                str(setup.directory / "junk.jsonl"),
                str(setup.directory / "missing.csv"),
                str(setup.directory),
                "/dev/null",
            ]
        ),
        "text": st.sampled_from(["TOP_UP", "NEGOTIATION", "x", "open", "all"]),
        "flag": st.just(""),
    }
    return st.one_of(valid[kind], valid[kind], junk)


@st.composite
def command_lines(draw: st.DrawFn, setup: Setup, *, nul_free: bool = False) -> list[str]:
    path = draw(st.sampled_from(sorted(COMMANDS)))
    options = COMMANDS[path]
    chosen = draw(st.lists(st.sampled_from(sorted(options)), unique=True)) if options else []
    # Required options most of the time: the deeper code is reached, not only the parser.
    if draw(st.integers(0, 3)) > 0:
        chosen = sorted(
            set(chosen)
            | {name for name in options if name in ("--tenant", "--hold", "--account", "--amount")}
        )
    tokens: list[list[str]] = []
    for name in chosen:
        kind = options[name]
        if kind == "flag":
            tokens.append([name])
        elif name == "PATH":
            tokens.append([draw(_value(kind, setup))])
        else:
            tokens.append([name, draw(_value(kind, setup))])
    tokens = draw(st.permutations(tokens)) if tokens else tokens
    line = [*path, *(token for group in tokens for token in group)]
    # A stray option or token now and then (a usage error is then the right answer).
    extra: list[str] = []
    if draw(st.integers(0, 3)) == 0:
        extra = draw(
            st.lists(
                st.one_of(
                    st.sampled_from(["--bogus", "-x", "--", "--json", "--help"]),
                    TEXT.filter(lambda t: isinstance(t, str)),
                ),
                max_size=2,
            )
        )
    line += extra
    if draw(st.booleans()):
        line.append("--json")
    if nul_free:
        line = [token.replace("\x00", "") for token in line]
        line = [
            token.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for token in line
        ]
    return line


def _check(
    line: list[str], status: Any, stdout: str, stderr: str, before: Any, setup: Setup
) -> None:
    where = f"{line!r} exited {status}\nstdout: {stdout[-1500:]}\nstderr: {stderr[-1500:]}"
    assert status in ALLOWED_EXITS, where
    assert "Traceback" not in stdout + stderr, where
    if "--json" in line and "--help" not in line and status != 0:
        # Lines end at "\n" only: str.splitlines() would also break at U+0085 or U+2028 inside
        # a JSON string that carries one.
        body = json.loads(stdout.strip().split("\n")[-1]) if stdout.strip() else None
        assert isinstance(body, dict) and "error" in body, where
        assert body["error"]["code"] in ERROR_STATUSES, where
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], where
    if status != 0:
        after = take_snapshot(setup.ledger)
        assert after == before, f"refused but wrote {changed_tables(before, after)}: {where}"


def _run_in_process(line: list[str], setup: Setup) -> tuple[Any, str, str]:
    from starter import cli

    runner = CliRunner()
    with runner.isolation(env=setup.environment) as streams:
        # A real process's streams escape what they cannot encode (a surrogate-escaped argv byte
        # echoed in a message); the runner's are strict, which no user ever meets.
        for stream in (sys.stdout, sys.stderr):
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                reconfigure(errors="backslashreplace")
        cwd = os.getcwd()
        os.chdir(setup.directory)
        try:
            cli.main(line)
            status: Any = 0
        except SystemExit as exiting:
            status = exiting.code if exiting.code is not None else 0
        finally:
            os.chdir(cwd)
        stdout = streams[0].getvalue().decode("utf-8", "replace")
        stderr = streams[1].getvalue().decode("utf-8", "replace")
    return status, stdout, stderr


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
def test_any_command_line_is_a_result_or_a_typed_refusal_in_process(
    setup: Setup, data: st.DataObject
) -> None:
    line = data.draw(command_lines(setup), label="argv")
    before = take_snapshot(setup.ledger)
    status, stdout, stderr = _run_in_process(line, setup)
    _check(line, status, stdout, stderr, before, setup)


@settings(
    max_examples=examples(8),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
def test_a_sample_of_command_lines_as_real_processes(setup: Setup, data: st.DataObject) -> None:
    line = data.draw(command_lines(setup, nul_free=True), label="argv")
    script = Path(sys.executable).parent / "compute-ledger"
    before = take_snapshot(setup.ledger)
    completed = subprocess.run(
        [str(script), *line],
        cwd=setup.directory,
        env={**os.environ, **setup.environment, "PYTHONPATH": str(REPOSITORY)},
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        check=False,
    )
    _check(line, completed.returncode, completed.stdout, completed.stderr, before, setup)
