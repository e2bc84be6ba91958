"""Replay tests: the worker's HoldWorkflow code must replay saved and fresh histories exactly.

The saved histories stand for workflows already running in production: ``histories/hold_*.json``
(type ``HoldWorkflow``, served by the frozen ``workflows.legacy.hold_v1``) and
``histories/v2/hold_*.json`` (type ``HoldWorkflowV2``, ``workflows.hold``). A change that would
break one fails here with a non-determinism error. The replayer is given the worker's own list of
workflow types, so what is tested is what the worker runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from make_histories import PATHS, V2_HISTORIES, produce_histories
from saga_helpers import unique
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from ledger_db import Ledger
from worker import HOLD_WORKFLOWS

pytestmark = [pytest.mark.temporal, pytest.mark.asyncio(loop_scope="session")]

HISTORIES = Path(__file__).resolve().parent / "histories"
FIRST_VERSION = {
    "hold_expiry",
    "hold_partial_capture",
    "hold_rejected_freeze",
    "hold_release",
    "hold_repeated_capture",
    "hold_signals",
}


def _replayer() -> Replayer:
    return Replayer(workflows=list(HOLD_WORKFLOWS), data_converter=pydantic_data_converter)


def _saved() -> list[Path]:
    return sorted(HISTORIES.glob("*.json")) + sorted(V2_HISTORIES.glob("*.json"))


def _history(text: str) -> WorkflowHistory:
    data = json.loads(text)
    workflow_id = data["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"]
    return WorkflowHistory.from_json(workflow_id, data)


def _workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


async def test_the_saved_histories_are_all_there() -> None:
    first = {path.stem for path in HISTORIES.glob("*.json")}
    lean = {path.stem.removeprefix("hold_") for path in V2_HISTORIES.glob("*.json")}
    assert first == FIRST_VERSION
    assert lean == set(PATHS)
    for path in _saved():
        expected = "HoldWorkflowV2" if path.parent == V2_HISTORIES else "HoldWorkflow"
        assert _workflow_type(_history(path.read_text())) == expected, path


@pytest.mark.parametrize(
    "path", _saved(), ids=lambda path: f"{path.parent.name}/{path.stem}".replace("histories/", "")
)
async def test_replay_saved_history(path: Path) -> None:
    history = _history(path.read_text())
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_no_saved_history_failed_a_workflow_task() -> None:
    # Including the one that received junk signals (1e999999, 1e400000, wrong types).
    for path in _saved():
        events = _history(path.read_text()).events
        failed = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
        assert failed == [], path


async def test_replay_fresh_histories(
    dev_env: WorkflowEnvironment, ledger: Ledger, task_queue: str
) -> None:
    histories = await produce_histories(
        dev_env.client,
        ledger,
        task_queue=task_queue,
        tenant_id=unique("replay"),
        update_with_start=True,
    )
    assert set(histories) == set(PATHS)
    replayer = _replayer()
    for name, text in histories.items():
        history = _history(text)
        assert _workflow_type(history) == "HoldWorkflowV2"
        failed = [
            event
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        ]
        assert failed == [], name
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, (name, result.replay_failure)
