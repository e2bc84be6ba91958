"""The ledger's rules: pure decisions over records already loaded, with ``now`` as a parameter.

No SQLAlchemy, no clock, no I/O here. Each rule is a flat ladder of checks in precedence order
(TigerBeetle's ``create_transfer`` shape) that raises the typed :mod:`ledger_db.errors` error of
the first check that fails, or returns the decision the caller then carries out. The ledger's
store and the workflow's update validators call the same functions, so a rule exists once.
"""

from __future__ import annotations

from ledger_db.rules import accounts, holds, postings, requests

__all__ = ["accounts", "holds", "postings", "requests"]
