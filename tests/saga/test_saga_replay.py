"""Replay tests: the current HoldWorkflow code must replay saved and fresh histories exactly.

The saved histories (``histories/*.json``, written by ``make_histories.py`` on a dev server)
stand for workflows already running in production: a change to the workflow that would break
them fails here with a non-determinism error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from make_histories import produce_histories
from saga_helpers import unique
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from ledger_db import Ledger
from workflows.hold import HoldWorkflow

pytestmark = [pytest.mark.temporal, pytest.mark.asyncio(loop_scope="session")]

HISTORIES = Path(__file__).resolve().parent / "histories"
EXPECTED = {
    "hold_expiry",
    "hold_partial_capture",
    "hold_rejected_freeze",
    "hold_release",
    "hold_repeated_capture",
    "hold_signals",
}


def _replayer() -> Replayer:
    return Replayer(workflows=[HoldWorkflow], data_converter=pydantic_data_converter)


def _saved() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


async def test_the_saved_histories_are_all_there() -> None:
    assert {path.stem for path in _saved()} == EXPECTED


@pytest.mark.parametrize("path", _saved(), ids=lambda path: path.stem)
async def test_replay_saved_history(path: Path) -> None:
    data = json.loads(path.read_text())
    workflow_id = data["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"]
    history = WorkflowHistory.from_json(workflow_id, data)
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


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
    assert set(histories) == {name.removeprefix("hold_") for name in EXPECTED}
    workflow_histories = [
        WorkflowHistory.from_json(
            json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"],
            text,
        )
        for text in histories.values()
    ]
    replayer = _replayer()
    for history in workflow_histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, (history.workflow_id, result.replay_failure)
