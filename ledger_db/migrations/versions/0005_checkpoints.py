"""ledger checkpoints: the chain heads at an instant and their Merkle root, append-only

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01 12:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ledger_db.schema
from ledger_db.migrations.append_only import (
    create_append_only_triggers,
    create_overwrite_triggers,
)

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "ledger_checkpoints"


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        _TABLE,
        sa.Column(
            "sequence",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("checkpoint_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", ledger_db.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column(
            "chains",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.CheckConstraint("tree_size >= 0", name=op.f("ck_ledger_checkpoints_tree_size")),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_ledger_checkpoints")),
        sa.UniqueConstraint("checkpoint_id", name=op.f("uq_ledger_checkpoints_checkpoint_id")),
    )
    connection = op.get_bind()
    create_append_only_triggers(connection, tables=(_TABLE,))
    create_overwrite_triggers(connection, {_TABLE: [["sequence"], ["checkpoint_id"]]})


def downgrade() -> None:
    """Downgrade schema (the table's triggers go with it)."""
    op.drop_table(_TABLE)
