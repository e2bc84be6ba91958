"""A PostgreSQL role for the application that can run the ledger and cannot rewrite it.

The role that owns the schema (the one that ran the migrations) can drop or disable the
append-only triggers: PostgreSQL lets a table's owner do anything to it. The application should
therefore write with another role, which :func:`grant_application_role` creates (or updates):

- ``LOGIN``, ``CONNECT`` on the database and ``USAGE`` on the schema, nothing more: it owns no
  table, so ``ALTER TABLE``, ``DISABLE TRIGGER``, ``DROP TRIGGER`` and ``DROP TABLE`` are
  refused by PostgreSQL itself;
- on every table of the schema ``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE`` (never
  ``TRUNCATE``, ``REFERENCES`` or ``TRIGGER``), and ``USAGE``, ``SELECT`` on its sequences;
- narrowed on the journal tables and ``ledger_checkpoints`` (append-only too) to ``SELECT`` and
  ``INSERT``: no ``UPDATE`` or ``DELETE`` privilege, on top of the triggers that refuse them
  anyway;
- narrowed on ``alembic_version`` to ``SELECT`` (it reads the schema version, never moves it);
- the same DML privileges by default on tables and sequences the owner creates later, so that a
  future migration does not lock the application out (journal tables a later migration adds
  must then be narrowed to SELECT, INSERT by that migration).

It also revokes ``CREATE`` on the schema from ``PUBLIC`` (already PostgreSQL 15's default), so
that the role cannot create objects of its own there. Run it as the owner, after the
migrations; it is idempotent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ledger_db.schema import APPEND_ONLY_TABLES, ledger_checkpoints

__all__ = ["DEFAULT_APPLICATION_ROLE", "GrantResult", "grant_application_role", "grant_statements"]

DEFAULT_APPLICATION_ROLE = "ledger_app"
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_VERSION_TABLE = "alembic_version"
_DML = "SELECT, INSERT, UPDATE, DELETE"
# Every append-only table: the journal's and the checkpoints'.
_INSERT_ONLY_TABLES = (*APPEND_ONLY_TABLES, ledger_checkpoints.name)


@dataclass(frozen=True)
class GrantResult:
    """What :func:`grant_application_role` did."""

    role: str
    created: bool
    password_set: bool
    schema: str
    owner: str
    journal_tables: tuple[str, ...]


def _check_role(role: str) -> str:
    if not isinstance(role, str) or not _ROLE.match(role):
        raise ValueError(
            "the role must be 1-63 characters of lower-case letters, digits and '_', "
            "not starting with a digit"
        )
    return role


def grant_statements(role: str, *, schema: str = "public", database: str, owner: str) -> list[str]:
    """The privilege statements of :func:`grant_application_role` (after the role exists).

    Every table of the schema gets the DML privileges first, whether or not this program's
    metadata names it, then the journal and the version table are narrowed. Identifiers are
    checked and quoted.
    """
    _check_role(role)
    preparer = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]
    quoted_role = preparer.quote(role)
    quoted_schema = preparer.quote_schema(schema)
    journal = ", ".join(f"{quoted_schema}.{preparer.quote(name)}" for name in _INSERT_ONLY_TABLES)
    version = f"{quoted_schema}.{preparer.quote(_VERSION_TABLE)}"
    defaults = (
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {preparer.quote(owner)} IN SCHEMA {quoted_schema}"
    )
    return [
        f"REVOKE CREATE ON SCHEMA {quoted_schema} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {preparer.quote(database)} TO {quoted_role}",
        f"GRANT USAGE ON SCHEMA {quoted_schema} TO {quoted_role}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {quoted_schema} FROM {quoted_role}",
        f"GRANT {_DML} ON ALL TABLES IN SCHEMA {quoted_schema} TO {quoted_role}",
        f"REVOKE UPDATE, DELETE ON {journal} FROM {quoted_role}",
        f"REVOKE INSERT, UPDATE, DELETE ON {version} FROM {quoted_role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {quoted_schema} TO {quoted_role}",
        f"{defaults} GRANT {_DML} ON TABLES TO {quoted_role}",
        f"{defaults} GRANT USAGE, SELECT ON SEQUENCES TO {quoted_role}",
    ]


def grant_application_role(
    engine: sa.Engine,
    role: str = DEFAULT_APPLICATION_ROLE,
    *,
    password: str | None = None,
    schema: str = "public",
) -> GrantResult:
    """Creates (or updates) the application's DML-only role on a migrated PostgreSQL ledger.

    ``password`` sets the role's password (kept as PostgreSQL keeps it, as a SCRAM verifier);
    without one an existing password is left as it is. Refused on SQLite, which has no roles:
    there the file's permissions are the access control.
    """
    _check_role(role)
    if engine.dialect.name != "postgresql":
        raise ValueError("database roles exist on PostgreSQL only (SQLite has none)")
    with engine.begin() as connection:
        database, owner = connection.execute(
            sa.text("SELECT current_database(), current_user")
        ).one()
        exists = (
            connection.execute(
                sa.text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
            ).first()
            is not None
        )
        quoted_role = connection.dialect.identifier_preparer.quote(role)
        verb = "ALTER" if exists else "CREATE"
        clause = " LOGIN"
        if password is not None:
            # CREATE/ALTER ROLE take no bind parameters: the password goes in as a quoted
            # literal, escaped by the driver's own literal rendering.
            literal = sa.literal(password, sa.String()).compile(
                dialect=connection.dialect, compile_kwargs={"literal_binds": True}
            )
            clause += f" PASSWORD {literal}"
        connection.exec_driver_sql(f"{verb} ROLE {quoted_role}{clause}")
        for statement in grant_statements(role, schema=schema, database=database, owner=owner):
            connection.exec_driver_sql(statement)
    return GrantResult(
        role=role,
        created=not exists,
        password_set=password is not None,
        schema=schema,
        owner=str(owner),
        journal_tables=APPEND_ONLY_TABLES,
    )
