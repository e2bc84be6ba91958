"""CLI benchmark: whole-process latency of ``compute-ledger`` commands, before and after.

    python -m bench.cli_bench                 # baseline: the tree at --baseline-ref (df1cae8)
    python -m bench.cli_bench --no-baseline   # this tree only

Each command runs as a fresh process, as a user or a script runs it: one warm-up, then
``--runs`` (7) timed runs; the table shows the median (and the fastest). The commands read a
SQLite ledger under a temporary directory holding one funded account with 50 journal entries.

Baselines measured in the same run, on the same machine:

- ``python -c pass``: the interpreter's own start (the floor of any command);
- ``python -c "import ledger_db"``: the ledger library's import (the floor of a ledger read);
- the same commands of the tree at ``--baseline-ref`` (``git archive`` into a temporary
  directory, same interpreter and packages). That tree's ledger commands need a Temporal
  server, so a dev server is started for it on a free port, and stopped at the end.

Prints a table (with the machine's load) and writes ``bench/results/cli_bench.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.reporting import uptime, write_results

REPOSITORY = Path(__file__).resolve().parents[1]
RESULTS = REPOSITORY / "bench" / "results" / "cli_bench.json"
DEFAULT_BASELINE_REF = "df1cae8"
TENANT = "bench"
ACCOUNT = "buyer"
DEPOSITS = 25  # each deposit posts one entry on the account (and one on @external)

COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "account show --json": ["account", "show", "--tenant", TENANT, "--account", ACCOUNT, "--json"],
    "account show (table)": ["account", "show", "--tenant", TENANT, "--account", ACCOUNT],
    "entries --json": ["entries", "--tenant", TENANT, "--account", ACCOUNT, "--json"],
}


def _environment(source: Path, directory: Path, temporal_address: str) -> dict[str, str]:
    # Bytecode caches on, as on a user's machine (some shells set PYTHONDONTWRITEBYTECODE, and
    # compiling every module on every start would dominate what is measured).
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEMPORAL_", "LEDGER_", "NATS_"))
        and key != "PYTHONDONTWRITEBYTECODE"
    }
    # PYTHONPATH comes before the editable install's finder, so ``source`` is what runs.
    environment["PYTHONPATH"] = str(source)
    environment["LEDGER_DATABASE_URL"] = f"sqlite:///{directory / 'ledger.db'}"
    environment["TEMPORAL_ADDRESS"] = temporal_address
    environment["COLUMNS"] = "160"
    return environment


def _run(arguments: Sequence[str], environment: dict[str, str], directory: Path) -> float:
    started = time.perf_counter()
    completed = subprocess.run(
        list(arguments),
        cwd=directory,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(
            f"{arguments} exited {completed.returncode}:\n{completed.stdout.decode()}\n"
            f"{completed.stderr.decode()}"
        )
    return elapsed


def _timings(
    arguments: Sequence[str], environment: dict[str, str], directory: Path, runs: int
) -> dict[str, float]:
    _run(arguments, environment, directory)  # warm-up: page cache, .pyc files
    samples = [_run(arguments, environment, directory) for _ in range(runs)]
    return {"median_s": statistics.median(samples), "min_s": min(samples)}


def _program() -> list[str]:
    return [sys.executable, "-m", "starter"]


def _prepare(source: Path, directory: Path, environment: dict[str, str], *, upgrade: bool) -> None:
    """One funded account with entries, written through the tree's own command line."""
    program = _program()
    if upgrade:
        _run([*program, "db", "upgrade", "--json"], environment, directory)
    _run(
        [
            *program,
            "account",
            "open",
            "--tenant",
            TENANT,
            "--account",
            ACCOUNT,
            "--currency",
            "USD",
            "--idempotency-key",
            "bench-open",
            "--json",
        ],
        environment,
        directory,
    )
    for index in range(DEPOSITS):
        _run(
            [
                *program,
                "account",
                "deposit",
                "--tenant",
                TENANT,
                "--account",
                ACCOUNT,
                "--amount",
                "1.25",
                "--idempotency-key",
                f"bench-deposit-{index}",
                "--json",
            ],
            environment,
            directory,
        )


def _export_tree(ref: str, target: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", ref], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)


def _bench(
    name: str, source: Path, directory: Path, temporal_address: str, runs: int, *, upgrade: bool
) -> dict[str, dict[str, float]]:
    directory.mkdir(parents=True, exist_ok=True)
    environment = _environment(source, directory, temporal_address)
    _prepare(source, directory, environment, upgrade=upgrade)
    results: dict[str, dict[str, float]] = {}
    for label, arguments in COMMANDS.items():
        results[label] = _timings([*_program(), *arguments], environment, directory, runs)
        print(f"  {name:<9} {label:<22} {results[label]['median_s']:.3f} s", file=sys.stderr)
    return results


def _floors(directory: Path, runs: int) -> dict[str, dict[str, float]]:
    environment = _environment(REPOSITORY, directory, "127.0.0.1:1")
    return {
        "python -c pass": _timings([sys.executable, "-c", "pass"], environment, directory, runs),
        "import ledger_db": _timings(
            [sys.executable, "-c", "import ledger_db"], environment, directory, runs
        ),
    }


def _print_table(
    floors: dict[str, dict[str, float]],
    after: dict[str, dict[str, float]],
    before: dict[str, dict[str, float]] | None,
    load: str,
) -> None:
    print(f"\nCLI whole-process latency, median of the runs (fastest in brackets); {load}")
    header = f"{'command':<24}{'after':>16}"
    if before is not None:
        header += f"{'before':>16}{'after/before':>14}"
    print(header)
    for label, numbers in after.items():
        line = f"{label:<24}{numbers['median_s']:>8.3f} ({numbers['min_s']:.3f})"
        if before is not None:
            old = before[label]
            line += f"{old['median_s']:>8.3f} ({old['min_s']:.3f}){numbers['median_s'] / old['median_s']:>12.2f}"
        print(line)
    for label, numbers in floors.items():
        print(f"{'floor: ' + label:<24}{numbers['median_s']:>8.3f} ({numbers['min_s']:.3f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline-ref", default=DEFAULT_BASELINE_REF)
    parser.add_argument("--no-baseline", action="store_true")
    options = parser.parse_args(argv)

    from starter.dev import free_port, start_dev_server, wait_until_ready

    with tempfile.TemporaryDirectory(prefix="cli-bench-") as temporary:
        root = Path(temporary)
        load_before = uptime()
        floors = _floors(root, options.runs)
        # This tree needs no Temporal for these commands: point it at a closed port.
        after = _bench(
            "after", REPOSITORY, root / "after", "127.0.0.1:1", options.runs, upgrade=True
        )
        before = None
        if not options.no_baseline:
            old_tree = root / "baseline-tree"
            old_tree.mkdir()
            _export_tree(options.baseline_ref, old_tree)
            address = f"127.0.0.1:{free_port()}"
            server = start_dev_server(address, ui=False, log_path=root / "temporal.log")
            try:
                asyncio.run(wait_until_ready(address, server=server))
                before = _bench(
                    "before", old_tree, root / "before", address, options.runs, upgrade=False
                )
            finally:
                server.stop()
        load = uptime()
    _print_table(floors, after, before, load)
    write_results(
        RESULTS,
        "cli_bench",
        uptime_before=load_before,
        uptime_after=load,
        runs=options.runs,
        baseline_ref=None if options.no_baseline else options.baseline_ref,
        floors=floors,
        after=after,
        before=before,
    )
    print(f"\nwrote {RESULTS.relative_to(REPOSITORY)}")


if __name__ == "__main__":
    main()
