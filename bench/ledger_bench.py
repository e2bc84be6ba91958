"""Ledger benchmark: journal transactions/s against pgledger and plain commits, same run.

Runs on SQLite (a temporary file) and on PostgreSQL (a fresh database created and dropped at
``LEDGER_TEST_POSTGRES_URL``, default ``postgresql+psycopg://127.0.0.1:5432/test``), with 1 and
8 concurrent writer threads sharing one ``Ledger``. Workloads: deposits (one journal
transaction each) and flows (freeze + capture + finalize: three), on one tenant, and flows with
each writer on a tenant of its own (does the ledger scale across tenants?). Baselines measured in
the same run on the same engine: a plain single-row INSERT + COMMIT loop and, on PostgreSQL,
pgledger (a double-entry ledger written as PostgreSQL functions, vendored at
``../shared/anchors/pgledger``) driven by the same threads through the same client library.

    .venv/bin/python -m bench.ledger_bench [--quick] [--engines sqlite,postgresql]
        [--writers 1,8] [--seconds S] [--output bench/results/ledger.json] [--pgledger-dir D]

Each measurement runs for a fixed wall time (not a fixed count). The summary table reports each
figure of issue 8 with its baseline, ratio and target; the machine's load average is printed and
stored with the figures (this machine is shared and noisy).
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
# pgledger is vendored beside the repository (shared/anchors), not inside it.
DEFAULT_PGLEDGER_DIR = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "pgledger"
FEE_BPS = 250


@dataclass
class Measurement:
    engine: str
    workload: str  # deposit, flow, flow/N tenants, insert+commit, pgledger...
    writers: int
    seconds: float
    operations: int  # flows, deposits, transfers or commits
    calls: int  # journal transactions (3 per flow), transfers or commits
    operations_per_second: float
    calls_per_second: float
    latency_ms_p50: float  # freeze latency for the ledger, commit latency for the baseline
    latency_ms_p99: float
    latency_ms_max: float
    errors: dict[str, int] = field(default_factory=dict)
    # The ledger's batched writer: operations per database transaction during the run.
    mean_batch: float | None = None


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


@dataclass
class Books:
    """One tenant's accounts for a run: a funded payer per writer and a shared payee."""

    tenant: str
    payers: list[str]
    payee: str


def open_books(ledger: Ledger, writers: int, tenant: str | None = None) -> Books:
    tenant = tenant or f"bench-{uuid.uuid4().hex[:8]}"
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
    return Books(tenant=tenant, payers=payers, payee=payee.account_id)


def bench_ledger(
    ledger: Ledger,
    engine_name: str,
    workload: str,
    writers: int,
    seconds: float,
    *,
    tenants: int = 1,
) -> Measurement:
    """``workload`` "flow" (freeze + capture + finalize, 3 journal transactions) or "deposit"
    (1 journal transaction), by ``writers`` threads on one tenant, or on ``tenants`` tenants
    (writer ``w`` uses tenant ``w % tenants``)."""
    run = uuid.uuid4().hex[:8]
    books = [open_books(ledger, writers, f"bench-{run}-{t}") for t in range(tenants)]
    error_codes: Counter[str] = Counter()
    lock = threading.Lock()

    def deposit(writer: int, iteration: int) -> tuple[int, list[float]]:
        own = books[writer % tenants]
        started = time.perf_counter()
        try:
            ledger.deposit(
                own.payers[writer],
                "1.00",
                tenant_id=own.tenant,
                idempotency_key=f"d-{writer}-{iteration}",
            )
        except LedgerError as error:
            with lock:
                error_codes[error.code] += 1
            return 0, []
        return 1, [(time.perf_counter() - started) * 1000]

    def flow(writer: int, iteration: int) -> tuple[int, list[float]]:
        own = books[writer % tenants]
        key = f"{writer}-{iteration}"
        try:
            started = time.perf_counter()
            hold = ledger.freeze(
                own.payers[writer],
                "1.00",
                "BENCH",
                tenant_id=own.tenant,
                idempotency_key=f"f-{key}",
                ttl_seconds=600,
                payee_account_id=own.payee,
            )
            latency = (time.perf_counter() - started) * 1000
            ledger.capture_hold(
                hold.hold_id,
                f"order-{key}",
                tenant_id=own.tenant,
                idempotency_key=f"c-{key}",
                amount="0.80",
            )
            ledger.finalize_hold(
                hold.hold_id, tenant_id=own.tenant, idempotency_key=f"z-{key}", fee_bps=FEE_BPS
            )
        except LedgerError as error:
            with lock:
                error_codes[error.code] += 1
            return 0, []
        return 1, [latency]

    work, calls = (flow, 3) if workload == "flow" else (deposit, 1)
    before = ledger.write_stats()
    wall, results = run_writers(writers, seconds, work)
    after = ledger.write_stats()
    name = workload if tenants == 1 else f"{workload}/{tenants} tenants"
    measurement = summarise(engine_name, name, writers, wall, results, calls, error_codes)
    batches = after.batches - before.batches
    if batches:
        measurement.mean_batch = round((after.units - before.units) / batches, 2)
    return measurement


