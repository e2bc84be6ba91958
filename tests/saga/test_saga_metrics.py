"""Worker metrics: ``python worker.py`` with ``LEDGER_METRICS_ADDRESS`` serves Prometheus text
with the SDK's metrics and the ledger's counters; scraped here over HTTP like Prometheus does."""

from __future__ import annotations

import asyncio
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
from saga_helpers import Tenant, start_worker_process
from temporalio.testing import WorkflowEnvironment

from ledger_db import Ledger
from ledger_db.errors import CaptureExceedsHold, InsufficientFunds
from starter.client import ClientConfig, LedgerClient
from starter.dev import free_port

pytestmark = [pytest.mark.temporal, pytest.mark.asyncio(loop_scope="session")]

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$"
)


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        samples.append((match["name"], labels, float(match["value"])))
    return samples


def _total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


async def _scrape(address: str) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
            return str(response.read().decode())

    return await asyncio.to_thread(get)


async def test_a_real_worker_exports_sdk_and_ledger_metrics(
    dev_env: WorkflowEnvironment,
    ledger: Ledger,
    sqlite_url: str,
    tenant: Tenant,
    task_queue: str,
    worker_processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    worker_processes.append(
        start_worker_process(
            dev_env,
            sqlite_url,
            task_queue,
            tmp_path / "worker.log",
            {"LEDGER_METRICS_ADDRESS": address},
        )
    )
    client = await LedgerClient.connect(
        ClientConfig(task_queue=task_queue), temporal=dev_env.client, ledger=ledger
    )

    async def freeze(key: str, amount: str) -> str:
        hold = await client.freeze(
            tenant.buyer,
            amount,
            "NEGOTIATION",
            tenant_id=tenant.tenant_id,
            idempotency_key=key,
            ttl_seconds=600,
            payee_account_id=tenant.seller,
        )
        return hold.hold_id

    captured = await asyncio.wait_for(freeze("a", "30.00"), 60)
    released = await freeze("b", "10.00")
    with pytest.raises(InsufficientFunds):  # refused by the ledger
        await freeze("c", "500.00")
    with pytest.raises(CaptureExceedsHold):  # refused by the workflow's validator
        await client.capture_hold(
            captured, "o", tenant_id=tenant.tenant_id, idempotency_key="c", amount="31.00"
        )
    await client.capture_hold(
        captured, "o", tenant_id=tenant.tenant_id, idempotency_key="c", amount="20.00"
    )
    await client.release_hold(released, tenant_id=tenant.tenant_id, idempotency_key="r")
    await client.wait_for_hold(captured, tenant_id=tenant.tenant_id)

    samples = _samples(await _scrape(address))
    names = {name for name, _, _ in samples}
    # The SDK's own metrics, for workflow tasks and local activities alike...
    assert "temporal_workflow_task_execution_latency_bucket" in names
    assert _total(samples, "temporal_local_activity_total", activity_type="ledger.freeze_hold") >= 3
    # ...and the ledger's, with the currency and the code.
    assert _total(samples, "ledger_holds_frozen", currency="USD") == 2
    assert _total(samples, "ledger_holds_captured", currency="USD") == 1
    assert _total(samples, "ledger_holds_finalized", currency="USD") == 1
    assert _total(samples, "ledger_holds_released", currency="USD") == 1
    assert _total(samples, "ledger_hold_amount_minor", operation="freeze", currency="USD") == 4000
    assert _total(samples, "ledger_hold_amount_minor", operation="capture", currency="USD") == 2000
    assert _total(samples, "ledger_platform_fee_minor", currency="USD") == 20
    assert (
        _total(samples, "ledger_business_errors", operation="freeze", code="insufficient_funds")
        == 1
    )
    assert (
        _total(samples, "ledger_requests_refused", operation="capture", code="capture_exceeds_hold")
        == 1
    )
    await client.close()
