"""Names of the activities the hold saga calls: the one contract between workflows/ and activities/.

The workflow refers to activities by name so that it imports no database or network code.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CAPTURE_HOLD",
    "EXPIRE_HOLD",
    "EXTEND_HOLD",
    "FINALIZE_HOLD",
    "FREEZE_HOLD",
    "GET_HOLD",
    "PUBLISH_EVENTS",
    "RELEASE_HOLD",
]

FREEZE_HOLD: Final = "ledger.freeze_hold"
CAPTURE_HOLD: Final = "ledger.capture_hold"
FINALIZE_HOLD: Final = "ledger.finalize_hold"
RELEASE_HOLD: Final = "ledger.release_hold"
EXPIRE_HOLD: Final = "ledger.expire_hold"
EXTEND_HOLD: Final = "ledger.extend_hold"
GET_HOLD: Final = "ledger.get_hold"
# Used only by the frozen first HoldWorkflow: the ledger steps now publish their own events.
PUBLISH_EVENTS: Final = "events.publish_transaction_events"