def bench_baseline(
    engine: sa.Engine, engine_name: str, writers: int, seconds: float
) -> Measurement:
    """A plain single-row INSERT + COMMIT per operation on the same engine."""
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
    return summarise(engine_name, "insert+commit", writers, wall, results, 1, Counter())


def install_pgledger(engine: sa.Engine, directory: Path) -> None:
    """Runs the vendored pgledger SQL files, in name order, in the scratch database."""
    files = sorted(directory.glob("*.sql"))
    if len(files) != 3:
        raise SystemExit(f"pgledger SQL not found in {directory} (set --pgledger-dir)")
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for path in files:
            # No parameters: psycopg then leaves the functions' '%' signs alone.
            cursor.execute(path.read_text())
        cursor.close()
        raw.commit()
    finally:
        raw.close()


def bench_pgledger(
    engine: sa.Engine, writers: int, seconds: float, *, shared_source: bool
) -> Measurement:
    """pgledger transfers of 1.00, one SQL call and one commit each, through the same client
    library (SQLAlchemy Core on psycopg 3) and writer threads as the ledger. Each writer moves
    money between accounts of its own (pgledger's best case: no shared row), or, with
    ``shared_source``, from one account all writers share (the shape of our deposits, which
    all draw on the tenant's external account)."""
    create = sa.text("select id from pgledger_create_account(:name, 'USD')")
    transfer = sa.text("select id from pgledger_create_transfer(:source, :target, 1.00)")
    run = uuid.uuid4().hex[:8]
    with engine.begin() as connection:
        shared = connection.execute(create, {"name": f"{run}-shared"}).scalar_one()
        pairs = [
            (
                shared
                if shared_source
                else connection.execute(create, {"name": f"{run}-{w}-source"}).scalar_one(),
                connection.execute(create, {"name": f"{run}-{w}-target"}).scalar_one(),
            )
            for w in range(writers)
        ]

    def one_transfer(writer: int, iteration: int) -> tuple[int, list[float]]:
        source, target = pairs[writer]
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(transfer, {"source": source, "target": target}).scalar_one()
        return 1, [(time.perf_counter() - started) * 1000]

    wall, results = run_writers(writers, seconds, one_transfer)
    workload = "pgledger/shared source" if shared_source else "pgledger"
    return summarise("postgresql", workload, writers, wall, results, 1, Counter())


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
    engine_name: str,
    url: str,
    writer_counts: list[int],
    seconds: float,
    console: Console,
    pgledger_dir: Path,
) -> tuple[list[Measurement], str]:
    ledger = Ledger.from_url(url)
    measurements = []
    try:
        version = server_version(ledger.engine)
        if engine_name == "postgresql":
            install_pgledger(ledger.engine, pgledger_dir)
        for writers in writer_counts:
            for workload in ("deposit", "flow"):
                console.log(f"{engine_name}: {workload}, {writers} writer(s), {seconds:.1f}s")
                measurements.append(bench_ledger(ledger, engine_name, workload, writers, seconds))
            if writers > 1:
                console.log(f"{engine_name}: flow, {writers} writers on {writers} tenants")
                measurements.append(
                    bench_ledger(ledger, engine_name, "flow", writers, seconds, tenants=writers)
                )
            console.log(f"{engine_name}: insert+commit, {writers} writer(s)")
            measurements.append(bench_baseline(ledger.engine, engine_name, writers, seconds / 2))
            if engine_name == "postgresql":
                for shared_source in (False, True):
                    console.log(f"pgledger transfers, {writers} writer(s), shared={shared_source}")
                    measurements.append(
                        bench_pgledger(ledger.engine, writers, seconds, shared_source=shared_source)
                    )
        problems = ledger.verify_journal()
        if problems:
            console.log(f"[red]{engine_name}: verify_journal found {len(problems)} problem(s)")
            raise SystemExit(1)
        return measurements, version
    finally:
        ledger.close()


