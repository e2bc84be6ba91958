"""The commands that need only the ledger, run as processes with no Temporal server anywhere:
``TEMPORAL_ADDRESS`` points at a closed port, so any command that tried Temporal would fail
with ``temporal_unavailable``. On both engines. Also: explicit migrations and the schema check,
API keys, and ``compute-ledger serve`` answering real HTTP requests."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from cli_helpers import Cli, clean_environment, program, stop

from starter.db import known_revisions
from starter.dev import free_port


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    return Cli(
        tmp_path,
        clean_environment(
            TEMPORAL_ADDRESS=f"127.0.0.1:{_closed_port()}", LEDGER_DATABASE_URL=database_url
        ),
    )


def test_ledger_commands_run_without_temporal(cli: Cli, tmp_path: Path) -> None:
    head = known_revisions()[-1]
    # Nothing migrates implicitly: a fresh database asks for `db upgrade`.
    refused = cli.run("account", "show", "--tenant", "acme")
    error = refused.expect_error("schema_outdated", 8)
    assert "compute-ledger db upgrade" in error["message"]
    status = cli.run("db", "status").expect_ok()
    assert (status["current"], status["head"], status["ok"]) == (None, head, False)
    upgraded = cli.run("db", "upgrade").expect_ok()
    assert (upgraded["from_revision"], upgraded["to_revision"]) == (None, head)
    assert upgraded["applied"] == list(known_revisions())
    again = cli.run("db", "upgrade").expect_ok()
    assert (again["from_revision"], again["applied"]) == (head, [])
    assert cli.run("db", "status").expect_ok()["ok"] is True

    opened = cli.run(
        "account",
        "open",
        "--tenant",
        "acme",
        "--account",
        "buyer",
        "--currency",
        "usd",
        "--idempotency-key",
        "open-buyer",
    ).expect_ok()
    assert (opened["account_id"], opened["currency"], opened["replayed"]) == ("buyer", "USD", False)
    deposit = ("account", "deposit", "--tenant", "acme", "--account", "buyer")
    deposited = cli.run(*deposit, "--amount", "12.50", "--idempotency-key", "d-1").expect_ok()
    assert deposited["balance"]["available"] == "12.50"
    assert deposited["transaction"]["entries"][0]["amount"] == "12.50"
    # The same key and request again: the original result, nothing applied twice.
    replayed = cli.run(*deposit, "--amount", "12.50", "--idempotency-key", "d-1").expect_ok()
    assert replayed["transaction"]["replayed"] is True

    shown = cli.run("account", "show", "--tenant", "acme", "--account", "buyer").expect_ok()
    assert (shown["balance"]["posted"], shown["balance"]["currency"]) == ("12.50", "USD")
    assert set(shown) == {"account", "balance"}
    listed = cli.run("account", "show", "--tenant", "acme").expect_ok()
    assert {row["account"]["account_id"] for row in listed["accounts"]} >= {
        "buyer",
        "@external:USD",
    }
    page = cli.run("entries", "--tenant", "acme", "--account", "buyer").expect_ok()
    assert [entry["amount"] for entry in page["entries"]] == ["12.50"]
    assert page["next_cursor"] is None
    events = cli.run("events", "--tenant", "acme").expect_ok()
    assert events == {"events": [], "last_sequence": 0}
    cli.run("hold", "show", "--tenant", "acme", "--hold", "nope").expect_error("hold_not_found", 3)
    cli.run("account", "show", "--tenant", "other", "--account", "buyer").expect_error(
        "account_not_found", 3
    )
    report = cli.run("report", "--tenant", "acme", "--group-by", "reason").expect_ok()
    assert report["rows"][0]["reason"] == "TOP_UP"
    assert cli.run("audit").expect_ok()["ok"] is True
    exported = cli.run(
        "export", "--tenant", "acme", "--format", "csv", "--output", str(tmp_path / "out.csv")
    ).expect_ok()
    assert exported["entries"] == 1

    human = cli.run("account", "show", "--tenant", "acme", "--account", "buyer", json_mode=False)
    assert human.status == 0 and "12.50" in human.stdout, human.stderr

    # The commands that do need Temporal say so with their stable code, quickly.
    started = time.monotonic()
    cli.run(
        "freeze",
        "--tenant",
        "acme",
        "--account",
        "buyer",
        "--amount",
        "1.00",
        "--idempotency-key",
        "f-1",
    ).expect_error("temporal_unavailable", 8)
    cli.run("hold", "show", "--tenant", "acme", "--hold", "h", "--workflow").expect_error(
        "temporal_unavailable", 8
    )
    assert time.monotonic() - started < 60


def test_a_database_newer_than_the_program_is_schema_unknown(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    cli = Cli(tmp_path, clean_environment(LEDGER_DATABASE_URL=url))
    cli.run("db", "upgrade").expect_ok()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    error = cli.run("entries", "--tenant", "t", "--account", "a").expect_error("schema_unknown", 8)
    assert "9999" in error["message"]
    status = cli.run("db", "status").expect_ok()
    assert (status["current"], status["ok"]) == ("9999", False)
    cli.run("db", "upgrade").expect_error("schema_unknown", 8)


def test_apikeys_and_serve(cli: Cli) -> None:
    cli.run("db", "upgrade").expect_ok()
    cli.run(
        "account",
        "open",
        "--tenant",
        "acme",
        "--account",
        "buyer",
        "--currency",
        "EUR",
        "--idempotency-key",
        "o",
    ).expect_ok()
    created = cli.run("apikey", "create", "--tenant", "acme", "--name", "dashboard").expect_ok()
    assert set(created) == {"key", "key_id", "tenant_id", "name", "created_at", "revoked_at"}
    assert created["key"].startswith(created["key_id"] + "_")
    assert (created["tenant_id"], created["name"], created["revoked_at"]) == (
        "acme",
        "dashboard",
        None,
    )
    other = cli.run("apikey", "create", "--tenant", "other").expect_ok()
    listed = cli.run("apikey", "list", "--tenant", "acme").expect_ok()["api_keys"]
    assert [item["key_id"] for item in listed] == [created["key_id"]]
    assert "key" not in listed[0]  # the key itself is never shown again

    port = free_port()
    server = subprocess.Popen(
        [*program(), "serve", "--port", str(port), "--json"],
        cwd=cli.directory,
        env=cli.environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        running = json.loads(server.stdout.readline())
        assert running["serve"] == "running"
        assert running["url"] == f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {created['key']}"}
        with httpx.Client(base_url=running["url"], timeout=30) as client:
            balance = client.get("/v1/accounts/buyer/balance", headers=headers)
            assert balance.status_code == 200, balance.text
            assert (balance.json()["available"], balance.json()["currency"]) == ("0.00", "EUR")
            foreign = client.get(
                "/v1/accounts/buyer/balance", headers={"Authorization": f"Bearer {other['key']}"}
            )
            assert (foreign.status_code, foreign.json()["error"]["code"]) == (
                404,
                "account_not_found",
            )
            revoked = cli.run("apikey", "revoke", "--key-id", created["key_id"]).expect_ok()
            assert revoked["revoked_at"] is not None
            after = client.get("/v1/accounts/buyer/balance", headers=headers)
            assert after.status_code == 401
        # Revoking again keeps the first revocation; an unknown key is api_key_not_found.
        again = cli.run("apikey", "revoke", "--key-id", created["key_id"]).expect_ok()
        assert again["revoked_at"] == revoked["revoked_at"]
        cli.run("apikey", "revoke", "--key-id", "clk_000000000000").expect_error(
            "api_key_not_found", 3
        )
        cli.run("apikey", "revoke", "--key-id", other["key_id"], "--tenant", "acme").expect_error(
            "api_key_not_found", 3
        )
        assert cli.run("apikey", "list", "--active").expect_ok()["api_keys"] == [
            {key: value for key, value in other.items() if key != "key"}
        ]
        # The port is taken now: a second server says so.
        cli.run("serve", "--port", str(port)).expect_error("usage_error", 2)
    finally:
        status, stdout, stderr = stop(server)
    assert status == 0, stderr
    # stdout carries JSON Lines only (uvicorn's own log, access lines included, is on stderr).
    lines = [json.loads(line) for line in stdout.strip().splitlines()]
    assert lines[-1] == {"serve": "stopped"}
    assert '"GET /v1/accounts/buyer/balance HTTP/1.1" 200' in stderr
