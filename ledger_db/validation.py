"""Checks on caller input. Each raises a typed error with a stable code before anything is read
or written, so a bad request never leaves a trace.

Text comes in two kinds. *Identifiers* (tenant, account, hold, order, project, asset, task and
transaction IDs, ``env``, ``external_ref``, tags) are refused if they hold a control character
(C0, DEL); *free text* (reasons, categories, names, meta strings) may hold tabs and newlines but
never a NUL. Neither may hold a lone surrogate: only text that encodes as UTF-8 reaches a
database, so both engines store exactly the same thing (PostgreSQL refuses NUL in ``text`` and
``jsonb``; SQLite would store it).

Instants are aware datetimes within ``[limits.instant_min, limits.instant_max]``; anything else
(naive, out of range, or a value whose conversion to UTC overflows) is ``invalid_entry`` naming
the field. Meta is normalised to the JSON that PostgreSQL's ``jsonb`` hands back (see
:func:`check_meta`), so what is hashed is what is stored on both engines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ledger_db import limits
from ledger_db.errors import IdempotencyKeyInvalid, InvalidEntry, TtlOutOfRange

__all__ = [
    "check_account_id",
    "check_bool",
    "check_idempotency_key",
    "check_identifier",
    "check_instant",
    "check_limit",
    "check_meta",
    "check_now",
    "check_optional_identifier",
    "check_optional_text",
    "check_sequence",
    "check_tags",
    "check_tenant_id",
    "check_text",
    "check_ttl_seconds",
    "instant_after",
    "iso",
    "json_number",
    "normalise_json",
]

_ACCOUNT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# No '.' in tenant IDs: a tenant is one token of the bus subject billing.<tenant>.<type>.
_TENANT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# The IDs of the accounts the ledger opens itself: platform singletons and hold buckets.
_SYSTEM_ACCOUNT_ID = re.compile(
    r"@(?:escrow|revenue|external|operating):[A-Z][A-Z0-9]{2,11}"
    r"|@hold:[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Python refuses to turn longer integers into text (``sys.int_info.default_max_str_digits``).
_INTEGER_DIGITS_MAX = 4300


def _utf8(value: str, field: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidEntry(
            f"{field} is not valid Unicode text (it holds a lone surrogate)", field=field
        ) from error


def check_tenant_id(tenant_id: object) -> str:
    if not isinstance(tenant_id, str) or not _TENANT_ID.fullmatch(tenant_id):
        raise InvalidEntry(
            "tenant_id must be 1-128 characters of letters, digits, '_' or '-'",
            field="tenant_id",
        )
    return tenant_id


def check_account_id(account_id: object, *, field: str = "account_id") -> str:
    """User account IDs; IDs the ledger opens itself (``@escrow:USD``, ``@hold:<id>``...) are
    accepted too, in exactly their own shapes."""
    if isinstance(account_id, str) and (
        _ACCOUNT_ID.fullmatch(account_id) or _SYSTEM_ACCOUNT_ID.fullmatch(account_id)
    ):
        return account_id
    raise InvalidEntry(
        f"{field} must be 1-128 characters of letters, digits, '.', '_' or '-'", field=field
    )


def check_idempotency_key(key: object) -> str:
    if not isinstance(key, str) or not key.strip():
        raise IdempotencyKeyInvalid("idempotency_key must be non-empty text")
    if len(key) > limits.idempotency_key_length_max:
        raise IdempotencyKeyInvalid(
            f"idempotency_key is longer than {limits.idempotency_key_length_max} characters"
        )
    if _CONTROL.search(key):
        raise IdempotencyKeyInvalid("idempotency_key contains a control character")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as error:
        raise IdempotencyKeyInvalid("idempotency_key is not valid Unicode text") from error
    return key


def check_text(value: object, field: str, *, length_max: int = limits.text_field_length_max) -> str:
    """Free text: non-empty, at most ``length_max`` characters, no NUL, valid Unicode."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidEntry(f"{field} must be non-empty text", field=field)
    if len(value) > length_max:
        raise InvalidEntry(f"{field} is longer than {length_max} characters", field=field)
    if "\x00" in value:
        raise InvalidEntry(f"{field} contains a NUL character", field=field)
    _utf8(value, field)
    return value


def check_optional_text(value: object, field: str) -> str | None:
    return None if value is None else check_text(value, field)


def check_identifier(
    value: object, field: str, *, length_max: int = limits.text_field_length_max
) -> str:
    """An opaque ID: free text without any control character (C0 or DEL)."""
    check_text(value, field, length_max=length_max)
    assert isinstance(value, str)
    if _CONTROL.search(value):
        raise InvalidEntry(f"{field} contains a control character", field=field)
    return value


def check_optional_identifier(
    value: object, field: str, *, length_max: int = limits.text_field_length_max
) -> str | None:
    return None if value is None else check_identifier(value, field, length_max=length_max)


def check_tags(tags: object) -> list[str] | None:
    if tags is None:
        return None
    if not isinstance(tags, list | tuple):
        raise InvalidEntry("tags must be a list of strings", field="tags")
    if len(tags) > limits.tags_per_entry_max:
        raise InvalidEntry(f"more than {limits.tags_per_entry_max} tags", field="tags")
    for tag in tags:
        if not isinstance(tag, str) or not tag or len(tag) > limits.tag_length_max:
            raise InvalidEntry(
                f"every tag must be a string of 1-{limits.tag_length_max} characters",
                field="tags",
            )
        check_identifier(tag, "tags", length_max=limits.tag_length_max)
    return list(tags)