TARGETS = {
    "pgledger_ratio_flow_8": 2.0,
    "sqlite_transactions_per_second_8": 5000.0,
    "tenant_scaling_8": 1.5,
    "freeze_latency_ms_p99_8": 50.0,
}


def summary_rows(measurements: list[Measurement]) -> list[dict[str, Any]]:
    """The figures issue 8 asks for, each with its same-run baseline, ratio and target."""
    by_key = {(m.engine, m.workload, m.writers): m for m in measurements}
    rows: list[dict[str, Any]] = []

    def add(
        name: str,
        value: float,
        baseline_name: str | None = None,
        baseline: float | None = None,
        target: float | None = None,
        higher_is_better: bool = True,
    ) -> None:
        ratio = value / baseline if baseline else None
        judged = ratio if baseline is not None else value
        met = None
        if target is not None and judged is not None:
            met = judged >= target if higher_is_better else judged <= target
        rows.append(
            {
                "figure": name,
                "value": round(value, 2),
                "baseline": baseline_name,
                "baseline_value": None if baseline is None else round(baseline, 2),
                "ratio": None if ratio is None else round(ratio, 3),
                "target": target,
                "met": met,
            }
        )

    writer_counts = sorted({m.writers for m in measurements})
    for writers in writer_counts:
        pgledger = by_key.get(("postgresql", "pgledger", writers))
        for workload in ("deposit", "flow"):
            ours = by_key.get(("postgresql", workload, writers))
            if ours is None or pgledger is None:
                continue
            target = (
                TARGETS["pgledger_ratio_flow_8"] if (workload, writers) == ("flow", 8) else None
            )
            add(
                f"postgresql {workload} journal transactions/s, {writers} writer(s)",
                ours.calls_per_second,
                f"pgledger transfers/s, {writers} writer(s)",
                pgledger.calls_per_second,
                target,
            )
    for engine in ("postgresql", "sqlite"):
        one = by_key.get((engine, "flow", 1))
        for writers in writer_counts:
            spread = by_key.get((engine, f"flow/{writers} tenants", writers))
            if one is not None and spread is not None:
                add(
                    f"{engine} flows/s, {writers} writers on {writers} tenants",
                    spread.operations_per_second,
                    f"{engine} flows/s, 1 writer",
                    one.operations_per_second,
                    TARGETS["tenant_scaling_8"] if writers == 8 else None,
                )
            flow = by_key.get((engine, "flow", writers))
            if flow is not None:
                add(
                    f"{engine} freeze latency p99 ms, {writers} writer(s)",
                    flow.latency_ms_p99,
                    target=TARGETS["freeze_latency_ms_p99_8"] if writers == 8 else None,
                    higher_is_better=False,
                )
    for writers in writer_counts:
        base = by_key.get(("sqlite", "insert+commit", writers))
        for workload in ("deposit", "flow"):
            ours = by_key.get(("sqlite", workload, writers))
            if ours is None or base is None:
                continue
            add(
                f"sqlite {workload} journal transactions/s, {writers} writer(s)",
                ours.calls_per_second,
                f"sqlite plain INSERT+COMMIT/s, {writers} writer(s)",
                base.calls_per_second,
            )
            if writers == 8:
                add(
                    f"sqlite {workload} journal transactions/s, 8 writers (absolute)",
                    ours.calls_per_second,
                    target=TARGETS["sqlite_transactions_per_second_8"],
                )
    return rows


