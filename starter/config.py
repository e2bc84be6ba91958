"""Where the ledger lives: the one configuration module of the client, the CLI, the worker, the
read API and the demo.

Importing it is cheap on purpose (no Temporal, no NATS, no SQLAlchemy): the ledger-only commands
read the database URL from here and never pay for the Temporal SDK. Three groups of settings:

- the ledger database: ``LEDGER_DATABASE_URL``, default SQLite under ``./.compute-ledger/``
  (:func:`database_url`);
- Temporal (:class:`ClientConfig`): the SDK's own environment configuration
  (``temporalio.envconfig``): a TOML profile (``TEMPORAL_CONFIG_FILE``, default
  ``~/.config/temporalio/temporal.toml``; ``TEMPORAL_PROFILE``, default ``default``) overridden
  by the standard variables ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``,
  ``TEMPORAL_TLS``, ``TEMPORAL_TLS_CLIENT_CERT_PATH`` / ``_DATA``,
  ``TEMPORAL_TLS_CLIENT_KEY_PATH`` / ``_DATA``, ``TEMPORAL_TLS_SERVER_CA_CERT_PATH`` / ``_DATA``,
  ``TEMPORAL_TLS_SERVER_NAME`` and ``TEMPORAL_GRPC_META_*``, exactly as the Temporal CLI and
  every SDK read them; an API key turns TLS on (Temporal Cloud). Then ``LEDGER_TASK_QUEUE``,
  ``NATS_URL`` (``NATS_STREAM``, ``NATS_SUBJECT_PREFIX``), ``LEDGER_RELAY_INTERVAL_SECONDS``
  and ``LEDGER_CHECKPOINT_INTERVAL_SECONDS`` (the worker's journal checkpoints; 0 turns them off);
- the read API (:class:`ApiSettings`): ``LEDGER_API_*``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from temporalio.client import Client
    from temporalio.service import TLSConfig

    from activities.events import NatsSettings

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_TASK_QUEUE",
    "DEFAULT_TEMPORAL_ADDRESS",
    "STATE_DIRECTORY_NAME",
    "ApiSettings",
    "ClientConfig",
    "TemporalConfigError",
    "apply_environment_defaults",
    "connect_temporal",
    "database_url",
    "default_database_url",
    "temporal_connect_options",
]

# Everything the embedded defaults write (SQLite ledger, dev server state, logs) goes here,
# under the working directory, so a fresh checkout needs no setup and `rm -r` resets it.
STATE_DIRECTORY_NAME = ".compute-ledger"
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "compute-ledger"
DEFAULT_RELAY_INTERVAL_SECONDS = 10.0
DEFAULT_CHECKPOINT_INTERVAL_SECONDS = 3600.0
DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8700


class TemporalConfigError(ValueError):
    """The Temporal profile or the ``TEMPORAL_*`` variables cannot be used as they are."""


# ---------------------------------------------------------------------------------------------
# The ledger database.
# ---------------------------------------------------------------------------------------------


def default_database_url(directory: Path | None = None) -> str:
    """The embedded default: SQLite under ``./.compute-ledger/`` of the working directory."""
    state_directory = (directory or Path.cwd()) / STATE_DIRECTORY_NAME
    return f"sqlite:///{(state_directory / 'ledger.db').resolve()}"


def apply_environment_defaults() -> None:
    """Fills in ``LEDGER_DATABASE_URL`` with the SQLite default and creates its directory.

    Done once at start-up so that the client, the in-process worker and every later command in
    the same directory use the same ledger file, whichever of them ``ledger_db`` builds.
    """
    url = os.environ.get("LEDGER_DATABASE_URL", "").strip()
    if not url:
        url = default_database_url()
        os.environ["LEDGER_DATABASE_URL"] = url
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) not in {"", ":memory:"}:
            path.parent.mkdir(parents=True, exist_ok=True)


def database_url() -> str:
    """The ledger database of this process (after :func:`apply_environment_defaults`)."""
    apply_environment_defaults()
    return os.environ["LEDGER_DATABASE_URL"]


# ---------------------------------------------------------------------------------------------
# Temporal, the bus and the task queue.
# ---------------------------------------------------------------------------------------------


def _default_nats() -> NatsSettings:
    from activities.events import NatsSettings

    return NatsSettings()


@dataclass(frozen=True)
class ClientConfig:
    """Where the ledger lives: Temporal, the database and the bus. Shared by client and worker.

    ``api_key``, ``tls`` and ``rpc_metadata`` are what :func:`connect_temporal` hands to
    ``Client.connect``; they stay out of ``repr`` because they carry secrets.
    """

    temporal_address: str = DEFAULT_TEMPORAL_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = DEFAULT_TASK_QUEUE
    database_url: str | None = None
    nats: NatsSettings = field(default_factory=_default_nats)
    relay_interval_seconds: float = DEFAULT_RELAY_INTERVAL_SECONDS
    # How often the worker checkpoints the journal (ledger_db.checkpoint); 0 means never.
    checkpoint_interval_seconds: float = DEFAULT_CHECKPOINT_INTERVAL_SECONDS
    # The time-skipping test server has no Update-With-Start: there the client starts the
    # workflow (USE_EXISTING) and then sends the freeze update, which the workflow answers alike.
    update_with_start: bool = True
    api_key: str | None = field(default=None, repr=False)
    tls: bool | TLSConfig = field(default=False, repr=False)
    rpc_metadata: Mapping[str, str] = field(default_factory=dict, repr=False)
    profile: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientConfig:
        """The configuration of this environment (``os.environ`` unless given).

        The Temporal part is the SDK's ``temporalio.envconfig`` profile with the ``TEMPORAL_*``
        overrides applied; a missing profile file is no error (the defaults apply), a profile
        asked for by name that the file lacks is.
        """
        from activities.events import NatsSettings

        environ = os.environ if environ is None else environ
        connect = _temporal_profile(environ)
        return cls(
            temporal_address=str(connect.get("target_host") or DEFAULT_TEMPORAL_ADDRESS),
            namespace=str(connect.get("namespace") or DEFAULT_NAMESPACE),
            task_queue=environ.get("LEDGER_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
            database_url=environ.get("LEDGER_DATABASE_URL") or None,
            nats=NatsSettings.from_env(environ),
            relay_interval_seconds=float(
                environ.get("LEDGER_RELAY_INTERVAL_SECONDS") or DEFAULT_RELAY_INTERVAL_SECONDS
            ),
            checkpoint_interval_seconds=float(
                environ.get("LEDGER_CHECKPOINT_INTERVAL_SECONDS")
                or DEFAULT_CHECKPOINT_INTERVAL_SECONDS
            ),
            api_key=connect.get("api_key"),
            tls=connect.get("tls", False),
            rpc_metadata=dict(connect.get("rpc_metadata") or {}),
            profile=environ.get("TEMPORAL_PROFILE") or None,
        )

    @property
    def nats_url(self) -> str | None:
        return self.nats.url


def _temporal_profile(environ: Mapping[str, str]) -> dict[str, Any]:
    """``temporalio.envconfig``'s connect arguments for this environment."""
    from temporalio.envconfig import ClientConfigProfile

    try:
        profile = ClientConfigProfile.load(override_env_vars=dict(environ))
        return dict(profile.to_client_connect_config())
    except OSError as error:
        raise TemporalConfigError(f"a Temporal TLS file cannot be read: {error}") from error
    except Exception as error:
        # The SDK's bridge raises its own ConfigError (an unknown profile, a malformed file).
        raise TemporalConfigError(f"the Temporal client configuration is invalid: {error}") from (
            error
        )


