"""Checks on caller input. Each raises a typed error with a stable code before anything is read
or written, so a bad request never leaves a trace."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ledger_db import limits
from ledger_db.errors import IdempotencyKeyInvalid, InvalidEntry, TtlOutOfRange

__all__ = [
    "check_account_id",
    "check_aware",
    "check_idempotency_key",
    "check_meta",
    "check_optional_text",
    "check_tags",
    "check_tenant_id",
    "check_text",
    "check_ttl_seconds",
]

_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# No '.' in tenant IDs: a tenant is one token of the bus subject billing.<tenant>.<type>.
_TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


def check_tenant_id(tenant_id: object) -> str:
    if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id):
        raise InvalidEntry(
            "tenant_id must be 1-128 characters of letters, digits, '_' or '-'",
            field="tenant_id",
        )
    return tenant_id


def check_account_id(account_id: object, *, field: str = "account_id") -> str:
    """User account IDs; IDs the ledger opens itself start with '@' and are accepted too."""
    if isinstance(account_id, str) and account_id.startswith("@") and 1 < len(account_id) <= 160:
        return account_id
    if not isinstance(account_id, str) or not _ACCOUNT_ID.match(account_id):
        raise InvalidEntry(
            f"{field} must be 1-128 characters of letters, digits, '.', '_' or '-'", field=field
        )
    return account_id


def check_idempotency_key(key: object) -> str:
    if not isinstance(key, str) or not key.strip():
        raise IdempotencyKeyInvalid("idempotency_key must be non-empty text")
    if len(key) > limits.idempotency_key_length_max:
        raise IdempotencyKeyInvalid(
            f"idempotency_key is longer than {limits.idempotency_key_length_max} characters"
        )
    if "\x1f" in key or "\x00" in key:
        raise IdempotencyKeyInvalid("idempotency_key contains a control character")
    return key


def check_text(value: object, field: str, *, length_max: int = limits.text_field_length_max) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidEntry(f"{field} must be non-empty text", field=field)
    if len(value) > length_max:
        raise InvalidEntry(f"{field} is longer than {length_max} characters", field=field)
    return value


def check_optional_text(value: object, field: str) -> str | None:
    return None if value is None else check_text(value, field)


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
    return list(tags)


def check_meta(meta: object) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidEntry("meta must be an object", field="meta")
    try:
        encoded = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidEntry(f"meta is not plain JSON: {error}", field="meta") from error
    if len(encoded.encode()) > limits.meta_bytes_max:
        raise InvalidEntry(f"meta is larger than {limits.meta_bytes_max} bytes", field="meta")
    loaded: dict[str, Any] = json.loads(encoded)
    return loaded


def check_aware(value: object, field: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidEntry(f"{field} must be a timezone-aware datetime", field=field)
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
