"""The ledger's tables (SQLAlchemy Core), identical in meaning on SQLite and PostgreSQL.

Mutable state lives in ``accounts`` (balance snapshots), ``holds``, ``idempotency_keys`` and
``outbox_events``. The journal (``journal_transactions``, ``journal_entries``) is append-only:
triggers created by the migrations refuse every UPDATE, DELETE and TRUNCATE, whoever issues it.
Since migration 0004 the journal is a hash chain *per tenant*: ``journal_chains`` holds each
tenant's last chain sequence and hash, and a write locks its tenant's row last, so two tenants
never wait on each other. ``journal_transactions.sequence`` stays the global ordering key (unique,
increasing per tenant, not gapless across tenants on PostgreSQL: a database sequence);
``chain_sequence`` is the gapless position in the tenant's chain. ``journal_head`` is frozen at
the head of the single global chain written before 0004 (``GENESIS_HASH`` on a database created
after it); every tenant chain starts from that hash.

The rows that drive payouts carry CHECK constraints (:data:`HOLD_CHECKS`, :data:`ACCOUNT_CHECKS`):
real CHECK constraints on PostgreSQL, and on SQLite (whose tables cannot gain a constraint
without being rebuilt) BEFORE INSERT and UPDATE triggers that refuse the same rows with the
same names. What no constraint can say, ``verify_journal()`` checks against the journal.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

__all__ = [
    "ACCOUNT_CHECKS",
    "APPEND_ONLY_TABLES",
    "HOLD_CHECKS",
    "UtcDateTime",
    "accounts",
    "api_keys",
    "holds",
    "idempotency_keys",
    "instant_text",
    "journal_chains",
    "journal_entries",
    "journal_head",
    "journal_transactions",
    "ledger_checkpoints",
    "metadata",
    "outbox_events",
]


def instant_text(value: datetime) -> str:
    """The fixed-width text of an instant, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, for every
    year (``strftime('%Y')`` writes year 999 as three digits on some platforms)."""
    value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
        f"{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}Z"
    )


# Also reads the short years an earlier version could write, so such a row stays readable.
_INSTANT_TEXT = re.compile(r"(\d{1,4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z")


def _instant_from_text(text: str) -> datetime:
    match = _INSTANT_TEXT.fullmatch(text)
    if match is None:
        raise ValueError(f"not a stored instant: {text!r}")
    year, month, day, hour, minute, second, microsecond = (int(part) for part in match.groups())
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC instant: ``timestamptz`` on PostgreSQL, fixed-width ISO text on SQLite.

    SQLite keeps the text sortable and exact to the microsecond (:func:`instant_text`); both
    engines hand back aware UTC datetimes, and naive datetimes are refused on the way in. The
    ledger only stores instants within ``limits.instant_min`` .. ``limits.instant_max``.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(27))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return instant_text(value)
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return _instant_from_text(value)
        assert isinstance(value, datetime)
        return value.astimezone(UTC)


class JsonType(sa.types.TypeDecorator[Any]):
    """JSON: ``jsonb`` on PostgreSQL, JSON text on SQLite; SQL NULL for ``None``.

    A decorator rather than ``JSON().with_variant(JSONB(), ...)`` so that the PostgreSQL dialect
    (tens of milliseconds to import) loads only when a PostgreSQL engine needs it: an embedded
    SQLite ledger's command line starts without it.
    """

    impl = sa.JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(sa.JSON(none_as_null=True))


AutoIncrementId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# CHECK conditions of the rows that drive payouts, written once for both engines: ``{r}``
# prefixes each column (empty in a CHECK constraint, ``NEW.`` in a SQLite trigger).
HOLD_CHECKS: dict[str, str] = {
    "amounts": "{r}captured_minor >= 0 AND {r}released_minor >= 0 AND {r}fee_minor >= 0 "
    "AND {r}fee_minor <= {r}captured_minor",
    "active": "{r}state <> 'active' OR ({r}captured_minor = 0 AND {r}released_minor = 0 "
    "AND NOT {r}finalized AND {r}resolve_transaction_id IS NULL AND {r}resolved_at IS NULL)",
    "resolved": "{r}state = 'active' OR ({r}captured_minor + {r}released_minor = {r}amount_minor "
    "AND {r}resolve_transaction_id IS NOT NULL AND {r}resolved_at IS NOT NULL)",
    "captured": "{r}state <> 'captured' OR ({r}captured_minor > 0 AND {r}order_id IS NOT NULL "
    "AND {r}payee_account_id IS NOT NULL)",
    "uncaptured": "{r}state NOT IN ('released', 'expired') OR {r}captured_minor = 0",
    "finalized": "NOT {r}finalized OR ({r}state = 'captured' "
    "AND {r}finalize_transaction_id IS NOT NULL)",
    "unfinalized": "{r}finalized OR ({r}fee_minor = 0 AND {r}finalize_transaction_id IS NULL)",
}
ACCOUNT_CHECKS: dict[str, str] = {
    "status": "{r}status IN ('open', 'closed')",
    # The kind follows from the ID: agents have their own IDs, a hold bucket is
    # ``@hold:<its agent>``, a platform account ``@<kind>:<currency>``.
    "kind_id": "({r}kind = 'agent' AND substr({r}account_id, 1, 1) <> '@' "
    "AND {r}parent_account_id IS NULL) "
    "OR ({r}kind = 'hold' AND substr({r}account_id, 1, 6) = '@hold:' "
    "AND {r}parent_account_id IS NOT NULL AND {r}parent_account_id = substr({r}account_id, 7)) "
    "OR ({r}kind IN ('escrow', 'revenue', 'external', 'operating') "
    "AND {r}account_id = '@' || {r}kind || ':' || {r}currency AND {r}parent_account_id IS NULL)",
    "overdraft_kind": "{r}kind = 'agent' OR {r}overdraft_limit_minor = 0",
}


def _checks(conditions: dict[str, str]) -> list[sa.CheckConstraint]:
    return [sa.CheckConstraint(sql.format(r=""), name=name) for name, sql in conditions.items()]


accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("tenant_id", sa.String(128), primary_key=True),
    sa.Column("account_id", sa.String(160), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("currency", sa.String(12), nullable=False),
    sa.Column("name", sa.String(255)),
    sa.Column("parent_account_id", sa.String(160)),
    sa.Column("overdraft_limit_minor", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # Snapshot: sum of this account's own journal entries (IN - OUT) up to last_sequence.
    sa.Column("balance_minor", sa.BigInteger, nullable=False),
    sa.Column("last_sequence", sa.BigInteger, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.CheckConstraint(
        "kind IN ('agent', 'escrow', 'revenue', 'external', 'operating', 'hold')", name="kind"
    ),
    sa.CheckConstraint("overdraft_limit_minor >= 0", name="overdraft_limit"),
    *_checks(ACCOUNT_CHECKS),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("tenant_id", sa.String(128), primary_key=True),
    sa.Column("hold_id", sa.String(64), primary_key=True),
    sa.Column("account_id", sa.String(160), nullable=False),
    sa.Column("currency", sa.String(12), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(255), nullable=False),
    sa.Column("payee_account_id", sa.String(160)),
    sa.Column("order_id", sa.String(255)),
    sa.Column("captured_minor", sa.BigInteger, nullable=False),
    sa.Column("released_minor", sa.BigInteger, nullable=False),
    sa.Column("fee_minor", sa.BigInteger, nullable=False),
    sa.Column("finalized", sa.Boolean, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("resolved_at", UtcDateTime),
    sa.Column("freeze_transaction_id", sa.String(64), nullable=False),
    sa.Column("resolve_transaction_id", sa.String(64)),
    sa.Column("finalize_transaction_id", sa.String(64)),
    sa.Column("meta", JsonType, nullable=False),
    sa.ForeignKeyConstraint(
        ["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.account_id"]
    ),
    sa.CheckConstraint("state IN ('active', 'captured', 'released', 'expired')", name="state"),
    sa.CheckConstraint("amount_minor > 0", name="amount"),
    *_checks(HOLD_CHECKS),
    sa.Index("ix_holds_state_expires_at", "state", "expires_at"),
    sa.Index("ix_holds_tenant_account", "tenant_id", "account_id"),
)

journal_head = sa.Table(
    "journal_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("last_sequence", sa.BigInteger, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
)

# One row per tenant chain (migration 0004): the last chain sequence and hash of the tenant's
# journal; its row lock is the last lock of every write of the tenant.
journal_chains = sa.Table(
    "journal_chains",
    metadata,
    sa.Column("tenant_id", sa.String(128), primary_key=True),
    sa.Column("last_sequence", sa.BigInteger, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
)

journal_transactions = sa.Table(
    "journal_transactions",
    metadata,
    sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("transaction_id", sa.String(64), nullable=False, unique=True),
    sa.Column("tenant_id", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.Column("hold_id", sa.String(64)),
    sa.Column("reverses_transaction_id", sa.String(64)),
    sa.Column("entry_count", sa.Integer, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("meta", JsonType, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # Which canonical form ``hash`` covers (``ledger_db.journal.HASH_VERSIONS``); rows written
    # before the column existed are version 1.
    sa.Column("hash_version", sa.SmallInteger, nullable=False, server_default=sa.text("1")),
    # The gapless position in the tenant's chain (hash version 3); NULL on the rows of the
    # global chain written before migration 0004.
    sa.Column("chain_sequence", sa.BigInteger),
    sa.UniqueConstraint("tenant_id", "reverses_transaction_id"),
    sa.Index(
        "uq_journal_transactions_tenant_id_chain_sequence",
        "tenant_id",
        "chain_sequence",
        unique=True,
    ),
    sa.Index("ix_journal_transactions_tenant_sequence", "tenant_id", "sequence"),
    sa.Index("ix_journal_transactions_tenant_recorded", "tenant_id", "recorded_at"),
    sa.Index("ix_journal_transactions_tenant_hold", "tenant_id", "hold_id"),
)

journal_entries = sa.Table(
    "journal_entries",
    metadata,
    sa.Column("journal_sequence", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("entry_index", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ledger_entry_id", sa.String(64), nullable=False),
    sa.Column("transaction_id", sa.String(64), nullable=False),
    sa.Column("tenant_id", sa.String(128), nullable=False),
    sa.Column("account_id", sa.String(160), nullable=False),
    sa.Column("project_id", sa.String(255)),
    sa.Column("env", sa.String(64), nullable=False),
    sa.Column("asset_id", sa.String(255)),
    sa.Column("task_id", sa.String(255)),
    sa.Column("external_ref", sa.String(255)),
    sa.Column("direction", sa.String(3), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(12), nullable=False),
    sa.Column("reason", sa.String(255), nullable=False),
    sa.Column("category", sa.String(255), nullable=False),
    sa.Column("tags", JsonType),
    sa.Column("meta", JsonType, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
    sa.Column("counterpart", sa.Boolean, nullable=False),
    sa.Column("hold_id", sa.String(64)),
    # Unique per tenant: one tenant's IDs neither block nor reveal another's.
    sa.UniqueConstraint("tenant_id", "ledger_entry_id"),
    sa.CheckConstraint("direction IN ('IN', 'OUT')", name="direction"),
    sa.CheckConstraint("amount_minor > 0", name="amount"),
    sa.ForeignKeyConstraint(["journal_sequence"], ["journal_transactions.sequence"]),
    sa.Index("ix_journal_entries_account", "tenant_id", "account_id", "journal_sequence"),
    sa.Index("ix_journal_entries_tenant_occurred", "tenant_id", "occurred_at"),
    sa.Index("ix_journal_entries_tenant_external_ref", "tenant_id", "external_ref"),
    sa.Index("ix_journal_entries_tenant_project", "tenant_id", "project_id"),
    sa.Index("ix_journal_entries_tenant_asset", "tenant_id", "asset_id"),
    sa.Index("ix_journal_entries_tenant_task", "tenant_id", "task_id"),
    sa.Index("ix_journal_entries_transaction", "transaction_id"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("tenant_id", sa.String(128), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("result", JsonType),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

outbox_events = sa.Table(
    "outbox_events",
    metadata,
    sa.Column("sequence", AutoIncrementId, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("version", sa.String(16), nullable=False),
    sa.Column("tenant_id", sa.String(128), nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("hold_id", sa.String(64)),
    sa.Column("order_id", sa.String(255)),
    sa.Column("account_id", sa.String(160)),
    sa.Column("transaction_id", sa.String(64)),
    sa.Column("payload", JsonType, nullable=False),
    sa.Column("sent_at", UtcDateTime),
    sa.Index("ix_outbox_events_unsent", "sent_at", "sequence"),
    sa.Index("ix_outbox_events_tenant", "tenant_id", "sequence"),
)

# Keys of the read API (``ledger_db.api_keys``): only a SHA-256 of each key is kept; the key
# itself is shown once, when it is made. ``key_id`` is its public part, to list and revoke it.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("tenant_id", sa.String(128), nullable=False),
    sa.Column("name", sa.String(255)),
    sa.Column("key_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
    sa.Index("ix_api_keys_tenant", "tenant_id", "created_at"),
)

# Checkpoints of the journal (``ledger_db.checkpoint``): the chain heads of every tenant at an
# instant and their RFC 6962 Merkle root, each also published as a LEDGER_CHECKPOINT event.
# Append-only like the journal (migration 0005 gives it the same triggers).
ledger_checkpoints = sa.Table(
    "ledger_checkpoints",
    metadata,
    sa.Column("sequence", AutoIncrementId, primary_key=True, autoincrement=True),
    sa.Column("checkpoint_id", sa.String(64), nullable=False, unique=True),
    sa.Column("version", sa.SmallInteger, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("tree_size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.String(64), nullable=False),
    sa.Column("chains", JsonType, nullable=False),
    sa.CheckConstraint("tree_size >= 0", name="tree_size"),
)

APPEND_ONLY_TABLES: tuple[str, ...] = ("journal_transactions", "journal_entries")
