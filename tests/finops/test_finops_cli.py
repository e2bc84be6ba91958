"""The FinOps commands end to end (real SQLite ledger, no Temporal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from finops_data import EXAMPLES
from typer.testing import CliRunner

from ledger_db import Ledger
from starter.cli_finops import register_finops


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("LEDGER_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.chdir(tmp_path)
    # The commands check the schema; migrating is `compute-ledger db upgrade`'s job.
    Ledger.from_url(f"sqlite:///{tmp_path}/cli.db").close()
    app = typer.Typer()
    register_finops(app)
    runner = CliRunner()

    def invoke(*arguments: str) -> tuple[int, Any]:
        result = runner.invoke(app, list(arguments))
        output = result.stdout.strip()
        try:
            return result.exit_code, json.loads(output)
        except json.JSONDecodeError:
            return result.exit_code, output

    return invoke


def test_import_report_export_statement_audit(run: Any, tmp_path: Path) -> None:
    source = tmp_path / "examples.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in EXAMPLES))
    code, body = run("import", str(source), "--json")
    assert (code, body["applied"]) == (0, 3)
    code, body = run("import", str(source), "--json")
    assert (code, body["applied"], body["already_present"]) == (0, 0, 3)
    code, body = run(
        "report", "--tenant", "tenant_a", "--group-by", "category", "--month", "2025-01", "--json"
    )
    assert code == 0
    assert {row["category"]: row["net"] for row in body["rows"]} == {
        "CLOUD_COST": "-0.05",
        "NETWORK_COST": "-20.00",
        "PRODUCT_REVENUE": "120.00",
    }
    code, body = run(
        "export",
        "--format",
        "csv",
        "--tenant",
        "tenant_a",
        "--output",
        str(tmp_path / "out.csv"),
        "--json",
    )
    assert (code, body["entries"]) == (0, 3)
    code, body = run(
        "export", "--format", "beancount", "--output", str(tmp_path / "out.beancount"), "--json"
    )
    assert code == 0 and (tmp_path / "out.beancount").exists()
    # The statement month is the one the ledger recorded the entries in (its own clock).
    month = (tmp_path / "out.csv").read_text().splitlines()[1].rsplit(",", 1)[1][:7]
    code, body = run(
        "statement",
        "--tenant",
        "tenant_a",
        "--month",
        month,
        "--format",
        "pdf",
        "--output",
        str(tmp_path / "s.pdf"),
        "--json",
    )
    assert code == 0 and (tmp_path / "s.pdf").read_bytes().startswith(b"%PDF")
    code, body = run("audit", "--json")
    assert (code, body["ok"]) == (0, True)


def test_errors_follow_the_contract(run: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    record = {**EXAMPLES[0], "amount": "-1"}
    bad.write_text(json.dumps(record) + "\n")
    code, body = run("import", str(bad), "--json")
    assert code == 4
    assert body["error"]["code"] == "invalid_entry"
    assert body["error"]["details"]["problems"][0]["field"] == "amount"
    code, body = run("report", "--group-by", "weekday", "--json")
    assert code == 4 and body["error"]["code"] == "invalid_entry"
    code, body = run("reverse", "--tenant", "tenant_a", "--transaction", "nope", "--json")
    assert body["error"]["code"] == "idempotency_key_required" and code == 2


def test_allocate_reverse_and_reconcile(run: Any, tmp_path: Path) -> None:
    code, body = run(
        "allocate",
        "--tenant",
        "tenant_a",
        "--asset",
        "vps-asset-id-1",
        "--amount",
        "10.00",
        "--currency",
        "USD",
        "--weights",
        "task-a=120000,task-b=60000,task-c=60000",
        "--idempotency-key",
        "alloc-1",
        "--json",
    )
    assert code == 0
    assert [share["amount"] for share in body["shares"]] == ["5.00", "2.50", "2.50"]
    code, reversal = run(
        "reverse",
        "--tenant",
        "tenant_a",
        "--transaction",
        body["transaction_id"],
        "--idempotency-key",
        "rev-1",
        "--json",
    )
    assert code == 0 and reversal["reverses_transaction_id"] == body["transaction_id"]
    code, again = run(
        "reverse",
        "--tenant",
        "tenant_a",
        "--transaction",
        body["transaction_id"],
        "--idempotency-key",
        "rev-2",
        "--json",
    )
    assert (code, again["error"]["code"]) == (5, "transaction_already_reversed")
    bill = tmp_path / "bill.csv"
    bill.write_text("external_ref,amount,currency,date\nnot-there,1.00,USD,2025-01-01\n")
    code, report = run("reconcile", "--bill", str(bill), "--tenant", "tenant_a", "--json")
    assert code == 9 and report["counts"]["missing_from_ledger"] == 1
