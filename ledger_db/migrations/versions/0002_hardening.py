"""hardening: versioned hashes, per-tenant entry IDs, row checks, journaled accounts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 09:30:00

- ``journal_transactions.hash_version`` (existing rows: 1, verifiable as they were written;
  new rows: 2, which hashes every stored column);
- ``ledger_entry_id`` unique per tenant instead of globally (SQLite rebuilds the table);
- an index on ``journal_transactions (tenant_id, hold_id)`` for the hold audit;
- CHECK rules on ``holds`` and ``accounts`` (constraints on PostgreSQL, triggers on SQLite), and
  on SQLite triggers refusing ``INSERT OR REPLACE`` / upserts over journal rows;
- one ``account_open`` control transaction (version 2) per tenant and batch of existing accounts,
  chained at the head of the journal, so every account row is checked against the journal.

Forward only: the journal then holds version-2 transactions that 0001 code cannot verify.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from ledger_db.ids import derive_account_open_transaction_id
from ledger_db.journal import HASH_VERSIONS
from ledger_db.migrations.append_only import (
    create_append_only_triggers,
    create_overwrite_triggers,
    create_row_checks,
    drop_append_only_triggers,
)
from ledger_db.schema import UtcDateTime

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACCOUNTS_PER_TRANSACTION = 100
_MIGRATION_KEY = "migration:0002"

# journal_entries as 0002 leaves it (SQLite rebuilds the table to change its unique key).
_SQLITE_JOURNAL_ENTRIES = """
CREATE TABLE journal_entries_0002 (
    journal_sequence BIGINT NOT NULL,
    entry_index INTEGER NOT NULL,
    ledger_entry_id VARCHAR(64) NOT NULL,
    transaction_id VARCHAR(64) NOT NULL,
    tenant_id VARCHAR(128) NOT NULL,
    account_id VARCHAR(160) NOT NULL,
    project_id VARCHAR(255),
    env VARCHAR(64) NOT NULL,
    asset_id VARCHAR(255),
    task_id VARCHAR(255),
    external_ref VARCHAR(255),
    direction VARCHAR(3) NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency VARCHAR(12) NOT NULL,
    reason VARCHAR(255) NOT NULL,
    category VARCHAR(255) NOT NULL,
    tags JSON,
    meta JSON NOT NULL,
    occurred_at VARCHAR(27) NOT NULL,
    recorded_at VARCHAR(27) NOT NULL,
    counterpart BOOLEAN NOT NULL,
    hold_id VARCHAR(64),
    CONSTRAINT pk_journal_entries PRIMARY KEY (journal_sequence, entry_index),
    CONSTRAINT ck_journal_entries_direction CHECK (direction IN ('IN', 'OUT')),
    CONSTRAINT ck_journal_entries_amount CHECK (amount_minor > 0),
    CONSTRAINT fk_journal_entries_journal_sequence FOREIGN KEY(journal_sequence)
        REFERENCES journal_transactions (sequence),
    CONSTRAINT uq_journal_entries_tenant_id_ledger_entry_id UNIQUE (tenant_id, ledger_entry_id)
)
"""
_JOURNAL_ENTRY_INDEXES = {
    "ix_journal_entries_account": "tenant_id, account_id, journal_sequence",
    "ix_journal_entries_tenant_asset": "tenant_id, asset_id",
    "ix_journal_entries_tenant_external_ref": "tenant_id, external_ref",
    "ix_journal_entries_tenant_occurred": "tenant_id, occurred_at",
    "ix_journal_entries_tenant_project": "tenant_id, project_id",
    "ix_journal_entries_tenant_task": "tenant_id, task_id",
    "ix_journal_entries_transaction": "transaction_id",
}

# The tables as this migration reads and writes them (not ledger_db.schema, which moves on).
_metadata = sa.MetaData()
_accounts = sa.Table(
    "accounts",
    _metadata,
    sa.Column("tenant_id", sa.String),
    sa.Column("account_id", sa.String),
    sa.Column("kind", sa.String),
    sa.Column("currency", sa.String),
    sa.Column("name", sa.String),
    sa.Column("parent_account_id", sa.String),
    sa.Column("overdraft_limit_minor", sa.BigInteger),
    sa.Column("status", sa.String),
    sa.Column("created_at", UtcDateTime),
)
_transactions = sa.Table(
    "journal_transactions",
    _metadata,
    sa.Column("sequence", sa.BigInteger),
    sa.Column("transaction_id", sa.String),
    sa.Column("tenant_id", sa.String),
    sa.Column("kind", sa.String),
    sa.Column("idempotency_key", sa.String),
    sa.Column("hold_id", sa.String),
    sa.Column("reverses_transaction_id", sa.String),
    sa.Column("entry_count", sa.Integer),
    sa.Column("occurred_at", UtcDateTime),
    sa.Column("recorded_at", UtcDateTime),
    sa.Column("meta", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    sa.Column("prev_hash", sa.String),
    sa.Column("hash", sa.String),
    sa.Column("hash_version", sa.SmallInteger),
)
_head = sa.Table(
    "journal_head",
    _metadata,
    sa.Column("id", sa.Integer),
    sa.Column("last_sequence", sa.BigInteger),
    sa.Column("last_hash", sa.String),
)


def _rebuild_sqlite_journal_entries(connection: sa.Connection) -> None:
    for operation in ("update", "delete"):
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS journal_entries_no_{operation}")
    connection.exec_driver_sql(_SQLITE_JOURNAL_ENTRIES)
    connection.exec_driver_sql("INSERT INTO journal_entries_0002 SELECT * FROM journal_entries")
    connection.exec_driver_sql("DROP TABLE journal_entries")
    connection.exec_driver_sql("ALTER TABLE journal_entries_0002 RENAME TO journal_entries")
    for name, columns in _JOURNAL_ENTRY_INDEXES.items():
        connection.exec_driver_sql(f"CREATE INDEX {name} ON journal_entries ({columns})")


def _attributes(row: Any) -> dict[str, Any]:
    return {
        "account_id": row.account_id,
        "kind": row.kind,
        "currency": row.currency,
        "name": row.name,
        "parent_account_id": row.parent_account_id,
        "overdraft_limit_minor": int(row.overdraft_limit_minor),
        "status": row.status,
    }


def _journal_existing_accounts(connection: sa.Connection) -> None:
    """Appends version-2 ``account_open`` transactions recording every existing account, so
    that from now on audit checks each account row against the journal."""
    rows = connection.execute(
        sa.select(_accounts).order_by(_accounts.c.tenant_id, _accounts.c.account_id)
    ).all()
    if not rows:
        return
    head = connection.execute(sa.select(_head).where(_head.c.id == 1)).one()
    sequence, prev_hash = int(head.last_sequence), str(head.last_hash)
    recorded_at = datetime.now(UTC)
    by_tenant: dict[str, list[Any]] = {}
    for row in rows:
        by_tenant.setdefault(row.tenant_id, []).append(row)
    for tenant_id, tenant_rows in by_tenant.items():
        for start in range(0, len(tenant_rows), _ACCOUNTS_PER_TRANSACTION):
            chunk = tenant_rows[start : start + _ACCOUNTS_PER_TRANSACTION]
            sequence += 1
            transaction = {
                "sequence": sequence,
                "transaction_id": derive_account_open_transaction_id(
                    tenant_id, [row.account_id for row in chunk]
                ),
                "tenant_id": tenant_id,
                "kind": "account_open",
                "idempotency_key": _MIGRATION_KEY,
                "hold_id": None,
                "reverses_transaction_id": None,
                "entry_count": 0,
                "occurred_at": min(row.created_at for row in chunk),
                "recorded_at": recorded_at,
                "meta": {"accounts": [_attributes(row) for row in chunk]},
                "prev_hash": prev_hash,
                "hash_version": 2,
            }
            prev_hash = HASH_VERSIONS[2](transaction, [])
            connection.execute(_transactions.insert().values(**transaction, hash=prev_hash))
    connection.execute(
        _head.update().where(_head.c.id == 1).values(last_sequence=sequence, last_hash=prev_hash)
    )


def upgrade() -> None:
    """Upgrade schema."""
    connection = op.get_bind()
    op.add_column(
        "journal_transactions",
        sa.Column("hash_version", sa.SmallInteger(), nullable=False, server_default=sa.text("1")),
    )
    op.create_index(
        "ix_journal_transactions_tenant_hold",
        "journal_transactions",
        ["tenant_id", "hold_id"],
        unique=False,
    )
    if connection.dialect.name == "postgresql":
        op.drop_constraint(
            "uq_journal_entries_ledger_entry_id", "journal_entries", type_="unique"
        )
        op.create_unique_constraint(
            "uq_journal_entries_tenant_id_ledger_entry_id",
            "journal_entries",
            ["tenant_id", "ledger_entry_id"],
        )
    else:
        drop_append_only_triggers(connection)
        _rebuild_sqlite_journal_entries(connection)
        create_append_only_triggers(connection)
        create_overwrite_triggers(connection)
    create_row_checks(connection)
    _journal_existing_accounts(connection)


def downgrade() -> None:
    """Refused: version-2 transactions cannot be verified by the 0001 code."""
    raise NotImplementedError("0002 is forward only: restore a backup taken before it instead")
