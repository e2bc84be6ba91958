"""Saga benchmark: complete holds per second and freeze latency, next to a bare workflow.

    .venv/bin/python -m bench.saga_bench [--quick]

Starts its own Temporal dev server (in memory, headless, on a free port) and two workers in this
process: the real one (``worker.run_worker``: HoldWorkflow + ledger activities on a fresh SQLite
ledger, or ``LEDGER_DATABASE_URL`` if set) and the bare one (``bench.bare_workflow``: the same
updates and activities, but the activities do nothing). For 1 and 50 concurrent negotiations it
measures:

- complete holds per second: freeze -> capture -> finalize completed (the workflow's result);
- freeze latency p50 / p99: from the freeze call to the hold ID being returned.

The figures go to a rich table (saga, bare, and saga/bare) and to ``bench/results/saga.json``.
A full run stays under about four minutes on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from starter.dev import free_port, start_dev_server, wait_until_ready

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "saga.json"
CONCURRENCY_LEVELS = (1, 50)
# Holds per measured round: (concurrency 1, concurrency 50). A short warm-up round comes first
# so that connection set-up and the first workflow tasks' caches do not land in the figures.
HOLDS_FULL = {1: 40, 50: 300}
HOLDS_QUICK = {1: 10, 50: 100}
WARMUP_HOLDS = 5
HOLD_AMOUNT = "1.00"
CURRENCY = "USD"
TTL_SECONDS = 600
round_timeout_seconds = 150.0

console = Console()


@dataclass
class RoundResult:
    """One measured round of one flavour at one concurrency."""

    flavour: str
    concurrency: int
    holds: int
    seconds: float
    holds_per_second: float
    freeze_latency_ms_p50: float
    freeze_latency_ms_p99: float
    freeze_latency_ms_max: float


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a measured latency)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


# One negotiation = freeze (timed) -> capture -> wait for the workflow's end (finalized).
Negotiation = Callable[[int, int], Awaitable[float]]


async def run_round(
    flavour: str, negotiation: Negotiation, *, concurrency: int, holds: int
) -> RoundResult:
    """Runs ``holds`` negotiations, ``concurrency`` at a time, and measures them."""
    latencies_ms: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(holds):
        queue.put_nowait(index)

    async def lane(lane_index: int) -> None:
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            latencies_ms.append(await negotiation(lane_index, index))

    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(lane(lane_index) for lane_index in range(concurrency))),
        round_timeout_seconds,
    )
    seconds = time.perf_counter() - started
    return RoundResult(
        flavour=flavour,
        concurrency=concurrency,
        holds=holds,
        seconds=round(seconds, 3),
        holds_per_second=round(holds / seconds, 2),
        freeze_latency_ms_p50=round(percentile(latencies_ms, 0.50), 2),
        freeze_latency_ms_p99=round(percentile(latencies_ms, 0.99), 2),
        freeze_latency_ms_max=round(max(latencies_ms), 2),
    )


async def saga_negotiation_factory(client: Any, tenant_id: str, run_id: str) -> Negotiation:
    """Negotiations through ``LedgerClient`` and the real HoldWorkflow; one buyer per lane."""
    lanes = max(CONCURRENCY_LEVELS)
    for lane_index in range(lanes):
        for account_id in (f"buyer-{lane_index}", f"seller-{lane_index}"):
            await client.open_account(
                tenant_id=tenant_id,
                currency=CURRENCY,
                idempotency_key=f"{run_id}-open-{account_id}",
                account_id=account_id,
            )
        await client.deposit(
            f"buyer-{lane_index}",
            "1000000.00",
            tenant_id=tenant_id,
            idempotency_key=f"{run_id}-deposit-{lane_index}",
        )

    async def negotiation(lane_index: int, index: int) -> float:
        key = f"{run_id}-{uuid.uuid4().hex}"
        started = time.perf_counter()
        hold = await client.freeze(
            f"buyer-{lane_index}",
            HOLD_AMOUNT,
            "BENCH",
            tenant_id=tenant_id,
            idempotency_key=f"{key}-freeze",
            ttl_seconds=TTL_SECONDS,
            payee_account_id=f"seller-{lane_index}",
        )
        latency_ms = (time.perf_counter() - started) * 1000
        await client.capture_hold(
            hold.hold_id,
            f"order-{key}",
            tenant_id=tenant_id,
            idempotency_key=f"{key}-capture",
        )
        final = await client.wait_for_hold(hold.hold_id, tenant_id=tenant_id)
        if not final.finalized:
            raise AssertionError(f"hold {hold.hold_id} ended without finalize: {final.state}")
        return latency_ms

    return negotiation


def bare_negotiation_factory(temporal_client: Any, task_queue: str, run_id: str) -> Negotiation:
    """The same negotiation against the bare workflow (no ledger, no-op activities)."""
    from bench.bare_workflow import capture_bare_hold, freeze_bare_hold, wait_bare_hold

    async def negotiation(lane_index: int, index: int) -> float:
        key = f"{run_id}-{uuid.uuid4().hex}"
        started = time.perf_counter()
        handle, _ = await freeze_bare_hold(
            temporal_client,
            task_queue=task_queue,
            tenant_id="bench",
            idempotency_key=f"{key}-freeze",
            account_id=f"buyer-{lane_index}",
            amount=HOLD_AMOUNT,
            ttl_seconds=TTL_SECONDS,
            payee_account_id=f"seller-{lane_index}",
        )
        latency_ms = (time.perf_counter() - started) * 1000
        await capture_bare_hold(handle, order_id=f"order-{key}", idempotency_key=f"{key}-capture")
        await wait_bare_hold(handle)
        return latency_ms

    return negotiation


def render(results: list[RoundResult]) -> Table:
    table = Table(title="saga benchmark: HoldWorkflow + ledger vs bare workflow (no-op activities)")
    table.add_column("concurrency", justify="right")
    table.add_column("flavour")
    table.add_column("holds", justify="right")
    table.add_column("holds/s", justify="right")
    table.add_column("freeze p50 ms", justify="right")
    table.add_column("freeze p99 ms", justify="right")
    by_key = {(result.flavour, result.concurrency): result for result in results}
    for concurrency in CONCURRENCY_LEVELS:
        saga = by_key.get(("saga", concurrency))
        bare = by_key.get(("bare", concurrency))
        for result in (saga, bare):
            if result is None:
                continue
            table.add_row(
                str(concurrency),
                result.flavour,
                str(result.holds),
                f"{result.holds_per_second:.1f}",
                f"{result.freeze_latency_ms_p50:.1f}",
                f"{result.freeze_latency_ms_p99:.1f}",
            )
        if saga is not None and bare is not None:
            table.add_row(
                str(concurrency),
                "[bold]saga/bare[/bold]",
                "",
                f"{saga.holds_per_second / bare.holds_per_second:.2f}x",
                f"{saga.freeze_latency_ms_p50 / bare.freeze_latency_ms_p50:.2f}x",
                f"{saga.freeze_latency_ms_p99 / bare.freeze_latency_ms_p99:.2f}x",
                end_section=True,
            )
    return table


def ratios(results: list[RoundResult]) -> list[dict[str, Any]]:
    by_key = {(result.flavour, result.concurrency): result for result in results}
    rows: list[dict[str, Any]] = []
    for concurrency in CONCURRENCY_LEVELS:
        saga = by_key.get(("saga", concurrency))
        bare = by_key.get(("bare", concurrency))
        if saga is None or bare is None:
            continue
        rows.append(
            {
                "concurrency": concurrency,
                "holds_per_second_saga_over_bare": round(
                    saga.holds_per_second / bare.holds_per_second, 3
                ),
                "freeze_latency_ms_p50_saga_over_bare": round(
                    saga.freeze_latency_ms_p50 / bare.freeze_latency_ms_p50, 3
                ),
                "freeze_latency_ms_p99_saga_over_bare": round(
                    saga.freeze_latency_ms_p99 / bare.freeze_latency_ms_p99, 3
                ),
            }
        )
    return rows


async def run_benchmark(*, quick: bool) -> dict[str, Any]:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Worker

    from bench.bare_workflow import BARE_ACTIVITIES, BareHoldWorkflow
    from ledger_db import Ledger
    from starter.client import ClientConfig, LedgerClient
    from worker import run_worker

    holds_per_round = HOLDS_QUICK if quick else HOLDS_FULL
    run_id = f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    address = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="saga-bench-") as scratch:
        database_url = os.environ.get("LEDGER_DATABASE_URL") or f"sqlite:///{scratch}/ledger.db"
        os.environ["LEDGER_DATABASE_URL"] = database_url
        from starter.cli import hold_search_attributes, register_search_attributes

        server = start_dev_server(
            address,
            ui=False,
            log_path=Path(scratch) / "temporal.log",
            search_attributes=hold_search_attributes(),
        )
        stop = asyncio.Event()
        worker_task: asyncio.Task[Any] | None = None
        client: Any = None
        ledger: Any = None
        try:
            await wait_until_ready(address, server=server)
            os.environ["TEMPORAL_ADDRESS"] = address
            await register_search_attributes(address, "default")
            saga_queue = f"{run_id}-saga"
            bare_queue = f"{run_id}-bare"
            config = ClientConfig.from_env()
            config = _with_task_queue(config, saga_queue)
            ledger = await asyncio.to_thread(Ledger.from_url, config.database_url)
            worker_task = asyncio.create_task(run_worker(config, stop_event=stop, ledger=ledger))
            client = await LedgerClient.connect(config, ledger=ledger)
            # The same data converter as the saga's client, so payload handling costs the same.
            temporal_client = await Client.connect(address, data_converter=pydantic_data_converter)
            results: list[RoundResult] = []
            async with Worker(
                temporal_client,
                task_queue=bare_queue,
                workflows=[BareHoldWorkflow],
                activities=BARE_ACTIVITIES,
                max_concurrent_activities=100,
            ):
                saga = await saga_negotiation_factory(client, "bench", run_id)
                bare = bare_negotiation_factory(temporal_client, bare_queue, run_id)
                for name, negotiation in (("saga", saga), ("bare", bare)):
                    await run_round(name, negotiation, concurrency=5, holds=WARMUP_HOLDS)
                for concurrency in CONCURRENCY_LEVELS:
                    holds = holds_per_round[concurrency]
                    # Alternating flavours inside one run keeps both under the same conditions.
                    for name, negotiation in (("saga", saga), ("bare", bare)):
                        console.print(f"{name}: {holds} holds at concurrency {concurrency}...")
                        results.append(
                            await run_round(name, negotiation, concurrency=concurrency, holds=holds)
                        )
        finally:
            stop.set()
            if client is not None:
                await client.close()
            if worker_task is not None:
                await asyncio.wait_for(worker_task, 60)
            if ledger is not None:
                ledger.close()
            server.stop()
    database = database_url.split(":", 1)[0]
    return {
        "benchmark": "saga",
        "generated_at": datetime.now(UTC).isoformat(),
        "quick": quick,
        "database": database,
        "machine": {
            "cpus": os.cpu_count(),
            # Other processes on the machine skew the figures; the load says how much.
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "definition": {
            "complete_hold": "freeze (update-with-start) -> capture (update) -> finalize done",
            "freeze_latency": "client call to the hold ID returned",
            "bare": "bench/bare_workflow.py: same updates and activities, no-op activities",
        },
        "results": [asdict(result) for result in results],
        "ratios": ratios(results),
    }


def _with_task_queue(config: Any, task_queue: str) -> Any:
    from starter.demo import _with_task_queue as replace_task_queue

    return replace_task_queue(config, task_queue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small rounds (a smoke test)")
    arguments = parser.parse_args()
    started = time.perf_counter()
    report = asyncio.run(run_benchmark(quick=arguments.quick))
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    results = [RoundResult(**row) for row in report["results"]]
    console.print(render(results))
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"written to {RESULTS_PATH} in {report['wall_seconds']}s")


if __name__ == "__main__":
    main()
