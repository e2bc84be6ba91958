"""Saga benchmark: complete holds per second, freeze latency and the shape of each hold's
history, for the HoldWorkflow and for the minimal workflow of a hold's shape, side by side.

    .venv/bin/python -m bench.saga_bench [--quick]

One run starts its own Temporal dev server (in memory, headless, on a free port), a fresh SQLite
ledger (or ``LEDGER_DATABASE_URL``), and in this process two workers: the real one
(``worker.run_worker``: HoldWorkflowV2 and its ledger activities) and the baseline
(``bench.bare_workflow``: Update-With-Start ``freeze`` running one local no-op activity, an
update ``capture`` (or ``release``) running one local no-op activity, or the expiry timer and
one, then the end). Each round's load comes from a load generator in its own process, so the
generator's CPU is not the workers'. For the capture, release and expiry paths at concurrency 1
and 50 it reports:

- complete holds per second: freeze -> capture -> the workflow ended (paid out), or freeze ->
  release -> ended, or freeze -> expiry -> ended (TTL 1 s);
- freeze latency p50 / p99: from the freeze call to the hold returned;
- workflow tasks, activity tasks and history events per hold, read from sampled histories.

The figures go to a table (saga, bare, saga/bare) and to ``bench/results/saga.json``. The
target: complete holds/s of the saga >= 0.8x the baseline's, capture path, concurrency 50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import subprocess
import sys
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
PATHS = ("capture", "release", "expiry")
CONCURRENCY_LEVELS = (1, 50)
FLAVOURS = ("saga", "bare")
# Holds per measured round, by (path, concurrency). Expiry rounds wait out the TTL.
HOLDS_FULL = {
    ("capture", 1): 40,
    ("capture", 50): 400,
    ("release", 1): 30,
    ("release", 50): 300,
    ("expiry", 1): 8,
    ("expiry", 50): 200,
}
HOLDS_QUICK = {key: max(4, value // 8) for key, value in HOLDS_FULL.items()}
WARMUP_HOLDS = 20
LANES = max(CONCURRENCY_LEVELS)
TENANT = "bench"
HOLD_AMOUNT = "1.00"
TTL_SECONDS = 600
EXPIRY_TTL_SECONDS = 1
HISTORIES_SAMPLED = 10
ROUND_TIMEOUT_SECONDS = 300.0

console = Console(width=150)


@dataclass
class RoundResult:
    """One measured round of one flavour, path and concurrency."""

    flavour: str
    path: str
    concurrency: int
    holds: int
    seconds: float
    holds_per_second: float
    freeze_latency_ms_p50: float
    freeze_latency_ms_p99: float
    freeze_latency_ms_max: float
    workflow_tasks_per_hold: float
    activity_tasks_per_hold: float
    history_events_per_hold: float


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a measured latency)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


# ---------------------------------------------------------------------------------------------
# The load generator: its own process, one round per invocation, JSON on stdout.
# ---------------------------------------------------------------------------------------------


async def generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs ``spec["holds"]`` negotiations, ``spec["concurrency"]`` at a time."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    temporal = await Client.connect(spec["address"], data_converter=pydantic_data_converter)
    closing: list[Callable[[], Awaitable[None]]] = []
    if spec["flavour"] == "saga":
        negotiate = await _saga_negotiation(temporal, spec, closing)
    else:
        negotiate = _bare_negotiation(temporal, spec)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(spec["holds"]):
        queue.put_nowait(index)
    latencies_ms: list[float] = []
    workflow_ids: list[str] = []

    async def lane(lane_index: int) -> None:
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            latency_ms, workflow_id = await negotiate(lane_index)
            latencies_ms.append(latency_ms)
            workflow_ids.append(workflow_id)

    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(lane(index) for index in range(spec["concurrency"]))),
        ROUND_TIMEOUT_SECONDS,
    )
    seconds = time.perf_counter() - started
    for close in closing:
        await close()
    step = max(1, len(workflow_ids) // HISTORIES_SAMPLED)
    return {
        "seconds": seconds,
        "latencies_ms": latencies_ms,
        "sampled_workflow_ids": workflow_ids[::step][:HISTORIES_SAMPLED],
    }


Negotiation = Callable[[int], Awaitable[tuple[float, str]]]


async def _saga_negotiation(
    temporal: Any, spec: dict[str, Any], closing: list[Callable[[], Awaitable[None]]]
) -> Negotiation:
    from ledger_db.ids import hold_workflow_id
    from starter.client import ClientConfig, LedgerClient

    client = await LedgerClient.connect(ClientConfig.from_env(), temporal=temporal)
    closing.append(client.close)
    path = spec["path"]

    async def negotiation(lane: int) -> tuple[float, str]:
        key = f"{spec['run_id']}-{uuid.uuid4().hex}"
        started = time.perf_counter()
        hold = await client.freeze(
            f"buyer-{lane}",
            HOLD_AMOUNT,
            "BENCH",
            tenant_id=TENANT,
            idempotency_key=f"{key}-freeze",
            ttl_seconds=EXPIRY_TTL_SECONDS if path == "expiry" else TTL_SECONDS,
            payee_account_id=f"seller-{lane}",
        )
        latency_ms = (time.perf_counter() - started) * 1000
        if path == "capture":
            await client.capture_hold(
                hold.hold_id, f"order-{key}", tenant_id=TENANT, idempotency_key=f"{key}-capture"
            )
        elif path == "release":
            await client.release_hold(
                hold.hold_id, tenant_id=TENANT, idempotency_key=f"{key}-release"
            )
        final = await client.wait_for_hold(hold.hold_id, tenant_id=TENANT)
        expected = {"capture": "captured", "release": "released", "expiry": "expired"}[path]
        if final.state != expected or (path == "capture" and not final.finalized):
            raise AssertionError(f"hold {hold.hold_id} ended {final.state}, not {expected}")
        return latency_ms, hold_workflow_id(hold.hold_id)

    return negotiation


def _bare_negotiation(temporal: Any, spec: dict[str, Any]) -> Negotiation:
    from bench.bare_workflow import BareHoldWorkflow, BareResolve, freeze_bare_hold

    path = spec["path"]

    async def negotiation(lane: int) -> tuple[float, str]:
        key = f"{spec['run_id']}-{uuid.uuid4().hex}"
        started = time.perf_counter()
        handle = await freeze_bare_hold(
            temporal,
            task_queue=spec["task_queue"],
            idempotency_key=key,
            ttl_seconds=EXPIRY_TTL_SECONDS if path == "expiry" else TTL_SECONDS,
        )
        latency_ms = (time.perf_counter() - started) * 1000
        if path == "capture":
            await handle.execute_update(BareHoldWorkflow.capture, BareResolve(idempotency_key=key))
        elif path == "release":
            await handle.execute_update(BareHoldWorkflow.release, BareResolve(idempotency_key=key))
        await handle.result()
        return latency_ms, handle.id

    return negotiation


# ---------------------------------------------------------------------------------------------
# The orchestrator: server, workers, rounds, histories, table.
# ---------------------------------------------------------------------------------------------


def _cache_bytecode() -> str:
    """Lets this process and its children cache bytecode, under a directory of their own.

    A deployed worker runs from cached bytecode; a shell with PYTHONDONTWRITEBYTECODE set would
    otherwise make the workflow sandbox compile each workflow's module source for every new
    workflow (about 3 ms for workflows/hold.py), which no deployment pays.
    """
    directory = os.path.join(tempfile.gettempdir(), "compute-ledger-bench-bytecode")
    sys.pycache_prefix = directory
    sys.dont_write_bytecode = False
    return directory


def _run_generator(spec: dict[str, Any], environment: dict[str, str]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.saga_bench", "--generate", json.dumps(spec)],
        cwd=Path(__file__).resolve().parents[1],
        env=environment,
        capture_output=True,
        text=True,
        timeout=ROUND_TIMEOUT_SECONDS + 60,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{completed.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


async def _history_shape(temporal: Any, workflow_ids: list[str]) -> tuple[float, float, float]:
    """Mean (workflow tasks, activity tasks, history events) per hold over sampled histories."""
    from temporalio.api.enums.v1 import EventType

    tasks = activities = events = 0
    for workflow_id in workflow_ids:
        history = await temporal.get_workflow_handle(workflow_id).fetch_history()
        types = [event.event_type for event in history.events]
        tasks += types.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
        activities += types.count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
        events += len(types)
    count = max(1, len(workflow_ids))
    return tasks / count, activities / count, events / count


async def _fund_lanes(ledger: Any, run_id: str) -> None:
    for lane in range(LANES):
        for account_id in (f"buyer-{lane}", f"seller-{lane}"):
            await asyncio.to_thread(
                ledger.open_account,
                tenant_id=TENANT,
                currency="USD",
                idempotency_key=f"{run_id}-open-{account_id}",
                account_id=account_id,
            )
        await asyncio.to_thread(
            ledger.deposit,
            f"buyer-{lane}",
            "1000000.00",
            tenant_id=TENANT,
            idempotency_key=f"{run_id}-deposit-{lane}",
        )


async def run_benchmark(*, quick: bool) -> dict[str, Any]:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Worker

    from bench.bare_workflow import BARE_ACTIVITIES, BareHoldWorkflow
    from ledger_db import Ledger
    from starter.cli import hold_search_attributes, register_search_attributes
    from starter.client import ClientConfig
    from worker import run_worker

    holds_per_round = HOLDS_QUICK if quick else HOLDS_FULL
    run_id = f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    bytecode = _cache_bytecode()
    address = f"127.0.0.1:{free_port()}"
    saga_queue, bare_queue = f"{run_id}-saga", f"{run_id}-bare"
    with tempfile.TemporaryDirectory(prefix="saga-bench-") as scratch:
        database_url = os.environ.get("LEDGER_DATABASE_URL") or f"sqlite:///{scratch}/ledger.db"
        environment = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "LEDGER_DATABASE_URL": database_url,
            "LEDGER_TASK_QUEUE": saga_queue,
            "NATS_URL": "",
            "PYTHONPYCACHEPREFIX": bytecode,
        }
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ.update(environment)
        server = start_dev_server(
            address,
            ui=False,
            log_path=Path(scratch) / "temporal.log",
            search_attributes=hold_search_attributes(),
        )
        stop = asyncio.Event()
        worker_task: asyncio.Task[Any] | None = None
        ledger: Any = None
        try:
            await wait_until_ready(address, server=server)
            await register_search_attributes(address, "default")
            ledger = await asyncio.to_thread(Ledger.from_url, database_url)
            await _fund_lanes(ledger, run_id)
            worker_task = asyncio.create_task(
                run_worker(ClientConfig.from_env(), stop_event=stop, ledger=ledger)
            )
            temporal = await Client.connect(address, data_converter=pydantic_data_converter)
            results: list[RoundResult] = []
            async with Worker(
                temporal,
                task_queue=bare_queue,
                workflows=[BareHoldWorkflow],
                activities=BARE_ACTIVITIES,
            ):
                rounds: list[tuple[str, str, int, int]] = [
                    (flavour, "capture", 5, WARMUP_HOLDS) for flavour in FLAVOURS
                ]
                for path in PATHS:
                    for concurrency in CONCURRENCY_LEVELS:
                        # Alternating flavours inside one run keeps both under the same load.
                        for flavour in FLAVOURS:
                            rounds.append(
                                (flavour, path, concurrency, holds_per_round[(path, concurrency)])
                            )
                for number, (flavour, path, concurrency, holds) in enumerate(rounds):
                    warmup = number < len(FLAVOURS)
                    console.print(
                        f"{'warm-up ' if warmup else ''}{flavour}: {holds} holds, {path}, "
                        f"concurrency {concurrency}..."
                    )
                    spec = {
                        "flavour": flavour,
                        "path": path,
                        "concurrency": concurrency,
                        "holds": holds,
                        "address": address,
                        "task_queue": saga_queue if flavour == "saga" else bare_queue,
                        "run_id": f"{run_id}-{number}",
                    }
                    generated = await asyncio.to_thread(_run_generator, spec, environment)
                    if warmup:
                        continue
                    shape = await _history_shape(temporal, generated["sampled_workflow_ids"])
                    latencies = generated["latencies_ms"]
                    seconds = generated["seconds"]
                    results.append(
                        RoundResult(
                            flavour=flavour,
                            path=path,
                            concurrency=concurrency,
                            holds=holds,
                            seconds=round(seconds, 3),
                            holds_per_second=round(holds / seconds, 2),
                            freeze_latency_ms_p50=round(percentile(latencies, 0.50), 2),
                            freeze_latency_ms_p99=round(percentile(latencies, 0.99), 2),
                            freeze_latency_ms_max=round(max(latencies), 2),
                            workflow_tasks_per_hold=round(shape[0], 2),
                            activity_tasks_per_hold=round(shape[1], 2),
                            history_events_per_hold=round(shape[2], 2),
                        )
                    )
        finally:
            stop.set()
            if worker_task is not None:
                await asyncio.wait_for(worker_task, 60)
            if ledger is not None:
                ledger.close()
            server.stop()
    return {
        "benchmark": "saga",
        "generated_at": datetime.now(UTC).isoformat(),
        "quick": quick,
        "database": database_url.split(":", 1)[0],
        "machine": {
            "cpus": os.cpu_count(),
            # Other processes on the machine skew the figures; the load says how much.
            "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "definition": {
            "complete_hold": "freeze (update-with-start) -> capture / release / expiry -> "
            "the workflow ended (a capture paid out)",
            "freeze_latency": "client call to the hold returned",
            "bare": "bench/bare_workflow.py: UWS freeze + one local no-op activity; update "
            "capture/release (or the timer) + one local no-op activity; end",
            "shape": f"mean over {HISTORIES_SAMPLED} sampled histories per round",
            "bytecode": "cached (under a temporary prefix), as in a deployment",
        },
        "results": [asdict(result) for result in results],
        "ratios": ratios(results),
    }


def ratios(results: list[RoundResult]) -> list[dict[str, Any]]:
    by_key = {(r.flavour, r.path, r.concurrency): r for r in results}
    rows: list[dict[str, Any]] = []
    for path in PATHS:
        for concurrency in CONCURRENCY_LEVELS:
            saga = by_key.get(("saga", path, concurrency))
            bare = by_key.get(("bare", path, concurrency))
            if saga is None or bare is None:
                continue
            rows.append(
                {
                    "path": path,
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


def render(results: list[RoundResult]) -> Table:
    table = Table(title="saga benchmark: HoldWorkflowV2 + ledger vs the minimal hold workflow")
    for column in ("path", "conc.", "flavour", "holds", "holds/s", "freeze p50 ms"):
        table.add_column(column, justify="left" if column in ("path", "flavour") else "right")
    for column in ("freeze p99 ms", "WFT/hold", "act/hold", "events/hold"):
        table.add_column(column, justify="right")
    by_key = {(r.flavour, r.path, r.concurrency): r for r in results}
    for path in PATHS:
        for concurrency in CONCURRENCY_LEVELS:
            saga = by_key.get(("saga", path, concurrency))
            bare = by_key.get(("bare", path, concurrency))
            for result in (saga, bare):
                if result is None:
                    continue
                table.add_row(
                    path,
                    str(concurrency),
                    result.flavour,
                    str(result.holds),
                    f"{result.holds_per_second:.1f}",
                    f"{result.freeze_latency_ms_p50:.1f}",
                    f"{result.freeze_latency_ms_p99:.1f}",
                    f"{result.workflow_tasks_per_hold:.1f}",
                    f"{result.activity_tasks_per_hold:.1f}",
                    f"{result.history_events_per_hold:.1f}",
                )
            if saga is not None and bare is not None:
                table.add_row(
                    path,
                    str(concurrency),
                    "[bold]saga/bare[/bold]",
                    "",
                    f"[bold]{saga.holds_per_second / bare.holds_per_second:.2f}x[/bold]",
                    f"{saga.freeze_latency_ms_p50 / bare.freeze_latency_ms_p50:.2f}x",
                    f"{saga.freeze_latency_ms_p99 / bare.freeze_latency_ms_p99:.2f}x",
                    "",
                    "",
                    "",
                    end_section=True,
                )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small rounds (a smoke test)")
    parser.add_argument("--generate", help=argparse.SUPPRESS)  # the load generator's own mode
    arguments = parser.parse_args()
    if arguments.generate:
        print(json.dumps(asyncio.run(generate(json.loads(arguments.generate)))), flush=True)
        # Leave without finalizing: a Temporal client's runtime still alive while the
        # interpreter finalizes can abort the process after the figures were printed.
        os._exit(0)
    started = time.perf_counter()
    report = asyncio.run(run_benchmark(quick=arguments.quick))
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    results = [RoundResult(**row) for row in report["results"]]
    console.print(render(results))
    console.print(f"load average at the end: {report['machine']['load_average_at_end']}")
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    console.print(f"written to {RESULTS_PATH} in {report['wall_seconds']}s")


if __name__ == "__main__":
    main()