def temporal_connect_options(config: ClientConfig) -> dict[str, Any]:
    """The keyword arguments of ``temporalio.client.Client.connect`` for ``config``."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    return {
        "target_host": config.temporal_address,
        "namespace": config.namespace,
        "api_key": config.api_key,
        "tls": config.tls,
        "rpc_metadata": dict(config.rpc_metadata),
        "data_converter": pydantic_data_converter,
    }


async def connect_temporal(config: ClientConfig) -> Client:
    """A Temporal client with the pydantic data converter, as every part of the project uses."""
    from temporalio.client import Client

    return await Client.connect(**temporal_connect_options(config))


# ---------------------------------------------------------------------------------------------
# The read API.
# ---------------------------------------------------------------------------------------------


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip()
    return float(text) if text else default


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    return int(text) if text else default


@dataclass(frozen=True)
class ApiSettings:
    """How ``compute-ledger serve`` serves the read API and streams events (``LEDGER_API_*``).

    Each event stream reads the outbox after the sequence it last sent. Without a bus it polls
    every ``stream_poll_interval_seconds``; with NATS (``NATS_URL``) a message on the tenant's
    subjects wakes it at once and it polls only every ``stream_bus_poll_interval_seconds``, for
    events the bus never carried. At most ``stream_queue_size`` events wait per connection; a
    client that takes nothing for ``stream_send_timeout_seconds`` is disconnected (1013).
    """

    host: str = DEFAULT_API_HOST
    port: int = DEFAULT_API_PORT
    nats: NatsSettings | None = None
    stream_poll_interval_seconds: float = 0.5
    stream_bus_poll_interval_seconds: float = 5.0
    stream_queue_size: int = 256
    stream_send_timeout_seconds: float = 10.0
    stream_close_timeout_seconds: float = 5.0
    stream_key_check_interval_seconds: float = 5.0
    cors_origins: tuple[str, ...] = ()
    access_log: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        environ = os.environ if environ is None else environ
        nats = None
        if environ.get("NATS_URL"):
            from activities.events import NatsSettings

            nats = NatsSettings.from_env(environ)
        default = cls()
        origins = environ.get("LEDGER_API_CORS_ORIGINS", "")
        return cls(
            host=environ.get("LEDGER_API_HOST") or default.host,
            port=_int(environ, "LEDGER_API_PORT", default.port),
            nats=nats,
            stream_poll_interval_seconds=_float(
                environ,
                "LEDGER_API_STREAM_POLL_INTERVAL_SECONDS",
                default.stream_poll_interval_seconds,
            ),
            stream_bus_poll_interval_seconds=_float(
                environ,
                "LEDGER_API_STREAM_BUS_POLL_INTERVAL_SECONDS",
                default.stream_bus_poll_interval_seconds,
            ),
            stream_queue_size=_int(
                environ, "LEDGER_API_STREAM_QUEUE_SIZE", default.stream_queue_size
            ),
            stream_send_timeout_seconds=_float(
                environ,
                "LEDGER_API_STREAM_SEND_TIMEOUT_SECONDS",
                default.stream_send_timeout_seconds,
            ),
            stream_close_timeout_seconds=_float(
                environ,
                "LEDGER_API_STREAM_CLOSE_TIMEOUT_SECONDS",
                default.stream_close_timeout_seconds,
            ),
            stream_key_check_interval_seconds=_float(
                environ,
                "LEDGER_API_STREAM_KEY_CHECK_INTERVAL_SECONDS",
                default.stream_key_check_interval_seconds,
            ),
            cors_origins=tuple(origin.strip() for origin in origins.split(",") if origin.strip()),
            access_log=environ.get("LEDGER_API_ACCESS_LOG", "1").strip().lower()
            not in {"0", "false", "no", "off"},
        )
