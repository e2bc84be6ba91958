"""Database-enforced append-only journal, and the CHECK rules of the rows that drive payouts.

The journal triggers raise an error whose text starts with ``journal_is_append_only`` so that
the ledger (and a person reading a log) recognises it whatever client issued the statement.

SQLite has two more ways to rewrite a row than UPDATE and DELETE: ``INSERT OR REPLACE`` (also
spelt ``REPLACE INTO``) deletes the conflicting row without firing its DELETE trigger (unless
``recursive_triggers`` is on, which a foreign client need not set), and ``INSERT ... ON CONFLICT
DO UPDATE``. A BEFORE INSERT trigger refusing any row whose unique keys are taken already stops
all of them, whoever connects. On PostgreSQL an upsert or a MERGE fires the UPDATE and DELETE
triggers, which refuse it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from ledger_db.schema import ACCOUNT_CHECKS, APPEND_ONLY_TABLES, HOLD_CHECKS

# The unique keys of each journal table (as in ledger_db.schema), each a list of columns.
_UNIQUE_KEYS: dict[str, list[list[str]]] = {
    "journal_transactions": [
        ["sequence"],
        ["transaction_id"],
        ["tenant_id", "reverses_transaction_id"],
    ],
    "journal_entries": [["journal_sequence", "entry_index"], ["tenant_id", "ledger_entry_id"]],
}
_ROW_CHECKS: dict[str, dict[str, str]] = {"holds": HOLD_CHECKS, "accounts": ACCOUNT_CHECKS}

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION ledger_journal_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal_is_append_only: %% on %% is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'P0001';
END
$$
"""


def create_append_only_triggers(
    connection: sa.Connection, tables: Sequence[str] = APPEND_ONLY_TABLES
) -> None:
    """Creates triggers that refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL) on ``tables``
    (the journal's unless a later migration names its own append-only table)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_PG_FUNCTION)
        for table in tables:
            connection.exec_driver_sql(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_journal_append_only()"
            )
            connection.exec_driver_sql(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ledger_journal_append_only()"
            )
        return
    for table in tables:
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


def create_overwrite_triggers(
    connection: sa.Connection, unique_keys: Mapping[str, list[list[str]]] = _UNIQUE_KEYS
) -> None:
    """SQLite: refuses an INSERT whose unique key is taken, before any conflict clause acts
    (on the journal's tables unless ``unique_keys`` names others, table by table)."""
    if connection.dialect.name != "sqlite":
        return
    for table, keys in unique_keys.items():
        taken = " OR ".join(
            f"EXISTS (SELECT 1 FROM {table} WHERE "
            + " AND ".join(f"{column} = NEW.{column}" for column in key)
            + ")"
            for key in keys
        )
        connection.exec_driver_sql(
            f"CREATE TRIGGER {table}_no_overwrite BEFORE INSERT ON {table} WHEN {taken} "
            f"BEGIN SELECT RAISE(ABORT, 'journal_is_append_only: INSERT over an existing row "
            f"of {table} is refused'); END"
        )


def drop_overwrite_triggers(connection: sa.Connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    for table in _UNIQUE_KEYS:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_overwrite")


def create_row_checks(connection: sa.Connection) -> None:
    """The CHECK rules of ``holds`` and ``accounts``: constraints on PostgreSQL (validated
    against the existing rows), BEFORE INSERT and UPDATE triggers on SQLite."""
    for table, checks in _ROW_CHECKS.items():
        for name, condition in checks.items():
            constraint = f"ck_{table}_{name}"
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(
                    f"ALTER TABLE {table} ADD CONSTRAINT {constraint} "
                    f"CHECK ({condition.format(r='')})"
                )
                continue
            for operation in ("INSERT", "UPDATE"):
                connection.exec_driver_sql(
                    f"CREATE TRIGGER {constraint}_{operation.lower()} BEFORE {operation} ON {table} "
                    f"WHEN NOT ({condition.format(r='NEW.')}) "
                    f"BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {constraint}'); END"
                )


def drop_row_checks(connection: sa.Connection) -> None:
    for table, checks in _ROW_CHECKS.items():
        for name in checks:
            constraint = f"ck_{table}_{name}"
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(
                    f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {constraint}"
                )
                continue
            for operation in ("insert", "update"):
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {constraint}_{operation}")