def render(measurements: list[Measurement], console: Console) -> list[dict[str, Any]]:
    table = Table(title="ledger benchmark: every measurement (flow = freeze + capture + finalize)")
    for column in (
        "engine",
        "workload",
        "writers",
        "ops/s",
        "journal txns/s",
        "p50 ms",
        "p99 ms",
        "ops/batch",
        "errors",
    ):
        table.add_column(
            column, justify="left" if column in ("engine", "workload", "errors") else "right"
        )
    for m in measurements:
        table.add_row(
            m.engine,
            m.workload,
            str(m.writers),
            f"{m.operations_per_second:,.1f}",
            f"{m.calls_per_second:,.1f}",
            f"{m.latency_ms_p50:.2f}",
            f"{m.latency_ms_p99:.2f}",
            "-" if m.mean_batch is None else f"{m.mean_batch:.1f}",
            ", ".join(f"{k}={v}" for k, v in m.errors.items()) or "-",
        )
    console.print(table)
    rows = summary_rows(measurements)
    summary = Table(title="ledger benchmark: figures against same-run baselines and targets")
    for column in ("figure", "value", "baseline", "baseline value", "ratio", "target", "met"):
        summary.add_column(column, justify="left" if column in ("figure", "baseline") else "right")
    for row in rows:
        summary.add_row(
            row["figure"],
            f"{row['value']:,.2f}",
            row["baseline"] or "-",
            "-" if row["baseline_value"] is None else f"{row['baseline_value']:,.2f}",
            "-" if row["ratio"] is None else f"{row['ratio']:.3f}x",
            "-" if row["target"] is None else str(row["target"]),
            {True: "yes", False: "NO", None: "-"}[row["met"]],
        )
    console.print(summary)
    console.print(
        "ops/s: flows (3 journal transactions each), deposits, pgledger transfers or plain "
        "commits per second; latency: freeze for flows, the whole call otherwise; ops/batch: "
        "operations per database transaction of the batched writer."
    )
    return rows


def load_average() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--writers", default="1,8")
    parser.add_argument("--seconds", type=float, default=None, help="per ledger measurement")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--pgledger-dir",
        type=Path,
        default=Path(os.environ.get("PGLEDGER_DIR", DEFAULT_PGLEDGER_DIR)),
        help="the vendored pgledger SQL (default ../shared/anchors/pgledger)",
    )
    arguments = parser.parse_args(argv)
    seconds = arguments.seconds or (1.5 if arguments.quick else 10.0)
    writer_counts = [int(w) for w in arguments.writers.split(",")]
    console = Console(width=max(150, Console().width))

    measurements: list[Measurement] = []
    versions: dict[str, str] = {}
    started = time.perf_counter()
    load_before = load_average()
    for engine_name in arguments.engines.split(","):
        source = {"sqlite": sqlite_url, "postgresql": postgres_url}[engine_name]
        with source() as url:
            results, versions[engine_name] = bench_engine(
                engine_name, url, writer_counts, seconds, console, arguments.pgledger_dir
            )
            measurements.extend(results)
    rows = render(measurements, console)
    load_after = load_average()
    console.print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}")

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
            "load_average_before": load_before,
            "load_average_after": load_after,
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
