"""Read API benchmark: requests per second and latency percentiles at 8 concurrent clients.

    python -m bench.api_bench                      # SQLite and PostgreSQL, 5 s per measurement
    python -m bench.api_bench --engine sqlite --seconds 10

For each engine: a ledger with one funded account (``--entries`` journal entries on it) and an
API key; ``compute-ledger serve`` in a process of its own (uvicorn, uvloop, access log off);
and the load generator in a third process (``--clients`` concurrent keep-alive HTTP/1.1
clients, httpx, each sending its next request as soon as the last one is answered). Measured:

- ``balance``: ``GET /v1/accounts/{id}/balance`` (key check + account + balance reads);
- ``entries``: ``GET /v1/accounts/{id}/entries?limit=100`` (key check + a 100-entry page);
- baselines in the same run: ``floor`` is ``GET /v1/nowhere`` (routing and the error body, no
  key, no database) and ``healthz`` is one database query, no key.

The machine has 2 cores shared by the server, the load generator and everything else, so the
figures are a floor of what the API does, not its ceiling. Prints a table (with ``uptime``)
and writes ``bench/results/api_bench.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.reporting import postgres_database, uptime, write_results

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "bench" / "results" / "api_bench.json"
TENANT = "bench"
ACCOUNT = "buyer"


# ---------------------------------------------------------------------------------------------
# The load generator (run as ``python -m bench.api_bench --load ...`` in its own process).
# ---------------------------------------------------------------------------------------------


async def _load(url: str, key: str | None, clients: int, seconds: float) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:

        async def worker(deadline: float) -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.get(url)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        # Warm-up: connections opened, caches and plans warm, then the measured window.
        await asyncio.gather(*(worker(time.perf_counter() + 1.0) for _ in range(clients)))
        latencies.clear()
        statuses.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "requests_per_second": len(ordered) / elapsed,
        "latency_ms_p50": 1000 * statistics.median(ordered),
        "latency_ms_p99": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
    }


# ---------------------------------------------------------------------------------------------
# The harness.
# ---------------------------------------------------------------------------------------------


@contextmanager
def _database(engine: str, directory: Path) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{directory / 'ledger.db'}"
        return
    with postgres_database("cl_api_bench") as url:
        yield url


def _prepare(url: str, entries: int) -> str:
    from ledger_db import Ledger
    from ledger_db.api_keys import create_api_key

    ledger = Ledger.from_url(url)
    try:
        ledger.open_account(
            tenant_id=TENANT, account_id=ACCOUNT, currency="USD", idempotency_key="o"
        )
        for index in range(entries):
            ledger.deposit(ACCOUNT, "1.25", tenant_id=TENANT, idempotency_key=f"d-{index}")
        return create_api_key(ledger.engine, tenant_id=TENANT, name="bench").key
    finally:
        ledger.close()


@contextmanager
def _server(url: str, directory: Path) -> Iterator[str]:
    from starter.dev import free_port

    port = free_port()
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEMPORAL_", "LEDGER_", "NATS_"))
        and key != "PYTHONDONTWRITEBYTECODE"
    }
    environment.update(LEDGER_DATABASE_URL=url, PYTHONPATH=str(REPOSITORY))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "starter",
            "serve",
            "--port",
            str(port),
            "--no-access-log",
            "--json",
        ],
        cwd=directory,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("compute-ledger serve did not start")
        # Whatever else it prints must not fill the pipe and stall the server.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield str(json.loads(line)["url"])
    finally:
        process.send_signal(2)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _measure(url: str, key: str | None, clients: int, seconds: float) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.api_bench",
            "--load",
            url,
            "--key",
            key or "",
            "--clients",
            str(clients),
            "--seconds",
            str(seconds),
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{completed.stderr[-3000:]}")
    return dict(json.loads(completed.stdout))


def _bench_engine(engine: str, entries: int, clients: int, seconds: float) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="api-bench-") as temporary,
        _database(engine, Path(temporary)) as url,
    ):
        key = _prepare(url, entries)
        with _server(url, Path(temporary)) as base:
            targets = {
                "floor": (f"{base}/v1/nowhere", None),
                "healthz": (f"{base}/v1/healthz", None),
                "balance": (f"{base}/v1/accounts/{ACCOUNT}/balance", key),
                "entries": (f"{base}/v1/accounts/{ACCOUNT}/entries?limit=100", key),
            }
            results = {}
            for name, (target, target_key) in targets.items():
                results[name] = _measure(target, target_key, clients, seconds)
                print(
                    f"  {engine:<10} {name:<8} {results[name]['requests_per_second']:8.0f} req/s",
                    file=sys.stderr,
                )
    return results


def _print_table(results: dict[str, dict[str, Any]], clients: int, load: str) -> None:
    print(f"\nRead API at {clients} concurrent clients; {load}")
    print(
        f"{'engine':<11}{'request':<9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs floor':>10}  statuses"
    )
    for engine, measured in results.items():
        floor = measured["floor"]["requests_per_second"]
        for name, numbers in measured.items():
            print(
                f"{engine:<11}{name:<9}{numbers['requests_per_second']:>9.0f}"
                f"{numbers['latency_ms_p50']:>9.1f}{numbers['latency_ms_p99']:>9.1f}"
                f"{numbers['requests_per_second'] / floor:>10.2f}  {numbers['statuses']}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--entries", type=int, default=200)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.load:
        result = asyncio.run(
            _load(options.load, options.key or None, options.clients, options.seconds)
        )
        print(json.dumps(result))
        return
    engines = ["sqlite", "postgresql"] if options.engine == "both" else [options.engine]
    load_before = uptime()
    results = {
        engine: _bench_engine(engine, options.entries, options.clients, options.seconds)
        for engine in engines
    }
    load = uptime()
    _print_table(results, options.clients, load)
    write_results(
        RESULTS,
        "api_bench",
        uptime_before=load_before,
        uptime_after=load,
        clients=options.clients,
        seconds=options.seconds,
        entries=options.entries,
        results=results,
    )
    print(f"\nwrote {RESULTS.relative_to(REPOSITORY)}")


if __name__ == "__main__":
    main()
