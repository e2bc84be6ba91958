"""Workflow types kept only to finish the executions they started (see each module)."""

from __future__ import annotations

from workflows.legacy.hold_v1 import HoldWorkflowV1

__all__ = ["HoldWorkflowV1"]
