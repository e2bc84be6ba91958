"""Hypothesis fuzz of the Python client's hold calls (``freeze``, ``capture_hold``,
``release_hold``, ``extend_hold``, ``retry_payout``, ``wait_for_hold``, ``hold_state``) with any
argument: the client either refuses with a ``LedgerError`` before anything is sent, or sends
the request (here a stand-in Temporal client records that it was asked, so no server is
needed); never a raw ``TypeError``, ``ValueError`` or pydantic ``ValidationError``. What a
valid request then meets in the workflow is the ledger's own validation (fuzzed in
test_fuzz_ledger_api.py) and the saga suites'.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from fuzz_helpers import AMOUNTS, INSTANTS, JUNK, META, TEXT, TTLS, examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger_db import Ledger, errors
from starter.client import ClientConfig, LedgerClient

pytestmark = pytest.mark.fuzz


class WouldSend(Exception):
    """The client got as far as talking to Temporal: its own checks let the request through."""


class RecordingTemporal:
    """Stands in for ``temporalio.client.Client``: any use is a request the client sends."""

    namespace = "default"

    def __getattr__(self, name: str) -> Any:
        raise WouldSend(name)


ANY = st.one_of(TEXT, JUNK)


def _arg(valid: Any, junk: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(valid), st.just(valid), junk)


CALLS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "freeze": {
        "account_id": _arg("buyer", ANY),
        "amount": _arg("10.00", AMOUNTS),
        "reason": _arg("NEGOTIATION", ANY),
        "tenant_id": _arg("acme", ANY),
        "idempotency_key": _arg("k-1", ANY),
        "ttl_seconds": _arg(600, TTLS),
        "payee_account_id": _arg(None, ANY),
        "order_id": _arg(None, ANY),
        "currency": _arg(None, ANY),
        "fee_bps": _arg(None, st.one_of(st.integers(-(2**70), 2**70), ANY)),
        "meta": _arg(None, META),
        "project_id": _arg(None, ANY),
        "env": _arg("prod", ANY),
        "task_id": _arg(None, ANY),
    },
    "capture_hold": {
        "hold_id": _arg("h-1", ANY),
        "order_id": _arg("order-1", ANY),
        "tenant_id": _arg("acme", ANY),
        "idempotency_key": _arg("c-1", ANY),
        "amount": _arg(None, AMOUNTS),
        "payee_account_id": _arg(None, ANY),
    },
    "release_hold": {
        "hold_id": _arg("h-1", ANY),
        "tenant_id": _arg("acme", ANY),
        "idempotency_key": _arg("r-1", ANY),
    },
    "extend_hold": {
        "hold_id": _arg("h-1", ANY),
        "tenant_id": _arg("acme", ANY),
        "idempotency_key": _arg("e-1", ANY),
        "ttl_seconds": _arg(60, TTLS),
        "expires_at": _arg(None, st.one_of(INSTANTS, JUNK)),
    },
    "retry_payout": {
        "hold_id": _arg("h-1", ANY),
        "tenant_id": _arg("acme", ANY),
        "idempotency_key": _arg("p-1", ANY),
    },
    "wait_for_hold": {
        "hold_id": _arg("h-1", ANY),
        "tenant_id": _arg("acme", ANY),
        "timeout": _arg(None, st.one_of(st.timedeltas(max_value=timedelta(days=1)), JUNK)),
    },
    "hold_state": {"hold_id": _arg("h-1", ANY), "tenant_id": _arg("acme", ANY)},
}
POSITIONAL = {
    "freeze": ("account_id", "amount", "reason"),
    "capture_hold": ("hold_id", "order_id"),
    "release_hold": ("hold_id",),
    "extend_hold": ("hold_id",),
    "retry_payout": ("hold_id",),
    "wait_for_hold": ("hold_id",),
    "hold_state": ("hold_id",),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ledger = Ledger.from_url(f"sqlite:///{tmp_path_factory.mktemp('client-fuzz')}/ledger.db")
    instance = LedgerClient(RecordingTemporal(), ledger, ClientConfig())  # type: ignore[arg-type]
    yield instance
    ledger.close()


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_hold_call_is_refused_typed_or_sent(client: Any, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(CALLS)), label="call")
    arguments = {arg: data.draw(strategy, label=arg) for arg, strategy in CALLS[name].items()}
    positional = [arguments.pop(arg) for arg in POSITIONAL[name]]
    try:
        asyncio.run(getattr(client, name)(*positional, **arguments))
    except WouldSend:
        return
    except errors.LedgerError as error:
        assert error.code in errors.ERROR_CODES
        return
    raise AssertionError(f"{name} neither refused nor sent")
