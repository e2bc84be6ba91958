"""Running ``compute-ledger`` as a subprocess, as a user would, against a real dev server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starter.dev import free_port

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
command_timeout_seconds = 120.0


def program() -> list[str]:
    """The installed ``compute-ledger`` script if there is one, else ``python -m starter``."""
    script = Path(sys.executable).parent / "compute-ledger"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "starter"]


def free_port_pair() -> int:
    """A free gRPC port whose Web UI port (port + 1000) is free as well."""
    return free_port(also_free_offset=1000)


def clean_environment(**overrides: str) -> dict[str, str]:
    """The test process's environment without the ledger's variables, plus ``overrides``."""
    # Every TEMPORAL_* variable counts now (the SDK's environment configuration: profile,
    # API key, TLS), and so does every LEDGER_* and NATS_* one.
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEMPORAL_", "LEDGER_", "NATS_"))
    }
    python_path = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = (
        f"{REPOSITORY_ROOT}{os.pathsep}{python_path}" if python_path else str(REPOSITORY_ROOT)
    )
    # Rich must not wrap or colour what the tests read.
    environment["NO_COLOR"] = "1"
    environment["COLUMNS"] = "200"
    environment.update(overrides)
    return environment


@dataclass
class Result:
    """One finished command: its status, its stdout parsed as JSON when it is, and stderr."""

    status: int
    stdout: str
    stderr: str
    arguments: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as error:
            raise AssertionError(
                f"not JSON ({error}) from {self.arguments}:\n{self.stdout}\n{self.stderr}"
            ) from error

    def expect_ok(self) -> Any:
        assert self.status == 0, (
            f"{self.arguments} exited {self.status}:\n{self.stdout}\n{self.stderr}"
        )
        return self.json

    def expect_error(self, code: str, status: int) -> dict[str, Any]:
        body = self.json
        assert "error" in body, body
        assert body["error"]["code"] == code, (body, self.stderr)
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert self.status == status, (self.status, body)
        return dict(body["error"])


@dataclass
class Cli:
    """Runs the program in ``directory`` with ``environment``."""

    directory: Path
    environment: dict[str, str]

    def run(self, *arguments: str, json_mode: bool = True, timeout: float | None = None) -> Result:
        full = [*arguments, "--json"] if json_mode else list(arguments)
        completed = subprocess.run(
            [*program(), *full],
            cwd=self.directory,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout or command_timeout_seconds,
            check=False,
        )
        return Result(completed.returncode, completed.stdout, completed.stderr, full)

    def start(self, *arguments: str, log_path: Path | None = None) -> subprocess.Popen[str]:
        """A long-running command (worker, events --follow); stop it with :func:`stop`."""
        if log_path is not None:
            with log_path.open("ab") as log:
                return subprocess.Popen(
                    [*program(), *arguments],
                    cwd=self.directory,
                    env=self.environment,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
        return subprocess.Popen(
            [*program(), *arguments],
            cwd=self.directory,
            env=self.environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def stop(process: subprocess.Popen[str], timeout_seconds: float = 30.0) -> tuple[int, str, str]:
    """Ctrl-C, as a person would; SIGKILL if it does not end in time. Returns its output."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate(timeout=timeout_seconds)
    return process.returncode, stdout or "", stderr or ""
