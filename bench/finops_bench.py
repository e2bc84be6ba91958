"""FinOps benchmark: import throughput, report latency and statement generation at scale.

    python -m bench.finops_bench            # 1,000,000 entries per engine
    python -m bench.finops_bench --quick    # 50,000 entries per engine

For each engine (SQLite file, PostgreSQL at ``LEDGER_TEST_POSTGRES_URL``, a database of its own
created and dropped here):

1. import throughput through the public import path (validation included), JSON Lines and CSV;
2. bulk load of the large data set through ``Ledger.record_entries`` in transactions of 500
   records (the documented bulk path: each record is a primary entry and its counterpart, so
   N records are 2N journal entries), with a clock that walks through twelve months so that
   ``recorded_at`` spreads like real data;
3. report latency (SQL GROUP BY) for typical questions, against a baseline in the same run:
   a raw ``COUNT(*), SUM(amount_minor)`` scan of ``journal_entries``;
4. statement generation for one tenant-month (build + JSON + CSV) and a PDF of one account.

Prints a table and writes ``bench/results/finops.json``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ledger_db import Ledger
from ledger_db.finops import (
    EntryFilter,
    account_statement,
    import_text,
    render_statement,
    run_report,
    tenant_statement,
)
from ledger_db.finops.records import FIELDS
from ledger_db.models import LedgerEntryInput
from ledger_db.schema import journal_entries

RESULTS = Path(__file__).parent / "results" / "finops.json"
POSTGRES_ADMIN_URL = os.environ.get(
    "LEDGER_TEST_POSTGRES_URL", "postgresql+psycopg://127.0.0.1:5432/test"
)
TENANTS = ["tenant_big", "tenant_mid", "tenant_ops", "tenant_small"]
TENANT_WEIGHTS = [50, 30, 19, 1]
CATEGORIES = ["CLOUD_COST", "NETWORK_COST", "INFRA_COST", "PAYMENT_COST", "OTHER_REVENUE"]
REASONS = ["TASK_BURN", "PROCUREMENT", "SUBSCRIPTION", "GAS_FEE", "REFUND"]
START = datetime(2025, 1, 1, tzinfo=UTC)
YEAR_SECONDS = 365 * 86_400


class WalkingClock:
    """The ledger's clock during the bulk load: set by the loader, so recorded_at spreads."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _record(rng: random.Random, index: int, tenant: str | None = None) -> dict[str, Any]:
    category = rng.choice(CATEGORIES)
    occurred = START + timedelta(seconds=rng.randrange(YEAR_SECONDS))
    return {
        "ledger_entry_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "tenant_id": tenant or rng.choices(TENANTS, TENANT_WEIGHTS)[0],
        "project_id": f"project_{rng.randrange(20)}",
        "env": rng.choice(["prod", "prod", "staging", "dev"]),
        "asset_id": f"asset-{rng.randrange(200)}",
        "task_id": f"task-{rng.randrange(5000)}",
        "external_ref": f"ref-{index}" if rng.random() < 0.3 else None,
        "direction": "IN" if category == "OTHER_REVENUE" else "OUT",
        "amount": f"{rng.randrange(1, 100_000)}.{rng.randrange(100):02d}",
        "currency": "USD" if rng.random() < 0.8 else "EUR",
        "reason": rng.choice(REASONS),
        "category": category,
        "tags": rng.sample(["qa", "e2e", "ip", "uk", "gpu", "batch"], rng.randrange(0, 3)) or None,
        "meta": {"n": index},
        "occurred_at": occurred.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def _csv(records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS[:-1])
    for record in records:
        writer.writerow(
            [
                ""
                if record.get(name) is None
                else json.dumps(record[name])
                if name in ("tags", "meta")
                else record[name]
                for name in FIELDS[:-1]
            ]
        )
    return buffer.getvalue()


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def _best_of(function: Callable[[], Any], runs: int = 3) -> float:
    return min(_timed(function)[0] for _ in range(runs))


def _bulk_load(ledger: Ledger, clock: WalkingClock, count: int, seed: int) -> float:
    """``count`` records through record_entries, 500 per transaction, recorded over a year."""
    rng = random.Random(seed)
    batch = 500
    started = time.perf_counter()
    pending: dict[str, list[LedgerEntryInput]] = {}
    step = timedelta(seconds=YEAR_SECONDS * batch / max(count, 1))
    loaded = 0
    for index in range(count):
        record = _record(rng, index)
        occurred = record.pop("occurred_at")
        entry = LedgerEntryInput(
            **record, occurred_at=datetime.fromisoformat(occurred.replace("Z", "+00:00"))
        )
        tenant = record["tenant_id"]
        pending.setdefault(tenant, []).append(entry)
        if len(pending[tenant]) == batch:
            clock.now += step
            ledger.record_entries(
                pending.pop(tenant), tenant_id=tenant, idempotency_key=f"bulk-{seed}-{index}"
            )
            loaded += batch
            refresh = loaded in (5_000, 50_000) or loaded % 200_000 == 0
            if refresh and ledger.engine.dialect.name == "postgresql":
                # See docs/notes/finops-findings.md: psycopg prepares statements after five
                # executions and PostgreSQL may then keep a generic plan made while the table
                # was empty (a sequential scan for the ledger_entry_id check). ANALYZE, which
                # autovacuum runs on a live system, refreshes statistics and those plans.
                with ledger.engine.connect() as connection:
                    connection.exec_driver_sql("ANALYZE")
                    connection.commit()
            if loaded % 100_000 == 0:
                print(
                    f"    loaded {loaded:,} records "
                    f"({loaded / (time.perf_counter() - started):,.0f}/s)",
                    flush=True,
                )
    for tenant, entries in pending.items():
        ledger.record_entries(entries, tenant_id=tenant, idempotency_key=f"bulk-{seed}-{tenant}")
    return time.perf_counter() - started


def _bench_engine(name: str, url: str, *, entries: int, import_rows: int) -> dict[str, Any]:
    clock = WalkingClock()
    ledger = Ledger.from_url(url, clock=clock)
    result: dict[str, Any] = {"engine": name}
    try:
        rng = random.Random(11)
        for file_format, render in (("jsonl", _jsonl), ("csv", _csv)):
            records = [_record(rng, index) for index in range(import_rows)]
            text = render(records)
            seconds, outcome = _timed(lambda text=text, f=file_format: import_text(ledger, text, f))
            assert outcome.applied == import_rows
            again, replay = _timed(lambda text=text, f=file_format: import_text(ledger, text, f))
            assert replay.applied == 0
            result[f"import_{file_format}_entries_per_second"] = round(import_rows / seconds)
            result[f"reimport_{file_format}_seconds"] = round(again, 3)
        records_to_load = entries // 2  # each record is a primary entry plus its counterpart
        print(
            f"  {name}: bulk-loading {records_to_load:,} records ({entries:,} journal entries)...",
            flush=True,
        )
        seconds = _bulk_load(ledger, clock, records_to_load, seed=5)
        result["bulk_load_seconds"] = round(seconds, 1)
        result["bulk_load_entries_per_second"] = round(2 * records_to_load / seconds)
        if name == "postgresql":
            with ledger.engine.connect() as connection:
                connection.exec_driver_sql("ANALYZE")
                connection.commit()
        with ledger.engine.connect() as connection:
            total = connection.execute(sa.select(sa.func.count()).select_from(journal_entries))
            result["journal_entries"] = int(total.scalar_one())
            baseline = sa.select(sa.func.count(), sa.func.sum(journal_entries.c.amount_minor))
            result["baseline_count_sum_scan_ms"] = round(
                1000 * _best_of(lambda: connection.execute(baseline).all()), 1
            )
            questions: dict[str, tuple[EntryFilter, list[str]]] = {
                "report_all_by_category_month": (EntryFilter(), ["category", "month"]),
                "report_tenant_by_project": (EntryFilter(tenant_id="tenant_big"), ["project"]),
                "report_by_tag": (EntryFilter(), ["tag"]),
                "report_project_month_ip_cost": (
                    EntryFilter(
                        tenant_id="tenant_big", project_id="project_3", category="NETWORK_COST"
                    ).with_month("2025-06"),
                    [],
                ),
                "report_asset_life_by_task": (
                    EntryFilter(tenant_id="tenant_mid", asset_id="asset-7"),
                    ["task"],
                ),
            }
            for label, (entry_filter, group_by) in questions.items():
                result[f"{label}_ms"] = round(
                    1000
                    * _best_of(lambda f=entry_filter, g=group_by: run_report(connection, f, g)),
                    1,
                )
            month = "2025-06"
            seconds, statement = _timed(
                lambda: tenant_statement(connection, tenant_id="tenant_mid", month=month)
            )
            lines = sum(len(account.lines) for account in statement.accounts)
            result["statement_tenant_month_lines"] = lines
            result["statement_tenant_month_build_s"] = round(seconds, 2)
            result["statement_tenant_month_json_s"] = round(
                _timed(lambda: render_statement(statement, "json"))[0], 2
            )
            result["statement_tenant_month_csv_s"] = round(
                _timed(lambda: render_statement(statement, "csv"))[0], 2
            )
            seconds, small = _timed(
                lambda: account_statement(
                    connection, tenant_id="tenant_mid", account_id="@operating:EUR", month=month
                )
            )
            pdf_seconds, pdf = _timed(lambda: render_statement(small, "pdf"))
            result["statement_pdf_account_lines"] = len(small.lines)
            result["statement_pdf_account_s"] = round(seconds + pdf_seconds, 2)
            result["statement_pdf_bytes"] = len(pdf)
    finally:
        ledger.close()
    return result


def _postgres_database() -> Iterator[str]:
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"cl_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield (
            sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _print_table(results: list[dict[str, Any]]) -> None:
    keys = [key for key in results[0] if key != "engine"]
    width = max(len(key) for key in keys)
    print(f"\n{'metric'.ljust(width)}  " + "  ".join(r["engine"].rjust(12) for r in results))
    for key in keys:
        print(f"{key.ljust(width)}  " + "  ".join(str(r.get(key, "")).rjust(12) for r in results))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 entries instead of 1M")
    parser.add_argument("--entries", type=int, default=None, help="journal entries to load")
    parser.add_argument("--engines", default="sqlite,postgresql")
    arguments = parser.parse_args(argv)
    entries = arguments.entries or (50_000 if arguments.quick else 1_000_000)
    import_rows = 2_000 if arguments.quick else 10_000
    results = []
    for engine in arguments.engines.split(","):
        print(
            f"{engine}: import {import_rows:,} rows per format, then {entries:,} entries",
            flush=True,
        )
        if engine == "sqlite":
            with tempfile.TemporaryDirectory() as directory:
                results.append(
                    _bench_engine(
                        engine,
                        f"sqlite:///{directory}/bench.db",
                        entries=entries,
                        import_rows=import_rows,
                    )
                )
        else:
            for url in _postgres_database():
                results.append(_bench_engine(engine, url, entries=entries, import_rows=import_rows))
    _print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "finops",
                "mode": "quick" if arguments.quick else "full",
                "journal_entries_target": entries,
                "import_rows_per_format": import_rows,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