def json_number(value: float | Decimal) -> int | float | None:
    """A JSON number as ``jsonb`` hands it back: integral values are ints (``1e16``, ``-0.0``
    and ``2.0`` all come back without a fraction), others floats. ``None`` when a float cannot
    hold the number exactly (a ``Decimal`` with more digits than a double) or it is not finite.

    A float is read through its shortest decimal spelling (``repr``), as ``json.dumps`` writes
    it: ``1.5e300`` is 15 followed by 299 zeros, not the binary double's exact value.
    """
    exact = Decimal(repr(value)) if isinstance(value, float) else value
    if not exact.is_finite():
        return None
    sign, digits, exponent = exact.as_tuple()
    assert isinstance(exponent, int)
    fraction = digits[len(digits) + exponent :] if exponent < 0 else ()
    if not any(fraction):
        whole = digits[: len(digits) + exponent] if exponent < 0 else digits
        if len(whole) + max(exponent, 0) > _INTEGER_DIGITS_MAX:
            return None
        number: int = int("".join(map(str, whole)) or "0") * 10 ** max(exponent, 0)
        return -number if sign else number
    as_float = float(exact) if isinstance(value, Decimal) else value
    if isinstance(value, Decimal) and Decimal(repr(as_float)) != value:
        return None
    return as_float


def normalise_json(value: Any, field: str, depth: int = 0) -> Any:
    """Plain JSON (already loaded) with every string checked and every number as ``jsonb``
    returns it; raises ``invalid_entry`` naming ``field`` otherwise."""
    if depth > limits.meta_depth_max:
        raise InvalidEntry(f"{field} is nested more than {limits.meta_depth_max} deep", field=field)
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidEntry(f"{field} contains a NUL character", field=field)
        _utf8(value, field)
        return value
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        number = json_number(value)
        if number is None:
            raise InvalidEntry(f"{field}: the number {value} cannot be stored exactly", field=field)
        return number
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            normalise_json(key, field, depth + 1)
            result[key] = normalise_json(item, field, depth + 1)
        return result
    if isinstance(value, list):
        return [normalise_json(item, field, depth + 1) for item in value]
    raise InvalidEntry(f"{field} is not plain JSON ({type(value).__name__})", field=field)


def check_meta(meta: object, field: str = "meta") -> dict[str, Any]:
    """Meta as it will be stored and hashed: plain JSON, at most ``limits.meta_bytes_max``
    bytes, its numbers normalised as ``jsonb`` returns them (integral floats become ints)."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidEntry(f"{field} must be an object", field=field)
    try:
        encoded = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False)
        loaded = json.loads(encoded)
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidEntry(f"{field} is not plain JSON: {error}", field=field) from error
    normalised: dict[str, Any] = normalise_json(loaded, field)
    size = len(json.dumps(normalised, sort_keys=True, separators=(",", ":")).encode())
    if size > limits.meta_bytes_max:
        raise InvalidEntry(f"{field} is larger than {limits.meta_bytes_max} bytes", field=field)
    return normalised


def check_instant(value: object, field: str) -> datetime:
    """An aware instant within the stored range, as UTC."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEntry(f"{field} must be a timezone-aware datetime", field=field)
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError) as error:
        raise InvalidEntry(
            f"{field} is outside the range of stored instants", field=field
        ) from error
    if not limits.instant_min <= utc <= limits.instant_max:
        raise InvalidEntry(
            f"{field} must lie between {limits.instant_min.isoformat()} and "
            f"{limits.instant_max.isoformat()}",
            field=field,
        )
    return utc


def iso(value: datetime | None) -> str | None:
    """The text form of an instant used in version-1 hashes, requests and event payloads
    (``journal.iso``'s format, here so that pure modules need not import the store)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def instant_after(start: datetime, seconds: int, field: str) -> datetime:
    """``start + seconds``, refused as ``field`` when it leaves the stored range."""
    try:
        end = start + timedelta(seconds=seconds)
    except OverflowError as error:
        raise InvalidEntry(
            f"{field} is outside the range of stored instants", field=field
        ) from error
    return check_instant(end, field)


def check_now(now: object, clock_now: datetime) -> datetime:
    """A caller-supplied ``now``: in range, and within the window around the ledger's clock."""
    at = check_instant(now, "now")
    earliest = clock_now - timedelta(seconds=limits.now_lag_seconds_max)
    latest = clock_now + timedelta(seconds=limits.now_lead_seconds_max)
    if not earliest <= at <= latest:
        raise InvalidEntry(
            f"now must lie within {limits.now_lag_seconds_max} s before and "
            f"{limits.now_lead_seconds_max} s after the ledger's clock",
            field="now",
        )
    return at


def check_int(value: object, field: str, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise InvalidEntry(
            f"{field} must be a whole number from {minimum} to {maximum}", field=field
        )
    return value


def check_sequence(value: object, field: str) -> int:
    """A journal or outbox sequence number (0 means "from the start")."""
    return check_int(value, field, minimum=0, maximum=limits.sequence_max)


def check_limit(value: object) -> int:
    """A page size: at least 1; anything above ``limits.page_size_max`` is that maximum."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidEntry(
            f"limit must be a whole number from 1 to {limits.page_size_max}", field="limit"
        )
    return min(value, limits.page_size_max)


def check_bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidEntry(f"{field} must be true or false", field=field)
    return value


def check_ttl_seconds(ttl_seconds: object) -> int:
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
        raise TtlOutOfRange("ttl_seconds must be a whole number of seconds")
    if not limits.hold_ttl_seconds_min <= ttl_seconds <= limits.hold_ttl_seconds_max:
        raise TtlOutOfRange(
            f"ttl_seconds must be between {limits.hold_ttl_seconds_min} and "
            f"{limits.hold_ttl_seconds_max}",
            ttl_seconds=ttl_seconds,
        )
    return ttl_seconds
