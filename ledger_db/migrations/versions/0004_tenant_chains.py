"""tenant chains: a hash chain per tenant instead of one global head

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:45:00

- ``journal_chains`` (tenant_id, last_sequence, last_hash): the head of each tenant's chain,
  locked last by every write of that tenant (two tenants never wait on each other);
- ``journal_transactions.chain_sequence``: the gapless position in the tenant's chain, unique
  per tenant; NULL on every row written before this migration (the global chain of hash
  versions 1 and 2, which stays verifiable as it was written);
- an index on ``journal_transactions (tenant_id, sequence)`` (walking one tenant's chain);
- PostgreSQL: the sequence ``journal_transactions_sequence`` hands out the global ordering key
  ``sequence`` from the old head on (unique and increasing, no longer gapless across tenants);
- SQLite: the trigger refusing an overwrite of a journal row also covers the new unique key.

``journal_head`` is left as it is: frozen at the head of the old global chain, it is the hash
every tenant chain starts from (``GENESIS_HASH`` on a database created with this migration).
Tenant chains are created by the first write of each tenant. Forward only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRANSACTION_KEYS = (
    ("sequence",),
    ("transaction_id",),
    ("tenant_id", "reverses_transaction_id"),
    ("tenant_id", "chain_sequence"),
)


def _sqlite_overwrite_trigger(connection: sa.Connection) -> None:
    connection.exec_driver_sql("DROP TRIGGER IF EXISTS journal_transactions_no_overwrite")
    taken = " OR ".join(
        "EXISTS (SELECT 1 FROM journal_transactions WHERE "
        + " AND ".join(f"{column} = NEW.{column}" for column in key)
        + ")"
        for key in _TRANSACTION_KEYS
    )
    connection.exec_driver_sql(
        f"CREATE TRIGGER journal_transactions_no_overwrite BEFORE INSERT ON journal_transactions "
        f"WHEN {taken} BEGIN SELECT RAISE(ABORT, 'journal_is_append_only: INSERT over an "
        "existing row of journal_transactions is refused'); END"
    )


def upgrade() -> None:
    """Upgrade schema."""
    connection = op.get_bind()
    op.create_table(
        "journal_chains",
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_journal_chains")),
    )
    op.add_column("journal_transactions", sa.Column("chain_sequence", sa.BigInteger()))
    op.create_index(
        "uq_journal_transactions_tenant_id_chain_sequence",
        "journal_transactions",
        ["tenant_id", "chain_sequence"],
        unique=True,
    )
    op.create_index(
        "ix_journal_transactions_tenant_sequence",
        "journal_transactions",
        ["tenant_id", "sequence"],
        unique=False,
    )
    if connection.dialect.name == "postgresql":
        start = connection.execute(
            sa.text("SELECT coalesce(max(sequence), 0) + 1 FROM journal_transactions")
        ).scalar_one()
        connection.exec_driver_sql(
            f"CREATE SEQUENCE journal_transactions_sequence AS bigint START WITH {int(start)}"
        )
    else:
        _sqlite_overwrite_trigger(connection)


def downgrade() -> None:
    """Refused: version-3 transactions cannot be verified by the 0003 code."""
    raise NotImplementedError("0004 is forward only: restore a backup taken before it instead")
