"""Database-enforced append-only journal: triggers on both engines.

The triggers raise an error whose text starts with ``journal_is_append_only`` so that the
ledger (and a person reading a log) recognises it whatever client issued the statement.
"""

from __future__ import annotations

import sqlalchemy as sa

from ledger_db.schema import APPEND_ONLY_TABLES

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION ledger_journal_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal_is_append_only: %% on %% is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'P0001';
END
$$
"""


def create_append_only_triggers(connection: sa.Connection) -> None:
    """Creates triggers that refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_PG_FUNCTION)
        for table in APPEND_ONLY_TABLES:
            connection.exec_driver_sql(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_journal_append_only()"
            )
            connection.exec_driver_sql(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ledger_journal_append_only()"
            )
        return
    for table in APPEND_ONLY_TABLES:
        for operation in ("UPDATE", "DELETE"):
            connection.exec_driver_sql(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'journal_is_append_only: {operation} on {table} "
                "is refused'); END"
            )


def drop_append_only_triggers(connection: sa.Connection) -> None:
    """Removes the triggers (downgrade only)."""
    if connection.dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        connection.exec_driver_sql("DROP FUNCTION IF EXISTS ledger_journal_append_only()")
        return
    for table in APPEND_ONLY_TABLES:
        for operation in ("update", "delete"):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")
