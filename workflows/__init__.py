"""Temporal workflows of the compute ledger. Pure: no I/O, clock or database import here."""

from __future__ import annotations

from workflows.hold import HoldWorkflow

__all__ = ["HoldWorkflow"]
