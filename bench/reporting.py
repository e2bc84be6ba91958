"""What the CLI and API benchmarks share: the machine's load, a scratch PostgreSQL database,
and the JSON file of results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

POSTGRES_ADMIN_URL = os.environ.get(
    "LEDGER_TEST_POSTGRES_URL", "postgresql+psycopg://127.0.0.1:5432/test"
)

__all__ = ["POSTGRES_ADMIN_URL", "postgres_database", "uptime", "write_results"]


def uptime() -> str:
    """``uptime``'s line: the load the figures were measured under."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database of this run's own (dropped afterwards); yields its URL."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
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


def write_results(path: Path, benchmark: str, **payload: Any) -> None:
    """``bench/results/<name>.json``: the figures with the machine they were measured on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": benchmark,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        **payload,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
