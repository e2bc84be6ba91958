"""Alembic environment: runs on the connection handed over by ``ledger_db.database.migrate``."""

from __future__ import annotations

from alembic import context

from ledger_db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the ledger's own migrate() is supported
    raise RuntimeError("run migrations through ledger_db.database.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
