"""The reliability scenarios, short: each runs ``bench.reliability`` in its own process (its own
Temporal dev server, nats-server, ledger database and worker processes) with a few dozen holds,
and asserts what the full run reports: nothing lost, nothing applied twice, the money conserved,
the journal intact, every billing event once on JetStream.

``make reliability`` runs the same scenarios with 200 holds at concurrency 50.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
HOLDS = 16
CONCURRENCY = 8
# Long enough that calls pile up behind the fault, short enough for CI.
OUTAGE_SECONDS = 2

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.temporal,
    pytest.mark.postgres,
    pytest.mark.nats,
    pytest.mark.timeout(180),
]


def run(scenario: str, tmp_path: Path) -> dict[str, Any]:
    output = tmp_path / f"{scenario}.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.reliability",
            "--scenario",
            scenario,
            "--holds",
            str(HOLDS),
            "--concurrency",
            str(CONCURRENCY),
            "--outage-seconds",
            str(OUTAGE_SECONDS),
            "--output",
            str(output),
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert output.exists(), (
        f"no result ({completed.returncode}):\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
    )
    result: dict[str, Any] = json.loads(output.read_text())["results"][0]
    return result


def assert_nothing_lost_nothing_twice(result: dict[str, Any]) -> None:
    summary = {key: value for key, value in result.items() if key not in ("histories",)}
    assert result["caller_failures"] == 0, summary
    assert result["finalized_once"] == result["holds_attempted"] == HOLDS, summary
    assert (result["lost"], result["duplicated"], result["wrong_state"]) == (0, 0, 0), summary
    assert result["money"]["conserved"], result["money"]
    assert result["verify_journal_problems"] == 0, result["verify_journal_sample"]
    assert result["journal_transactions_found"] == result["journal_transactions_expected"]
    assert result["events_in_outbox"] == result["events_expected"], summary
    assert result["events_delivered"] == result["events_expected"], summary
    assert result["bus_duplicates"] == 0, summary
    assert result["outbox_unsent_at_end"] == 0, summary
    assert result["ok"], summary


def test_worker_sigkill_mid_load_and_restart(tmp_path: Path) -> None:
    result = run("worker_kill", tmp_path)
    assert_nothing_lost_nothing_twice(result)
    assert result["fault"]["exit_status"] == -9
    assert result["workers"]["a"]["starts"] == 2
    assert result["recovery_seconds"] is not None


def test_temporal_dev_server_sigkill_and_restart_on_its_database_file(tmp_path: Path) -> None:
    result = run("temporal_kill", tmp_path)
    assert_nothing_lost_nothing_twice(result)
    assert result["recovery_seconds"] is not None


def test_private_postgres_restarted_mid_load(tmp_path: Path) -> None:
    result = run("postgres_restart", tmp_path)
    assert_nothing_lost_nothing_twice(result)
    assert result["recovery_seconds"] is not None


def test_nats_down_holds_keep_completing_and_the_relay_delivers_every_event_once(
    tmp_path: Path,
) -> None:
    result = run("nats_outage", tmp_path)
    assert_nothing_lost_nothing_twice(result)
    # The bus being down blocks no hold: calls completed while it was down.
    assert result["calls_completed_during_fault"] > 0, result["fault"]


def test_two_workers_share_the_work_without_duplicate_postings(tmp_path: Path) -> None:
    result = run("two_workers", tmp_path)
    assert_nothing_lost_nothing_twice(result)
    shares = [worker["workflow_tasks"] for worker in result["workers"].values()]
    assert len(shares) == 2 and all(share > 0 for share in shares), result["workers"]


def test_worker_sigterm_under_load_drains_and_exits_within_its_grace_period(
    tmp_path: Path,
) -> None:
    result = run("worker_sigterm", tmp_path)
    assert_nothing_lost_nothing_twice(result)
    fault = result["fault"]
    assert fault["exit_status"] == 0, fault
    assert fault["exit_seconds"] <= fault["grace_seconds"], fault
    assert result["workers"]["a"]["tracebacks_in_log"] == 0
