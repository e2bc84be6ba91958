"""The compute ledger's worker: every workflow and activity on one task queue.

Configured from the environment (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
``LEDGER_DATABASE_URL``, ``NATS_URL``, ``LEDGER_TASK_QUEUE`` default ``compute-ledger``); stops
gracefully on SIGINT/SIGTERM (in-flight activities finish, then the worker leaves). With
``NATS_URL`` set it also runs the outbox relay every ``LEDGER_RELAY_INTERVAL_SECONDS``. Every
``LEDGER_CHECKPOINT_INTERVAL_SECONDS`` (default 3600; 0 turns it off) it checkpoints the journal:
every tenant chain's head under one Merkle root, stored and published as a ``LEDGER_CHECKPOINT``
event (``ledger_db.checkpoint``), unless nothing was written since the last checkpoint.

``LEDGER_METRICS_ADDRESS`` (e.g. ``0.0.0.0:9464``) serves Prometheus metrics on
``http://<address>/metrics``: the SDK's own (``temporal_workflow_task_execution_latency``...)
and the ledger's counters (``ledger_holds_frozen``, ``ledger_holds_captured``,
``ledger_holds_released``, ``ledger_holds_expired``, ``ledger_hold_amount_minor``,
``ledger_business_errors`` and ``ledger_requests_refused`` by code...).

Both HoldWorkflow types run here: ``HoldWorkflowV2`` (``workflows.hold``) for new holds and the
frozen ``HoldWorkflow`` (``workflows.legacy``) for holds started before it. Local activity slots
are as many as the database serves calls at once (``ledger_capacity``), regular ones a few more.

    python worker.py            # or: compute-ledger worker

``build_worker`` and ``run_worker`` are reused by the CLI (``worker``, ``dev``) and the tests;
``register_search_attributes`` registers the hold search attributes on a (dev) server.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeIndexedValueType
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.events import EventActivities, EventPublisher, NatsSettings, relay_unsent
from activities.faults import FaultInjector
from activities.ledger import LedgerActivities
from ledger_db import Ledger
from ledger_db.checkpoint import Checkpoint, checkpoint_event, take_checkpoint
from starter.config import ClientConfig, connect_temporal
from workflows.hold import HoldWorkflow
from workflows.legacy import HoldWorkflowV1
from workflows.search_attributes import ALL_SEARCH_ATTRIBUTE_KEYS

__all__ = [
    "HOLD_WORKFLOWS",
    "METRICS_ADDRESS_VARIABLE",
    "build_worker",
    "checkpoint_once",
    "install_prometheus_runtime",
    "main",
    "register_search_attributes",
    "run_checkpoints_periodically",
    "run_relay_periodically",
    "run_worker",
]

log = logging.getLogger("compute_ledger.worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=10)
METRICS_ADDRESS_VARIABLE = "LEDGER_METRICS_ADDRESS"
BATCH_ACTIVITY_SLOTS = 4
# The lean HoldWorkflow for new holds, and the first one until the holds it started have ended.
HOLD_WORKFLOWS: tuple[type, ...] = (HoldWorkflow, HoldWorkflowV1)

# Other packages contribute workflows and activities through these optional hooks, so that one
# worker runs everything: ``WORKFLOWS`` (a sequence of workflow classes) in the workflow module
# and ``activities_for(ledger) -> list`` in the activity module.
_CONTRIBUTIONS = (("workflows.batch", "activities.batch"),)


def _contributed(ledger: Ledger) -> tuple[list[type], list[Callable[..., Any]]]:
    workflows: list[type] = []
    activities: list[Callable[..., Any]] = []
    for workflow_module_name, activity_module_name in _CONTRIBUTIONS:
        try:
            workflow_module = importlib.import_module(workflow_module_name)
        except ModuleNotFoundError as error:
            if error.name != workflow_module_name:
                raise
            continue
        workflows.extend(getattr(workflow_module, "WORKFLOWS", ()))
        try:
            activity_module = importlib.import_module(activity_module_name)
        except ModuleNotFoundError as error:
            if error.name != activity_module_name:
                raise
            continue
        factory = getattr(activity_module, "activities_for", None)
        if factory is not None:
            activities.extend(factory(ledger))
    return workflows, activities


def build_worker(
    client: Client,
    ledger: Ledger,
    *,
    task_queue: str,
    nats: NatsSettings | None = None,
    publisher: EventPublisher | None = None,
    faults: FaultInjector | None = None,
    workflows: Sequence[type] = (),
    activities: Sequence[Callable[..., Any]] = (),
    include_contributions: bool = True,
    **worker_options: Any,
) -> Worker:
    """A worker running both HoldWorkflow types and their activities (plus contributed ones).

    ``client`` must use the pydantic data converter (``starter.client.connect_temporal``).
    Activity slots default to the ledger's connection capacity, local and regular alike.
    """
    publisher = publisher or EventPublisher(nats or NatsSettings())
    ledger_activities = LedgerActivities(ledger, faults or FaultInjector.from_env(), publisher)
    event_activities = EventActivities(ledger, publisher)
    extra_workflows: list[type] = list(workflows)
    extra_activities: list[Callable[..., Any]] = list(activities)
    if include_contributions:
        contributed_workflows, contributed_activities = _contributed(ledger)
        extra_workflows.extend(contributed_workflows)
        extra_activities.extend(contributed_activities)
    worker_options.setdefault("graceful_shutdown_timeout", GRACEFUL_SHUTDOWN)
    # A slot per call the database serves at once: a ledger step that got a slot never waits
    # for a connection, and no more calls pile up on the database than it serves. Regular
    # activities get a few more slots for the batch activities, which run long on threads of
    # their own and must not keep a ledger step's fallback waiting.
    worker_options.setdefault("max_concurrent_local_activities", ledger_activities.capacity)
    worker_options.setdefault(
        "max_concurrent_activities", ledger_activities.capacity + BATCH_ACTIVITY_SLOTS
    )
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[*HOLD_WORKFLOWS, *extra_workflows],
        activities=[*ledger_activities.all(), *event_activities.all(), *extra_activities],
        **worker_options,
    )


async def run_relay_periodically(
    ledger: Ledger, publisher: EventPublisher, *, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Sends unsent outbox events every ``interval_seconds`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            sent = await relay_unsent(ledger, publisher)
            if sent:
                log.info("relay sent %d outbox events", sent)
        except Exception as error:  # the bus may be down: the next round tries again
            log.warning("relay round failed: %s", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)


async def checkpoint_once(ledger: Ledger, publisher: EventPublisher) -> Checkpoint | None:
    """Takes a checkpoint unless the books are unchanged since the last one, and publishes its
    event at once, best effort (the relay sends it otherwise). Returns the new checkpoint."""
    checkpoint, stored = await asyncio.to_thread(
        take_checkpoint, ledger.engine, ledger.clock(), if_changed=True
    )
    if not stored:
        return None
    log.info(
        "checkpoint %s: %d chains, root %s",
        checkpoint.checkpoint_id,
        checkpoint.tree_size,
        checkpoint.root,
    )
    if publisher.enabled:
        sent = await publisher.publish_best_effort([checkpoint_event(checkpoint)])
        if sent:
            await asyncio.to_thread(ledger.mark_events_sent, sent)
    return checkpoint


async def run_checkpoints_periodically(
    ledger: Ledger, publisher: EventPublisher, *, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Checkpoints the journal every ``interval_seconds`` (the first after one interval) until
    ``stop`` is set. Several workers may each take one: checkpoints are cheap and any of them
    serves an audit."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)
        if stop.is_set():
            return
        try:
            await checkpoint_once(ledger, publisher)
        except Exception as error:  # the database may be down: the next round tries again
            log.warning("checkpoint round failed: %s", error)


async def run_worker(
    config: ClientConfig | None = None,
    stop_event: asyncio.Event | None = None,
    *,
    client: Client | None = None,
    ledger: Ledger | None = None,
    faults: FaultInjector | None = None,
    ready: asyncio.Event | None = None,
    metrics_address: str | None = None,
) -> None:
    """Runs the worker (and the relay when a bus is configured) until ``stop_event`` is set.

    Without ``stop_event``, SIGINT and SIGTERM stop it. ``metrics_address`` (default
    ``LEDGER_METRICS_ADDRESS``) serves Prometheus metrics, for the client this call connects.
    """
    config = config or ClientConfig.from_env()
    metrics_address = metrics_address or os.environ.get(METRICS_ADDRESS_VARIABLE) or None
    if metrics_address and client is None:
        install_prometheus_runtime(metrics_address)
    stop = stop_event or asyncio.Event()
    if stop_event is None:
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal_number, stop.set)
    owns_ledger = ledger is None
    if ledger is None:
        ledger = await asyncio.to_thread(Ledger.from_url, config.database_url)
    publisher = EventPublisher(config.nats)
    try:
        client = client or await connect_temporal(config)
        worker = build_worker(
            client, ledger, task_queue=config.task_queue, publisher=publisher, faults=faults
        )
        relay_task: asyncio.Task[None] | None = None
        if publisher.enabled:
            relay_task = asyncio.create_task(
                run_relay_periodically(
                    ledger, publisher, interval_seconds=config.relay_interval_seconds, stop=stop
                )
            )
        checkpoint_task: asyncio.Task[None] | None = None
        if config.checkpoint_interval_seconds > 0:
            checkpoint_task = asyncio.create_task(
                run_checkpoints_periodically(
                    ledger,
                    publisher,
                    interval_seconds=config.checkpoint_interval_seconds,
                    stop=stop,
                )
            )
        worker_task = asyncio.create_task(worker.run())
        log.info(
            "worker polling %s (namespace %s, task queue %s)",
            config.temporal_address,
            config.namespace,
            config.task_queue,
        )
        if ready is not None:
            ready.set()
        stop_task = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({worker_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        stop_task.cancel()
        if worker_task not in done:
            await worker.shutdown()
        if relay_task is not None:
            await relay_task
        if checkpoint_task is not None:
            await checkpoint_task
        worker_task.result()
    finally:
        await publisher.close()
        if owns_ledger:
            ledger.close()


def install_prometheus_runtime(bind_address: str) -> Runtime:
    """Makes the process's default Temporal runtime export metrics for Prometheus scraping on
    ``http://<bind_address>/metrics``; clients connected afterwards (and their workers) use it."""
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address))
    )
    Runtime.set_default(runtime, error_if_already_set=False)
    log.info("metrics on http://%s/metrics", bind_address)
    return runtime


_INDEXED_VALUE_TYPES = {
    SearchAttributeIndexedValueType.KEYWORD: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    SearchAttributeIndexedValueType.INT: IndexedValueType.INDEXED_VALUE_TYPE_INT,
    SearchAttributeIndexedValueType.TEXT: IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
    SearchAttributeIndexedValueType.DATETIME: IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
}


async def register_search_attributes(client: Client, *, namespace: str | None = None) -> list[str]:
    """Registers the hold search attributes on the server (operator service); idempotent.

    Returns the names it added (empty when all were there already).
    """
    namespace = namespace or client.namespace
    existing: set[str] = set()
    with contextlib.suppress(Exception):
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = set(listed.custom_attributes) | set(listed.system_attributes)
    missing = {
        key.name: _INDEXED_VALUE_TYPES[key.indexed_value_type]
        for key in ALL_SEARCH_ATTRIBUTE_KEYS
        if key.name not in existing
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


def main() -> None:
    """``python worker.py``: run the worker in the foreground until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_worker())


if __name__ == "__main__":
    main()
