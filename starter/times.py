"""Times as the command line takes them: ISO 8601 with a zone, never a naive local time."""

from __future__ import annotations

from datetime import datetime

from starter.output import CliError

__all__ = ["parse_time"]


def parse_time(text: str | None, option: str) -> datetime | None:
    """``--from 2026-01-01T00:00:00Z`` -> an aware datetime; None stays None.

    A time without a zone is refused (``usage_error``): the ledger stores UTC instants, and
    guessing the zone of ``2026-01-01T00:00`` would move a report's boundaries by hours.
    """
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise CliError("usage_error", f"{option} {text!r} is not an ISO 8601 time") from error
    if value.tzinfo is None:
        raise CliError("usage_error", f"{option} {text!r} needs a time zone, e.g. Z or +00:00")
    return value
