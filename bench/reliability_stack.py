"""The processes of a reliability run, each started, killed and restarted by the harness.

- :class:`Temporal`: ``temporal server start-dev`` on a port of its own with a database file,
  so that a SIGKILL and a restart on the same file keeps every workflow;
- :class:`Nats`: a private ``nats-server -js`` with its own store directory;
- :class:`PrivatePostgres`: a PostgreSQL cluster of its own (``initdb``/``pg_ctl`` from the
  machine's binaries, run as the ``postgres`` user, own port and directory), never the shared
  server; or :func:`shared_postgres_database` for a fresh database on the shared one;
- :class:`WorkerProcess`: ``python worker.py`` as a user runs it, configured from the
  environment, with its log and its Prometheus metrics.

Nothing here imports the ledger's internals: the worker is a subprocess, the checks use the
public client.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from starter.dev import (
    DevServer,
    free_port,
    hold_search_attributes,
    start_dev_server,
    wait_until_ready,
)

REPOSITORY = Path(__file__).resolve().parents[1]
POSTGRES_BIN = Path(os.environ.get("LEDGER_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
WORKER_READY_LINE = "worker polling"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.3):
        return True
    return False


def wait_for_port(port: int, timeout_seconds: float, *, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited {process.returncode}")
        if port_open(port):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_seconds:g} s")


def _stop(process: subprocess.Popen[bytes] | None, timeout_seconds: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------------------------
# Temporal.
# ---------------------------------------------------------------------------------------------


@dataclass
class Temporal:
    """A dev server on a database file: SIGKILL it, start it again on the same file."""

    directory: Path
    port: int = field(default_factory=free_port)
    server: DevServer | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def database_path(self) -> Path:
        return self.directory / "temporal.db"

    async def start(self) -> None:
        self.starts += 1
        self.server = start_dev_server(
            self.address,
            database_path=self.database_path,
            log_path=self.directory / f"temporal-{self.starts}.log",
            ui=False,
            search_attributes=hold_search_attributes(),
        )
        await wait_until_ready(self.address, server=self.server, timeout_seconds=90)

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind, as a crashed host."""
        if self.server is not None:
            self.server.process.kill()
            self.server.process.wait()
            self.server.stop()  # closes the log file

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


# ---------------------------------------------------------------------------------------------
# NATS.
# ---------------------------------------------------------------------------------------------


def nats_binary() -> str:
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server is not on PATH (apt install nats-server)")
    return found


@dataclass
class Nats:
    """A private JetStream server; its store survives a kill (``-sd``)."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        store = self.directory / "nats-store"
        store.mkdir(parents=True, exist_ok=True)
        with (self.directory / f"nats-{self.starts}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [nats_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(store)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.port, 30, process=self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        _stop(self.process)


# ---------------------------------------------------------------------------------------------
# PostgreSQL.
# ---------------------------------------------------------------------------------------------


def _as_postgres(*command: str) -> list[str]:
    runner = shutil.which("runuser")
    if os.geteuid() != 0:
        return list(command)  # already an unprivileged user: run it as ourselves
    if runner:
        return [runner, "-u", "postgres", "--", *command]
    return ["su", "postgres", "-c", " ".join(command)]


@dataclass
class PrivatePostgres:
    """A cluster of the run's own: ``initdb`` into a directory owned by ``postgres``, ``pg_ctl``
    on a port of its own (TCP on 127.0.0.1, socket in the data directory), trust auth."""

    directory: Path
    port: int = field(default_factory=free_port)
    started: bool = False

    @property
    def data(self) -> Path:
        return self.directory / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/ledger"

    def _run(self, *command: str, timeout: float = 120) -> None:
        completed = subprocess.run(
            _as_postgres(*command), capture_output=True, text=True, timeout=timeout, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited {completed.returncode}:\n"
                f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
            )

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # The postgres user must reach its directory through the scratch tree.
            for parent in [self.directory, *self.directory.parents]:
                if parent == Path("/"):
                    break
                with contextlib.suppress(OSError):
                    parent.chmod(parent.stat().st_mode | 0o011)
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(
            str(POSTGRES_BIN / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        self.start()
        import sqlalchemy as sa

        admin = sa.create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql('CREATE DATABASE "ledger"')
        finally:
            admin.dispose()

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c max_connections=200"
        )
        self._run(
            str(POSTGRES_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        self.started = True

    def crash_stop(self) -> None:
        """``pg_ctl stop -m immediate``: every backend killed, no checkpoint (crash recovery on
        the next start)."""
        self._run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        self.started = False

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                self._run(str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
            self.started = False


@contextlib.contextmanager
def shared_postgres_database(prefix: str) -> Iterator[str]:
    """A fresh database on the machine's shared server (dropped afterwards)."""
    from bench.reporting import postgres_database

    with postgres_database(prefix) as url:
        yield url


