"""The journal is append-only in the database itself: raw SQL on a plain connection (not the
ledger's engine, not its code) can neither UPDATE, DELETE nor (on PostgreSQL) TRUNCATE it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from ledger_db import Ledger

JOURNAL_TABLES = ("journal_transactions", "journal_entries")


@pytest.fixture
def journal_url(database_url: str) -> Iterator[str]:
    """A database whose journal has a few rows, written through the ledger then closed."""
    ledger = Ledger.from_url(database_url)
    try:
        tenant = f"tenant-{uuid.uuid4().hex[:8]}"
        account = ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="open")
        ledger.deposit(account.account_id, "10.00", tenant_id=tenant, idempotency_key="d1")
        ledger.freeze(
            account.account_id,
            "1.00",
            "NEGOTIATION",
            tenant_id=tenant,
            idempotency_key="f1",
            ttl_seconds=60,
        )
    finally:
        ledger.close()
    yield database_url


def assert_verifies(url: str) -> None:
    ledger = Ledger.from_url(url)
    try:
        assert ledger.verify_journal() == []
    finally:
        ledger.close()


def _rows(engine: sa.Engine, table: str) -> list[Any]:
    with engine.connect() as connection:
        return sorted(map(tuple, connection.exec_driver_sql(f"SELECT * FROM {table}").all()))


def _statements(dialect: str, table: str) -> list[str]:
    numeric = "sequence" if table == "journal_transactions" else "amount_minor"
    statements = [
        f"UPDATE {table} SET {numeric} = {numeric} + 1",
        f"UPDATE {table} SET tenant_id = tenant_id",
        f"DELETE FROM {table}",
        f"DELETE FROM {table} WHERE tenant_id IS NOT NULL",
    ]
    if dialect == "postgresql":
        statements += [f"TRUNCATE {table}", f"TRUNCATE {table} CASCADE"]
    return statements


@pytest.mark.parametrize("table", JOURNAL_TABLES)
def test_journal_rows_cannot_be_changed_through_sql(journal_url: str, table: str) -> None:
    plain = sa.create_engine(journal_url)
    try:
        before = _rows(plain, table)
        assert before, "the fixture should have written journal rows"
        for statement in _statements(plain.dialect.name, table):
            with pytest.raises(sa.exc.DBAPIError) as caught, plain.begin() as connection:
                connection.exec_driver_sql(statement)
            message = str(caught.value.orig)
            # A plain TRUNCATE of the referenced table is stopped by the foreign key before the
            # trigger runs; that refusal is as good. TRUNCATE ... CASCADE reaches the trigger.
            refused_by_foreign_key = statement == f"TRUNCATE {table}" and "foreign key" in message
            assert "journal_is_append_only" in message or refused_by_foreign_key, statement
            assert _rows(plain, table) == before, statement
    finally:
        plain.dispose()


def test_journal_still_verifies_after_refused_tampering(journal_url: str) -> None:
    plain = sa.create_engine(journal_url)
    try:
        for table in JOURNAL_TABLES:
            with pytest.raises(sa.exc.DBAPIError), plain.begin() as connection:
                connection.exec_driver_sql(f"DELETE FROM {table}")
    finally:
        plain.dispose()
    assert_verifies(journal_url)


@pytest.mark.postgres
def test_append_only_holds_for_another_role(postgres_url: str) -> None:
    """'Whoever issues it': a second role with full table privileges is refused as well."""
    ledger = Ledger.from_url(postgres_url)
    tenant = "tenant-role"
    account = ledger.open_account(tenant_id=tenant, currency="USD", idempotency_key="open")
    ledger.deposit(account.account_id, "1.00", tenant_id=tenant, idempotency_key="d")
    ledger.close()
    role = f"cl_role_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE ROLE {role}")
            connection.exec_driver_sql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        for statement in (
            "UPDATE journal_entries SET amount_minor = 1",
            "DELETE FROM journal_entries",
        ):
            with pytest.raises(sa.exc.DBAPIError) as caught, admin.connect() as connection:
                connection.exec_driver_sql(f"SET ROLE {role}")
                connection.exec_driver_sql(statement)
            assert "journal_is_append_only" in str(caught.value.orig)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql("RESET ROLE")
            connection.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
            connection.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


def _overwrites(dialect: str, table: str) -> list[str]:
    """Every spelling of "insert over an existing row" each engine has, aimed at rows the
    journal holds (same primary key, or a new key with a taken unique value)."""
    if table == "journal_entries":
        key = "journal_sequence, entry_index"
        columns = (
            "journal_sequence, entry_index, ledger_entry_id, transaction_id, tenant_id, "
            "account_id, project_id, env, asset_id, task_id, external_ref, direction, "
            "amount_minor, currency, reason, category, tags, meta, occurred_at, recorded_at, "
            "counterpart, hold_id"
        )
        # A new primary key whose (tenant_id, ledger_entry_id) is taken: REPLACE would delete
        # the row holding that ID to make room.
        new_key = columns.replace(
            "journal_sequence, entry_index", "journal_sequence, entry_index + 100", 1
        )
        assignment = "amount_minor = excluded.amount_minor + 1"
    else:
        key = "sequence"
        columns = (
            "sequence, transaction_id, tenant_id, kind, idempotency_key, hold_id, "
            "reverses_transaction_id, entry_count, occurred_at, recorded_at, meta, prev_hash, "
            "hash, hash_version"
        )
        new_key = columns.replace("sequence,", "sequence + 1000,", 1)
        assignment = "hash = 'forged'"
    select_all = f"SELECT {columns} FROM {table}"
    if dialect == "sqlite":
        return [
            f"INSERT OR REPLACE INTO {table} ({columns}) {select_all}",
            f"REPLACE INTO {table} ({columns}) {select_all}",
            f"INSERT OR REPLACE INTO {table} ({columns}) SELECT {new_key} FROM {table}",
            f"INSERT INTO {table} ({columns}) {select_all} WHERE true "
            f"ON CONFLICT ({key}) DO UPDATE SET {assignment}",
            f"INSERT INTO {table} ({columns}) {select_all} WHERE true "
            f"ON CONFLICT DO UPDATE SET {assignment}",
            f"INSERT OR IGNORE INTO {table} ({columns}) {select_all}",
        ]
    return [
        f"INSERT INTO {table} ({columns}) {select_all} ON CONFLICT ({key}) DO UPDATE SET {assignment}",
        f"MERGE INTO {table} AS target USING {table} AS source ON "
        + " AND ".join(f"target.{column} = source.{column}" for column in key.split(", "))
        + f" WHEN MATCHED THEN UPDATE SET {assignment.replace('excluded.', 'source.')}",
        f"MERGE INTO {table} AS target USING {table} AS source ON "
        + " AND ".join(f"target.{column} = source.{column}" for column in key.split(", "))
        + " WHEN MATCHED THEN DELETE",
    ]


@pytest.mark.parametrize("table", JOURNAL_TABLES)
def test_journal_rows_cannot_be_overwritten_by_an_insert(journal_url: str, table: str) -> None:
    """SQLite accepted ``INSERT OR REPLACE`` / ``REPLACE INTO`` (its implicit delete skips the
    DELETE trigger) and upserts, rewriting journal rows with a clean audit; PostgreSQL's upsert
    and MERGE reach the UPDATE and DELETE triggers. Every spelling is refused from a plain
    connection (SQLite's ``INSERT OR IGNORE`` of existing rows too), and the rows stay as they
    were."""
    plain = sa.create_engine(journal_url)
    try:
        before = _rows(plain, table)
        for statement in _overwrites(plain.dialect.name, table):
            with pytest.raises(sa.exc.DBAPIError) as caught, plain.begin() as connection:
                connection.exec_driver_sql(statement)
            assert "journal_is_append_only" in str(caught.value.orig), statement
            assert _rows(plain, table) == before, statement
    finally:
        plain.dispose()
    assert_verifies(journal_url)


def test_the_ledgers_own_sqlite_connections_fire_delete_triggers_on_replace(
    sqlite_url: str,
) -> None:
    """A second wall on the ledger's own connections: ``recursive_triggers`` is on, so the
    implicit delete of a REPLACE fires the DELETE trigger as well."""
    ledger = Ledger.from_url(sqlite_url)
    try:
        with ledger.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA recursive_triggers").scalar() == 1
    finally:
        ledger.close()
