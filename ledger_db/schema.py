"""The ledger's tables (SQLAlchemy Core), identical in meaning on SQLite and PostgreSQL.

Mutable state lives in ``accounts`` (balance snapshots), ``holds``, ``idempotency_keys`` and
``outbox_events``. The journal (``journal_transactions``, ``journal_entries``) is append-only:
triggers created by the migrations refuse every UPDATE, DELETE and TRUNCATE, whoever issues it.
``journal_head`` holds the last sequence and hash of the chain; locking it last in every write
serialises appends and keeps the sequence gapless.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

__all__ = [
    "APPEND_ONLY_TABLES",
    "UtcDateTime",
    "accounts",
    "api_keys",
    "holds",
    "idempotency_keys",
    "journal_entries",
    "journal_head",
    "journal_transactions",
    "metadata",
    "outbox_events",
]


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """An aware UTC instant: ``timestamptz`` on PostgreSQL, fixed-width ISO text on SQLite.

    SQLite keeps the text sortable and exact to the microsecond; both engines hand back aware
    UTC datetimes, and naive datetimes are refused on the way in.
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
            return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
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
    sa.UniqueConstraint("tenant_id", "reverses_transaction_id"),
    sa.Index("ix_journal_transactions_tenant_recorded", "tenant_id", "recorded_at"),
)

journal_entries = sa.Table(
    "journal_entries",
    metadata,
    sa.Column("journal_sequence", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("entry_index", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ledger_entry_id", sa.String(64), nullable=False, unique=True),
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

APPEND_ONLY_TABLES: tuple[str, ...] = ("journal_transactions", "journal_entries")
