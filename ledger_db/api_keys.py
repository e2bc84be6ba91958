"""Keys of the read API: each names one tenant, and every request made with it sees only that
tenant's objects.

A key is ``clk_<12 hex>_<43 url-safe characters>``: the first 16 characters (``clk_<12 hex>``)
are its public ``key_id``, to list and revoke it; the rest is a 256-bit random secret. The
ledger keeps only the SHA-256 of the whole key, so the key is shown once, when it is made, and
a copy of the database hands nobody a working key. A slow password hash would add nothing: the
secret is random and long, not a password that could be guessed.

Plain SQL over ``ledger_db.schema.api_keys``; the HTTP side lives in ``starter.api``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from ledger_db import limits
from ledger_db.errors import LedgerError
from ledger_db.schema import api_keys
from ledger_db.validation import check_optional_text, check_tenant_id, check_text

__all__ = [
    "API_KEY_PREFIX",
    "ApiKey",
    "ApiKeyNotFound",
    "CreatedApiKey",
    "authenticate",
    "create_api_key",
    "get_api_key",
    "key_id_of",
    "list_api_keys",
    "revoke_api_key",
]

API_KEY_PREFIX = "clk_"
_KEY_ID_HEX_LENGTH = 12
_KEY_ID_LENGTH = len(API_KEY_PREFIX) + _KEY_ID_HEX_LENGTH
_SECRET_BYTES = 32
_KEY = re.compile(rf"^{API_KEY_PREFIX}[0-9a-f]{{{_KEY_ID_HEX_LENGTH}}}_[A-Za-z0-9_-]{{43}}$")
# Two keys drawing the same 48-bit ID is unlikely; the primary key refuses it and we draw again.
_create_attempts_max = 5


class ApiKeyNotFound(LedgerError):
    """No API key with this ID (in this tenant)."""

    code = "api_key_not_found"


class ApiKey(BaseModel):
    """An API key as stored: its public ID and tenant, never its secret."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    tenant_id: str
    name: str | None = None
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class CreatedApiKey(BaseModel):
    """What creating a key returns: the key itself (shown this once) and its record."""

    model_config = ConfigDict(frozen=True)

    key: str
    api_key: ApiKey


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def key_id_of(key: str) -> str | None:
    """The public ID of a well-formed key, else None (nothing to look up)."""
    if not isinstance(key, str) or not _KEY.match(key):
        return None
    return key[:_KEY_ID_LENGTH]


def _record(row: sa.Row[tuple[object, ...]]) -> ApiKey:
    return ApiKey.model_validate(dict(row._mapping))


def _now() -> datetime:
    return datetime.now(UTC)


def create_api_key(
    engine: sa.Engine,
    *,
    tenant_id: str,
    name: str | None = None,
    clock: Callable[[], datetime] = _now,
) -> CreatedApiKey:
    """Makes a key for ``tenant_id``; the returned ``key`` is the only copy there will be.

    Each call makes a new key (no idempotency key: a replay could not show the secret again,
    and a spare key harms nobody; revoke it).
    """
    check_tenant_id(tenant_id)
    name = check_optional_text(name, "name")
    for _ in range(_create_attempts_max):
        key_id = API_KEY_PREFIX + secrets.token_hex(_KEY_ID_HEX_LENGTH // 2)
        key = f"{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        record = ApiKey(key_id=key_id, tenant_id=tenant_id, name=name, created_at=clock())
        try:
            with engine.begin() as connection:
                connection.execute(
                    api_keys.insert().values(**record.model_dump(), key_sha256=_digest(key))
                )
        except sa.exc.IntegrityError:
            continue
        return CreatedApiKey(key=key, api_key=record)
    raise RuntimeError("could not draw a free API key ID")  # pragma: no cover


def get_api_key(engine: sa.Engine, key_id: str, *, tenant_id: str | None = None) -> ApiKey:
    """One key's record; ``api_key_not_found`` if it is not there (or is another tenant's)."""
    check_text(key_id, "key_id", length_max=32)
    query = sa.select(api_keys).where(api_keys.c.key_id == key_id)
    if tenant_id is not None:
        query = query.where(api_keys.c.tenant_id == check_tenant_id(tenant_id))
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        raise ApiKeyNotFound(f"API key {key_id!r} not found", key_id=key_id)
    return _record(row)


def list_api_keys(
    engine: sa.Engine,
    *,
    tenant_id: str | None = None,
    include_revoked: bool = True,
    limit: int = limits.page_size_max,
) -> list[ApiKey]:
    """Keys in creation order (a tenant's, or everyone's), at most ``limit``."""
    limit = max(1, min(limit, limits.page_size_max))
    query = sa.select(api_keys)
    if tenant_id is not None:
        query = query.where(api_keys.c.tenant_id == check_tenant_id(tenant_id))
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    with engine.connect() as connection:
        rows = connection.execute(
            query.order_by(api_keys.c.created_at, api_keys.c.key_id).limit(limit)
        ).all()
    return [_record(row) for row in rows]


def revoke_api_key(
    engine: sa.Engine,
    key_id: str,
    *,
    tenant_id: str | None = None,
    clock: Callable[[], datetime] = _now,
) -> ApiKey:
    """Revokes a key at once (every later request with it is refused); revoking it again keeps
    the first revocation time."""
    found = get_api_key(engine, key_id, tenant_id=tenant_id)
    with engine.begin() as connection:
        connection.execute(
            api_keys.update()
            .where(api_keys.c.key_id == found.key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=clock())
        )
    return get_api_key(engine, key_id, tenant_id=tenant_id)


def authenticate(connection: sa.Connection, key: str) -> ApiKey | None:
    """The record of ``key`` when it is one of ours (revoked or not), else None.

    One primary-key read; the digests are compared in constant time, so how long a refusal
    takes says nothing about how much of a guess was right.
    """
    key_id = key_id_of(key)
    if key_id is None:
        return None
    row = connection.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
    if row is None or not hmac.compare_digest(row.key_sha256, _digest(key)):
        return None
    return _record(row)
