"""A test-only fault hook: make chosen activity steps fail, a set number of times.

- :meth:`FaultInjector.fail`: a transient fault raised *after* the ledger committed, which is
  the hard case for a saga: Temporal retries the activity, the ledger answers from its
  idempotency record, and nothing is posted twice. Configured in code
  (``FaultInjector({"capture": 1})``) or, for a worker in another process, through
  ``LEDGER_TEST_FAULTS`` such as ``capture:1,finalize:2``;
- :meth:`FaultInjector.refuse`: the ledger's refusal with a given code, *instead of* the call
  (e.g. a payout refused with ``account_closed``, which no ledger operation can cause yet);
- :meth:`FaultInjector.make_unavailable`: a transient fault *instead of* the call, as when the
  database does not answer, for a set number of attempts.

Empty by default.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from ledger_db.errors import error_class_for_code

__all__ = ["FAULTS_ENVIRONMENT_VARIABLE", "FaultInjector", "InjectedFault"]

FAULTS_ENVIRONMENT_VARIABLE = "LEDGER_TEST_FAULTS"


class InjectedFault(RuntimeError):
    """A transient failure made on purpose by a test (retryable, like a lost connection)."""


class FaultInjector:
    """Counts down, per activity step, how many more times that step should fail."""

    def __init__(self, plan: Mapping[str, int] | None = None) -> None:
        self._remaining: dict[str, int] = dict(plan or {})
        self._injected: dict[str, int] = {}
        self._refusals: dict[str, list[str]] = {}
        self._unavailable: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FaultInjector:
        environ = os.environ if environ is None else environ
        plan: dict[str, int] = {}
        for item in environ.get(FAULTS_ENVIRONMENT_VARIABLE, "").split(","):
            step, _, count = item.strip().partition(":")
            if step:
                plan[step] = int(count or "1")
        return cls(plan)

    def fail(self, step: str, times: int = 1) -> None:
        """Makes ``step`` fail ``times`` more times (after its ledger call committed)."""
        with self._lock:
            self._remaining[step] = self._remaining.get(step, 0) + times

    def refuse(self, step: str, code: str, times: int = 1) -> None:
        """Makes the next ``times`` calls of ``step`` refused with ``code``, nothing written."""
        with self._lock:
            self._refusals.setdefault(step, []).extend([code] * times)

    def make_unavailable(self, step: str, times: int) -> None:
        """Makes the next ``times`` attempts of ``step`` fail before reaching the ledger."""
        with self._lock:
            self._unavailable[step] = self._unavailable.get(step, 0) + times

    def before_call(self, step: str) -> None:
        """Raises a planned refusal of ``step`` (its ledger error) or unavailability, if any."""
        with self._lock:
            if self._unavailable.get(step, 0) > 0:
                self._unavailable[step] -= 1
                self._injected[step] = self._injected.get(step, 0) + 1
                unavailable = True
            else:
                unavailable = False
            planned = self._refusals.get(step)
            code = planned.pop(0) if planned and not unavailable else None
        if unavailable:
            raise InjectedFault(f"injected: the database did not answer the {step}")
        if code is not None:
            raise error_class_for_code(code)(f"{step} refused by a test fault ({code})")

    def after_commit(self, step: str) -> None:
        """Raises :class:`InjectedFault` if ``step`` still has failures left to inject."""
        with self._lock:
            if self._remaining.get(step, 0) <= 0:
                return
            self._remaining[step] -= 1
            self._injected[step] = self._injected.get(step, 0) + 1
        raise InjectedFault(f"injected transient fault after the {step} committed")

    def injected(self, step: str) -> int:
        """How many faults were injected into ``step`` so far."""
        with self._lock:
            return self._injected.get(step, 0)
