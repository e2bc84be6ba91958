"""``compute-ledger db grant`` on real PostgreSQL: the application's role runs the ledger and
cannot rewrite the journal, whatever SQL it sends; the schema's owner stays the only role that
could."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from cli_helpers import Cli, clean_environment

from ledger_db import Ledger
from starter.db import known_revisions

pytestmark = pytest.mark.postgres

INSUFFICIENT_PRIVILEGE = "42501"


@pytest.fixture
def role(postgres_url: str) -> Iterator[str]:
    """A role name of this test's own (roles are cluster-wide); dropped afterwards."""
    name = f"ledger_app_{uuid.uuid4().hex[:8]}"
    yield name
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": name}
            ).first()
            if exists:
                connection.exec_driver_sql(f'DROP OWNED BY "{name}"')
                connection.exec_driver_sql(f'DROP ROLE "{name}"')
    finally:
        engine.dispose()


def _as(url: str, role: str) -> str:
    return sa.make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def test_the_application_role_runs_the_ledger_and_cannot_rewrite_it(
    postgres_url: str, role: str, tmp_path: Path
) -> None:
    owner = Cli(tmp_path, clean_environment(LEDGER_DATABASE_URL=postgres_url))
    owner.run("db", "upgrade").expect_ok()
    password = "p'a%ss\\word"
    granted = owner.run("db", "grant", "--role", role, "--password", password).expect_ok()
    assert (granted["role"], granted["created"], granted["password_set"]) == (role, True, True)
    assert set(granted["journal_tables"]) == {"journal_transactions", "journal_entries"}
    # Idempotent: granting again changes nothing and creates nothing.
    again = owner.run("db", "grant", "--role", role).expect_ok()
    assert (again["created"], again["password_set"]) == (False, False)

    admin = sa.create_engine(postgres_url)
    with admin.connect() as connection:
        verifier = connection.execute(
            sa.text("SELECT rolpassword FROM pg_authid WHERE rolname = :role"), {"role": role}
        ).scalar_one()
        owners = set(
            connection.execute(
                sa.text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )
    admin.dispose()
    assert str(verifier).startswith("SCRAM-SHA-256$")  # stored as PostgreSQL stores passwords
    assert role not in owners

    # The role runs the ledger: the CLI's schema check, a deposit, a freeze, a capture, a payout.
    app_url = _as(postgres_url, role)
    app_cli = Cli(tmp_path, clean_environment(LEDGER_DATABASE_URL=app_url))
    app_cli.run(
        "account",
        "open",
        "--tenant",
        "t",
        "--account",
        "buyer",
        "--currency",
        "USD",
        "--idempotency-key",
        "o-1",
    ).expect_ok()
    ledger = Ledger.from_url(app_url, migrate=False)
    try:
        ledger.open_account(
            tenant_id="t", account_id="seller", currency="USD", idempotency_key="o-2"
        )
        ledger.deposit("buyer", "50.00", tenant_id="t", idempotency_key="d-1")
        hold = ledger.freeze(
            "buyer",
            "20.00",
            "N",
            tenant_id="t",
            idempotency_key="f-1",
            ttl_seconds=600,
            payee_account_id="seller",
        )
        ledger.capture_hold(hold.hold_id, "order-1", tenant_id="t", idempotency_key="c-1")
        paid = ledger.finalize_hold(hold.hold_id, tenant_id="t", idempotency_key="p-1")
        assert paid.finalized is True
        assert ledger.get_balance("buyer", tenant_id="t").available == "30.00"
        assert ledger.verify_journal() == []
        assert len(ledger.list_events(tenant_id="t")) == 3
    finally:
        ledger.close()
    # It takes checkpoints (INSERT only) and audits against them.
    taken = app_cli.run("checkpoint", "--out", str(tmp_path / "cp.json")).expect_ok()
    assert [chain["tenant_id"] for chain in taken["chains"]] == ["t"]
    assert app_cli.run("audit", "--checkpoint", str(tmp_path / "cp.json")).expect_ok()["ok"]
    shown = app_cli.run("account", "show", "--tenant", "t", "--account", "seller").expect_ok()
    assert shown["balance"]["posted"] == "19.80"
    # Migrating is the owner's job: the role cannot move the schema.
    head = known_revisions()[-1]
    assert app_cli.run("db", "status").expect_ok()["current"] == head

    # What the role may never do to the journal, whatever SQL it sends.
    refused = [
        "ALTER TABLE journal_entries ADD COLUMN forged integer",
        "ALTER TABLE journal_entries DISABLE TRIGGER ALL",
        "ALTER TABLE journal_transactions DISABLE TRIGGER journal_transactions_append_only",
        "DROP TRIGGER journal_entries_append_only ON journal_entries",
        "DROP TRIGGER journal_transactions_no_truncate ON journal_transactions",
        "TRUNCATE journal_entries",
        "TRUNCATE journal_transactions CASCADE",
        "UPDATE journal_entries SET amount_minor = 1",
        "DELETE FROM journal_entries",
        "UPDATE journal_transactions SET hash = 'forged'",
        "DELETE FROM journal_transactions",
        "DROP TABLE journal_entries",
        "UPDATE alembic_version SET version_num = '0000'",
        "CREATE TABLE shadow (id integer)",
        "ALTER TABLE accounts DISABLE TRIGGER ALL",
        "UPDATE ledger_checkpoints SET root = 'forged'",
        "DELETE FROM ledger_checkpoints",
        "TRUNCATE ledger_checkpoints",
        "ALTER TABLE ledger_checkpoints DISABLE TRIGGER ALL",
    ]
    conninfo = (
        sa.make_url(app_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    for statement in refused:
        with psycopg.connect(conninfo) as connection, pytest.raises(psycopg.Error) as caught:
            connection.execute(statement)
        assert caught.value.sqlstate == INSUFFICIENT_PRIVILEGE, (statement, caught.value)

    # And the books are as they were.
    check = Ledger.from_url(postgres_url, migrate=False)
    try:
        assert check.verify_journal() == []
        assert check.get_balance("buyer", tenant_id="t").posted == "30.00"
    finally:
        check.close()


def test_grant_is_for_postgresql_only(tmp_path: Path) -> None:
    cli = Cli(tmp_path, clean_environment(LEDGER_DATABASE_URL=f"sqlite:///{tmp_path}/l.db"))
    cli.run("db", "upgrade").expect_ok()
    cli.run("db", "grant").expect_error("usage_error", 2)


def test_a_bad_role_name_is_refused_before_any_sql(postgres_url: str, tmp_path: Path) -> None:
    cli = Cli(tmp_path, clean_environment(LEDGER_DATABASE_URL=postgres_url))
    cli.run("db", "upgrade").expect_ok()
    error = cli.run("db", "grant", "--role", 'app"; DROP TABLE accounts; --').expect_error(
        "usage_error", 2
    )
    assert "role" in error["message"]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_the_migrations_build_exactly_the_tables_of_the_code(database_url: str) -> None:
    """``db upgrade``'s schema is ``ledger_db.schema``'s, api_keys (0003) included: Alembic's
    own comparison finds no difference, types compared."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ledger_db.schema import metadata

    ledger = Ledger.from_url(database_url)
    try:
        with ledger.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
            assert "api_keys" in sa.inspect(connection).get_table_names()
    finally:
        ledger.close()
