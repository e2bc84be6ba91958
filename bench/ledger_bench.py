"""Ledger benchmark: freeze + capture + finalize throughput and freeze latency.

Runs on SQLite (a temporary file) and on PostgreSQL (a fresh database created and dropped at
``LEDGER_TEST_POSTGRES_URL``, default ``postgresql+psycopg://127.0.0.1:5432/test``), with 1 and
8 concurrent writer threads sharing one ``Ledger``. Next to it, in the same run and on the same
engine, a baseline: a plain single-row INSERT + COMMIT loop, so the figures read as "the ledger
costs N plain commits" whatever the machine.

    .venv/bin/python -m bench.ledger_bench [--quick] [--engines sqlite,postgresql]
        [--writers 1,8] [--seconds S] [--output bench/results/ledger.json]

One *flow* is freeze + capture + finalize (three ledger transactions). Each measurement runs
for a fixed wall time (not a fixed count) so that the whole run stays within a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from ledger_db import Ledger
from ledger_db.errors import LedgerError

POSTGRES_ADMIN_URL = os.environ.get(
    "LEDGER_TEST_POSTGRES_URL", "postgresql+psycopg://127.0.0.1:5432/test"
)
DEFAULT_OUTPUT = Path(__file__).parent / "results" / "ledger.json"
FEE_BPS = 250


@dataclass
class Measurement:
    engine: str
    workload: str  # "ledger" or "baseline"
    writers: int
    seconds: float
    operations: int  # flows for the ledger, commits for the baseline
    calls: int  # ledger calls (3 per flow) or commits
    operations_per_second: float
    calls_per_second: float
    latency_ms_p50: float  # freeze latency for the ledger, commit latency for the baseline
    latency_ms_p99: float
    latency_ms_max: float
    errors: dict[str, int] = field(default_factory=dict)


def percentile(samples: list[float], fraction: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def run_writers(
    writers: int, seconds: float, work: Callable[[int, int], tuple[int, list[float]]]
) -> tuple[float, list[tuple[int, list[float]] | BaseException]]:
    """Starts ``writers`` threads together; each calls ``work(writer, iteration)`` until the
    deadline. Returns the wall time and, per thread, (operations, latencies) or its error."""
    barrier = threading.Barrier(writers + 1)
    results: list[tuple[int, list[float]] | BaseException] = [(0, [])] * writers
    deadline = [0.0]

    def loop(writer: int) -> None:
        operations, latencies = 0, []
        barrier.wait()
        try:
            iteration = 0
            while time.perf_counter() < deadline[0]:
                done, samples = work(writer, iteration)
                operations += done
                latencies.extend(samples)
                iteration += 1
            results[writer] = (operations, latencies)
        except BaseException as error:  # reported, never hidden
            results[writer] = error

    threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in range(writers)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, results


def bench_ledger(ledger: Ledger, engine_name: str, writers: int, seconds: float) -> Measurement:
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    payee = ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="payee")
    payers = []
    for writer in range(writers):
        account = ledger.open_account(
            tenant_id=tenant, currency="USD", idempotency_key=f"payer-{writer}"
        )
        ledger.deposit(
            account.account_id, "1000000000.00", tenant_id=tenant, idempotency_key=f"fund-{writer}"
        )
        payers.append(account.account_id)
    ledger.ensure_platform_accounts(tenant_id=tenant, currency="USD")
    error_codes: Counter[str] = Counter()
    lock = threading.Lock()

    def flow(writer: int, iteration: int) -> tuple[int, list[float]]:
        key = f"{writer}-{iteration}"
        try:
            started = time.perf_counter()
            hold = ledger.freeze(
                payers[writer],
                "1.00",
                "BENCH",
                tenant_id=tenant,
                idempotency_key=f"f-{key}",
                ttl_seconds=600,
                payee_account_id=payee.account_id,
            )
            latency = (time.perf_counter() - started) * 1000
            ledger.capture_hold(
                hold.hold_id,
                f"order-{key}",
                tenant_id=tenant,
                idempotency_key=f"c-{key}",
                amount="0.80",
            )
            ledger.finalize_hold(
                hold.hold_id, tenant_id=tenant, idempotency_key=f"z-{key}", fee_bps=FEE_BPS
            )
        except LedgerError as error:
            with lock:
                error_codes[error.code] += 1
            return 0, []
        return 1, [latency]

    wall, results = run_writers(writers, seconds, flow)
    return summarise(engine_name, "ledger", writers, wall, results, 3, error_codes)


def bench_baseline(
    engine: sa.Engine, engine_name: str, writers: int, seconds: float
) -> Measurement:
    table = sa.Table(
        f"bench_baseline_{uuid.uuid4().hex[:8]}",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("writer", sa.Integer, nullable=False),
        sa.Column("payload", sa.String(64), nullable=False),
    )
    table.create(engine)
    insert = table.insert()

    def commit_one(writer: int, iteration: int) -> tuple[int, list[float]]:
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(insert, {"writer": writer, "payload": f"{writer}-{iteration}"})
        return 1, [(time.perf_counter() - started) * 1000]

    try:
        wall, results = run_writers(writers, seconds, commit_one)
    finally:
        table.drop(engine)
    return summarise(engine_name, "baseline", writers, wall, results, 1, Counter())


def summarise(
    engine_name: str,
    workload: str,
    writers: int,
    wall: float,
    results: list[tuple[int, list[float]] | BaseException],
    calls_per_operation: int,
    error_codes: Counter[str],
) -> Measurement:
    operations, latencies = 0, []
    errors = dict(error_codes)
    for result in results:
        if isinstance(result, BaseException):
            name = f"{type(result).__name__}: {str(result).splitlines()[0][:120]}"
            errors[name] = errors.get(name, 0) + 1
            continue
        operations += result[0]
        latencies.extend(result[1])
    return Measurement(
        engine=engine_name,
        workload=workload,
        writers=writers,
        seconds=round(wall, 3),
        operations=operations,
        calls=operations * calls_per_operation,
        operations_per_second=round(operations / wall, 1),
        calls_per_second=round(operations * calls_per_operation / wall, 1),
        latency_ms_p50=round(percentile(latencies, 0.50), 3),
        latency_ms_p99=round(percentile(latencies, 0.99), 3),
        latency_ms_max=round(max(latencies, default=float("nan")), 3),
        errors=errors,
    )


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as directory:
        yield f"sqlite:///{directory}/bench.db"


@contextmanager
def postgres_url() -> Iterator[str]:
    name = f"cl_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def server_version(engine: sa.Engine) -> str:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            return "SQLite " + str(connection.exec_driver_sql("SELECT sqlite_version()").scalar())
        return str(connection.exec_driver_sql("SHOW server_version").scalar())


def bench_engine(
    engine_name: str, url: str, writer_counts: list[int], seconds: float, console: Console
) -> tuple[list[Measurement], str]:
    ledger = Ledger.from_url(url)
    try:
        version = server_version(ledger.engine)
        measurements = []
        for writers in writer_counts:
            console.log(f"{engine_name}: ledger flows, {writers} writer(s), {seconds:.1f}s")
            measurements.append(bench_ledger(ledger, engine_name, writers, seconds))
            console.log(f"{engine_name}: baseline commits, {writers} writer(s), {seconds / 2:.1f}s")
            measurements.append(bench_baseline(ledger.engine, engine_name, writers, seconds / 2))
        problems = ledger.verify_journal()
        if problems:
            console.log(f"[red]{engine_name}: verify_journal found {len(problems)} problem(s)")
        return measurements, version
    finally:
        ledger.close()


def render(measurements: list[Measurement], console: Console) -> list[dict[str, Any]]:
    table = Table(title="ledger benchmark (flow = freeze + capture + finalize)")
    for column in (
        "engine",
        "writers",
        "flows/s",
        "calls/s",
        "freeze p50 ms",
        "freeze p99 ms",
        "base commits/s",
        "commit p50 ms",
        "commit p99 ms",
        "commits per call",
        "errors",
    ):
        table.add_column(column, justify="left" if column in ("engine", "errors") else "right")
    rows = []
    baselines = {(m.engine, m.writers): m for m in measurements if m.workload == "baseline"}
    for ledger_run in (m for m in measurements if m.workload == "ledger"):
        baseline = baselines.get((ledger_run.engine, ledger_run.writers))
        ratio = (
            ledger_run.calls_per_second / baseline.calls_per_second
            if baseline and baseline.calls_per_second
            else float("nan")
        )
        commits_per_call = 1 / ratio if ratio else float("nan")
        errors = {**ledger_run.errors, **(baseline.errors if baseline else {})}
        rows.append(
            {
                "engine": ledger_run.engine,
                "writers": ledger_run.writers,
                "flows_per_second": ledger_run.operations_per_second,
                "ledger_calls_per_second": ledger_run.calls_per_second,
                "freeze_latency_ms_p50": ledger_run.latency_ms_p50,
                "freeze_latency_ms_p99": ledger_run.latency_ms_p99,
                "baseline_commits_per_second": baseline.calls_per_second if baseline else None,
                "baseline_latency_ms_p50": baseline.latency_ms_p50 if baseline else None,
                "baseline_latency_ms_p99": baseline.latency_ms_p99 if baseline else None,
                "ledger_calls_to_baseline_commits_ratio": round(ratio, 4),
                "baseline_commits_per_ledger_call": round(commits_per_call, 1),
                "errors": errors,
            }
        )
        table.add_row(
            ledger_run.engine,
            str(ledger_run.writers),
            f"{ledger_run.operations_per_second:,.1f}",
            f"{ledger_run.calls_per_second:,.1f}",
            f"{ledger_run.latency_ms_p50:.2f}",
            f"{ledger_run.latency_ms_p99:.2f}",
            f"{baseline.calls_per_second:,.1f}" if baseline else "-",
            f"{baseline.latency_ms_p50:.2f}" if baseline else "-",
            f"{baseline.latency_ms_p99:.2f}" if baseline else "-",
            f"{commits_per_call:.1f}",
            ", ".join(f"{k}={v}" for k, v in errors.items()) or "-",
        )
    console.print(table)
    console.print(
        "commits per call = plain single-row INSERT+COMMIT/s ÷ ledger calls/s, same engine and "
        "writer count: one ledger call costs that many bare commits (1.0 = as cheap as one)."
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--writers", default="1,8")
    parser.add_argument("--seconds", type=float, default=None, help="per ledger measurement")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    arguments = parser.parse_args(argv)
    seconds = arguments.seconds or (1.5 if arguments.quick else 10.0)
    writer_counts = [int(w) for w in arguments.writers.split(",")]
    console = Console(width=max(150, Console().width))

    measurements: list[Measurement] = []
    versions: dict[str, str] = {}
    started = time.perf_counter()
    for engine_name in arguments.engines.split(","):
        source = {"sqlite": sqlite_url, "postgresql": postgres_url}[engine_name]
        with source() as url:
            results, versions[engine_name] = bench_engine(
                engine_name, url, writer_counts, seconds, console
            )
            measurements.extend(results)
    rows = render(measurements, console)

    report = {
        "benchmark": "ledger",
        "recorded_at": datetime.now(UTC).isoformat(),
        "quick": arguments.quick,
        "seconds_per_measurement": seconds,
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "sqlalchemy": sa.__version__,
            "engines": versions,
        },
        "summary": rows,
        "measurements": [asdict(m) for m in measurements],
    }
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {arguments.output} in {report['total_seconds']}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