# ---------------------------------------------------------------------------------------------
# Workers.
# ---------------------------------------------------------------------------------------------


def clean_environment(**overrides: str) -> dict[str, str]:
    """This process's environment without the ledger's own variables, plus ``overrides``."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEMPORAL_", "LEDGER_", "NATS_"))
    }
    environment["PYTHONPATH"] = str(REPOSITORY)
    environment.update(overrides)
    return environment


@dataclass
class WorkerProcess:
    """``python worker.py`` in its own process, as deployed; metrics on a port of its own."""

    name: str
    directory: Path
    environment: dict[str, str]
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: list[int | None] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    metrics_seen: dict[str, float] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.directory / f"worker-{self.name}.log"

    def start(self) -> None:
        self.starts += 1
        environment = {
            **self.environment,
            "LEDGER_METRICS_ADDRESS": f"127.0.0.1:{self.metrics_port}",
        }
        with self.log_path.open("ab") as log:
            log.write(f"=== start {self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, str(REPOSITORY / "worker.py")],
                cwd=REPOSITORY,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.pids.append(self.process.pid)

    def wait_ready(self, timeout_seconds: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        marker = f"=== start {self.starts} at"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log_tail()}")
            text = self.log_path.read_text(errors="replace")
            if WORKER_READY_LINE in text[text.rfind(marker) :]:
                return
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.name} not polling after {timeout_seconds:g} s")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: in-flight activities and workflow tasks are abandoned mid-way."""
        self.scrape()
        assert self.process is not None
        self.process.kill()
        self.exits.append(self.process.wait())

    def terminate(self, timeout_seconds: float) -> tuple[float, int | None]:
        """SIGTERM, then the seconds until the process exited and its status (None: it did
        not exit within ``timeout_seconds`` and was killed)."""
        self.scrape()
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            status: int | None = self.process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            status = None
        self.exits.append(status)
        return time.monotonic() - started, status

    def stop(self) -> None:
        if self.running():
            self.scrape()
        _stop(self.process, 30)

    def scrape(self) -> dict[str, float]:
        """Adds this run's counters to ``metrics_seen`` (a restart starts from zero)."""
        counters = scrape_counters(self.metrics_port)
        for name, value in counters.items():
            self.metrics_seen[name] = self.metrics_seen.get(name, 0.0) + value
        return counters

    def log_tail(self, size: int = 4000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-size:]

    def tracebacks(self) -> int:
        if not self.log_path.exists():
            return 0
        return self.log_path.read_text(errors="replace").count("Traceback (most recent call last)")


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN)\s*$")


def scrape_counters(port: int) -> dict[str, float]:
    """The ledger counters and the SDK's task counters of a worker's /metrics, summed over labels."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name = match.group(1)
        wanted = name.startswith("ledger_holds_") or name in {
            "temporal_workflow_task_execution_latency_count",
            "temporal_activity_execution_latency_count",
            "temporal_local_activity_execution_latency_count",
            "temporal_workflow_completed",
        }
        if wanted and not name.endswith("_created"):
            totals[name] = totals.get(name, 0.0) + float(match.group(3))
    return totals
