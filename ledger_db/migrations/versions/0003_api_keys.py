"""api keys of the read API

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-22 09:40:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ledger_db.schema

# revision identifiers, used by Alembic.
revision: str = "0003"
# Migration 0002 (the hardening) lands beside this one: at the merge this becomes "0002".
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("key_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", ledger_db.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", ledger_db.schema.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant_id", "created_at"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_api_keys_tenant", table_name="api_keys")
    op.drop_table("api_keys")
