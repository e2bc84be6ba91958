"""The read API on a real uvicorn server: started and stopped from code (``compute-ledger
serve``, the tests, the benchmark), on a port of its own or on sockets handed over.

    server = ApiServer(ledger, ApiSettings(port=8700))
    await server.start()           # returns once it listens; fails fast if it cannot
    ...
    await server.stop()            # graceful: open streams are closed, then the loop stops
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import signal
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn

from starter.api.app import create_app
from starter.output import CliError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ledger_db import Ledger
    from starter.config import ApiSettings

__all__ = ["ApiServer", "event_loop_factory", "serve_in_thread"]

_start_poll_interval_seconds = 0.02
_graceful_shutdown_seconds = 10


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling: whoever runs it decides when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, every line on stderr: stdout is the command's own (``serve --json``
    prints JSON Lines there), and uvicorn sends its access log to stdout by default."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    for handler in config["handlers"].values():
        handler["stream"] = "ext://sys.stderr"
    return config


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when it is installed (faster I/O), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop
    return uvloop.new_event_loop


class ApiServer:
    """One uvicorn server serving :func:`starter.api.app.create_app` for ``ledger``."""

    def __init__(
        self,
        ledger: Ledger,
        settings: ApiSettings,
        *,
        sockets: list[socket.socket] | None = None,
        access_log: bool | None = None,
        log_level: str = "info",
    ) -> None:
        self.settings = settings
        self.app: FastAPI = create_app(ledger, settings)
        self._sockets = sockets
        config = uvicorn.Config(
            self.app,
            log_config=_log_config(),
            host=settings.host,
            port=settings.port,
            ws="websockets-sansio",
            lifespan="on",
            access_log=settings.access_log if access_log is None else access_log,
            log_level=log_level,
            timeout_graceful_shutdown=_graceful_shutdown_seconds,
            server_header=False,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host, port = self.address
        shown = "127.0.0.1" if host in {"0.0.0.0", ""} else host
        return f"http://{shown}:{port}"

    @property
    def address(self) -> tuple[str, int]:
        if self._sockets:
            bound = self._sockets[0].getsockname()
            return str(bound[0]), int(bound[1])
        return self.settings.host, self.settings.port

    async def start(self) -> None:
        """Starts serving; returns once the server listens (or raises why it cannot)."""
        if self._sockets is None:
            _check_free(self.settings.host, self.settings.port)
        self._task = asyncio.create_task(self._server.serve(sockets=self._sockets))
        while not self._server.started:
            if self._task.done():
                # uvicorn exits with SystemExit when its start-up fails; say why instead.
                with contextlib.suppress(SystemExit):
                    self._task.result()
                raise CliError(
                    "internal_error", f"the read API did not start on {self.url} (see its log)"
                )
            await asyncio.sleep(_start_poll_interval_seconds)

    async def wait_stopped(self, *, stop_on_signals: bool = False) -> None:
        """Waits until the server has stopped; with ``stop_on_signals``, SIGINT/SIGTERM stop it."""
        if self._task is None:
            return
        if stop_on_signals:
            loop = asyncio.get_running_loop()
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(signal_number, self.request_stop)
        await self._task

    def request_stop(self) -> None:
        self._server.should_exit = True

    async def stop(self) -> None:
        self.request_stop()
        await self.wait_stopped()


def _check_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise CliError(
                "usage_error",
                f"cannot listen on {host}:{port} ({error.strerror}); choose another --port",
                host=host,
                port=port,
            ) from None


@contextlib.contextmanager
def serve_in_thread(
    ledger: Ledger,
    settings: ApiSettings,
    *,
    sockets: list[socket.socket] | None = None,
    access_log: bool = False,
    log_level: str = "warning",
) -> Iterator[ApiServer]:
    """The read API in a thread of this process (its own event loop), stopped on the way out.

    For tests and tools that keep the ledger object in hand; ``compute-ledger serve`` runs it
    on the main thread instead.
    """
    server = ApiServer(
        ledger, settings, sockets=sockets, access_log=access_log, log_level=log_level
    )
    started = threading.Event()
    failure: list[BaseException] = []
    loop_holder: list[asyncio.AbstractEventLoop] = []

    async def run() -> None:
        loop_holder.append(asyncio.get_running_loop())
        try:
            await server.start()
        except BaseException as error:
            failure.append(error)
            started.set()
            return
        started.set()
        await server.wait_stopped()

    thread = threading.Thread(target=_run_loop, args=(run,), name="read-api", daemon=True)
    thread.start()
    started.wait()
    if failure:
        thread.join()
        raise failure[0]
    try:
        yield server
    finally:
        # The server may have stopped already (its loop closed): then there is nothing to ask.
        with contextlib.suppress(RuntimeError):
            loop_holder[0].call_soon_threadsafe(server.request_stop)
        thread.join(timeout=_graceful_shutdown_seconds + 5)


def _run_loop(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(main())
