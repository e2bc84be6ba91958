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
    ledger = Ledger.from_url(journal_url)
    try:
        assert ledger.verify_journal() == []
    finally:
        ledger.close()


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
