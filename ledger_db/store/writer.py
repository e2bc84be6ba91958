"""The batched writer: many callers' units of work in one database transaction.

Each caller hands :meth:`BatchWriter.run` a *unit of work*: a function of an open write
connection that reads, decides and writes one operation (``Ledger._apply`` of one request) and
returns its answer or raises its typed error. The writer is a *combining* writer, not a
thread: the first caller to arrive while no batch runs becomes the **leader**; it takes up to
``batch_max`` waiting units (its own first, then in arrival order), runs them in ONE database
transaction, each inside a SAVEPOINT, and commits once. Callers that arrive meanwhile wait on
their request; when the batch is done the leader answers everyone and hands leadership to the
first one still waiting, whose thread runs the next batch. A single caller therefore runs its
own unit at once, on its own thread, as before (no hand-off, no savepoint: a batch of one runs
bare); under load the commit (the fsync) is paid once per batch.

Answers
    A unit that raises (a typed :class:`~ledger_db.errors.LedgerError`, or anything else) rolls
    back to its savepoint alone and its caller gets that exception; the others commit together.
    Every caller gets its own answer, and only once the batch committed. A duplicate
    idempotency key inside one batch sees the first unit's claim and result (same transaction)
    and replays.

Retries
    A transient error (serialization failure, deadlock, lock timeout, SQLite busy, the
    idempotency-claim race; :func:`~ledger_db.store.conflicts.is_retryable`) inside a unit rolls
    back that unit alone; it runs again after the batch committed (its locks may be what another
    process waits for). A transient error at commit runs the whole batch again. Two processes
    (two ``Ledger`` objects) writing one PostgreSQL database can deadlock across batches, since a
    batch holds the locks of its earlier units while taking those of its later ones: PostgreSQL
    breaks the deadlock and the retry resolves it. A unique violation that is not the claim race
    is the typed error it means (:func:`~ledger_db.store.conflicts.collision_error`).

Both engines: on SQLite the transaction begins ``IMMEDIATE`` (one writer at a time); on
PostgreSQL each batch is one transaction on one pooled connection.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from ledger_db import journal, limits
from ledger_db.store.conflicts import collision_error, is_retryable

__all__ = ["BATCH_MAX_DEFAULT", "BatchWriter", "WriterStats"]

log = logging.getLogger(__name__)

T = TypeVar("T")
UnitOfWork = Callable[[sa.Connection], T]
BATCH_MAX_DEFAULT = 64


@dataclass
class _Request(Generic[T]):
    operation: str
    body: UnitOfWork[T]
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    finished: bool = False
    value: Any = None
    error: BaseException | None = None
    attempts: int = 0

    def answer(self) -> T:
        if self.error is not None:
            raise self.error
        result: T = self.value
        return result


@dataclass
class WriterStats:
    """What the writer did: transactions committed, units run, and batch sizes seen."""

    batches: int = 0
    units: int = 0
    retries: int = 0
    sizes: Counter[int] = field(default_factory=Counter)

    def mean_batch(self) -> float:
        return self.units / self.batches if self.batches else 0.0


class _Retry(Exception):
    """A unit met a transient error: run it again after this batch."""

    def __init__(self, error: sa.exc.DBAPIError) -> None:
        super().__init__(str(error))
        self.error = error


class BatchWriter:
    """Runs units of work of many threads in shared transactions (see the module docstring)."""

    def __init__(self, engine: sa.Engine, *, batch_max: int = BATCH_MAX_DEFAULT) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self.engine = engine
        self.batch_max = batch_max
        self.stats = WriterStats()
        self._lock = threading.Lock()
        self._queue: deque[_Request[Any]] = deque()
        self._busy = False
        self._local = threading.local()

    def run(self, operation: str, body: UnitOfWork[T]) -> T:
        """Runs ``body`` in a write transaction shared with other callers' units; returns its
        answer or raises its error once the transaction committed."""
        if getattr(self._local, "leading", False):
            # A unit that itself writes (not done by the ledger today) cannot wait for the batch
            # it is part of: it runs in a transaction of its own, as before batching.
            return self._run_alone(operation, body)
        request: _Request[T] = _Request(operation, body)
        with self._lock:
            self._queue.append(request)
            if not self._busy:
                self._busy = True
                request.lead = True
        if not request.lead:
            request.done.wait()
            if request.finished:
                return request.answer()
        self._lead()
        return request.answer()

    # ------------------------------------------------------------------ the leader

    def _lead(self) -> None:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self.batch_max, len(self._queue)))]
        self._local.leading = True
        try:
            self._execute(batch)
        except BaseException as error:  # an interrupt: nobody may wait forever
            for request in batch:
                if not request.finished:
                    request.error, request.finished = error, True
            raise
        finally:
            self._local.leading = False
            for request in batch:
                if not request.lead:
                    request.done.set()
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._busy = False

    def _execute(self, batch: list[_Request[Any]]) -> None:
        """Runs ``batch`` until every unit has its answer; transient failures run again."""
        pending = batch
        while pending:
            retry = self._transaction(pending)
            for request in retry:
                request.attempts += 1
            failed = [r for r in retry if r.attempts >= limits.retry_attempts_max]
            for request in failed:
                request.finished = True
            pending = [r for r in retry if not r.finished]
            if pending:
                self.stats.retries += len(pending)
                attempt = max(request.attempts for request in pending)
                time.sleep(min(0.2, 0.002 * 2**attempt) * (0.5 + random.random()))

    def _transaction(self, batch: list[_Request[Any]]) -> list[_Request[Any]]:
        """One transaction over ``batch``; returns the units to run again. Sets the answer
        of every other unit (kept only if the commit succeeds)."""
        retry: list[_Request[Any]] = []
        answered: list[_Request[Any]] = []
        try:
            with (
                self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn,
                conn.begin(),
            ):
                if len(batch) == 1:
                    request = batch[0]
                    journal.forget_balances(conn)
                    request.value, request.error = request.body(conn), None
                    answered.append(request)
                else:
                    for request in batch:
                        journal.forget_balances(conn)
                        try:
                            with conn.begin_nested():
                                request.value = request.body(conn)
                                request.error = None
                        except sa.exc.DBAPIError as error:
                            if is_retryable(error):
                                retry.append(request)
                                request.error = error
                                continue
                            request.error = collision_error(error) or error
                        except Exception as error:
                            request.error = error
                        answered.append(request)
        except sa.exc.DBAPIError as error:
            # The whole transaction is gone (at commit, or a batch of one): all run again, or
            # all get the error.
            if is_retryable(error):
                for request in batch:
                    request.error = error
                return batch
            failure = collision_error(error) or error
            for request in batch:
                request.error, request.finished = failure, True
            return []
        except Exception as error:
            # A batch of one raised (its typed error): the transaction rolled back.
            for request in batch:
                request.error, request.finished = error, True
            return []
        for request in answered:
            request.finished = True
        self.stats.batches += 1
        self.stats.units += len(answered)
        self.stats.sizes[len(batch)] += 1
        return retry

    def _run_alone(self, operation: str, body: UnitOfWork[T]) -> T:
        request: _Request[T] = _Request(operation, body)
        self._execute([request])
        return request.answer()
