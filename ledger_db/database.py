"""Engines for both storage backends, and the schema migrations.

SQLite is the embedded default (a file under the working directory): WAL mode, foreign keys
on, and ``BEGIN IMMEDIATE`` for writes so that there is one writer at a time and no upgrade
deadlock. PostgreSQL comes through ``LEDGER_DATABASE_URL``; its writers take row locks in a
fixed order (see ``ledger_db.ledger``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["DEFAULT_DATABASE_URL", "create_engine", "database_url_from_env", "migrate"]

DEFAULT_DATABASE_URL = "sqlite:///.compute-ledger/ledger.db"
_MIGRATIONS = Path(__file__).parent / "migrations"
# An arbitrary, fixed key so that concurrent migrators on PostgreSQL take turns.
_MIGRATION_LOCK_KEY = 7_341_221_907


def database_url_from_env(environ: dict[str, str] | None = None) -> str:
    """``LEDGER_DATABASE_URL``, or the embedded SQLite file under the working directory."""
    environ = dict(os.environ) if environ is None else environ
    return environ.get("LEDGER_DATABASE_URL") or DEFAULT_DATABASE_URL


def _normalise(url: str) -> sa.URL:
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_engine(url: str, **options: Any) -> sa.Engine:
    """An engine for ``url`` configured as the ledger needs it."""
    parsed = _normalise(url)
    if parsed.get_backend_name() == "sqlite":
        return _create_sqlite_engine(parsed, **options)
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 40)
    options.setdefault("pool_pre_ping", True)
    connect_args = options.pop("connect_args", {})
    # psycopg prepares a statement after five runs and PostgreSQL may then keep a generic plan
    # made while a table was empty (seen: the ledger_entry_id check taking seconds after 100k
    # rows). The ledger's statements are short; planning each one is the cheaper risk.
    connect_args.setdefault("prepare_threshold", None)
    return sa.create_engine(parsed, connect_args=connect_args, **options)


def _create_sqlite_engine(url: sa.URL, **options: Any) -> sa.Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    connect_args = options.pop("connect_args", {})
    connect_args.setdefault("timeout", 60)
    connect_args.setdefault("check_same_thread", False)
    engine = sa.create_engine(url, connect_args=connect_args, **options)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's events, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # The implicit delete of an INSERT OR REPLACE then fires DELETE triggers too (the
        # journal's BEFORE INSERT triggers refuse it first for any client, this is a second wall).
        cursor.execute("PRAGMA recursive_triggers=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _alembic_config(connection: sa.Connection) -> Config:
    # Alembic is imported only to migrate: reading the ledger must not pay for it.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


_migration_lock = threading.Lock()


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Brings the schema to ``revision`` (forward-only, numbered migrations); idempotent.

    Safe when several processes or threads start at once: Alembic's context is global to the
    process (a thread lock), PostgreSQL migrators queue on an advisory lock, and SQLite ones
    on the database's write lock (``BEGIN IMMEDIATE``) instead of failing to upgrade a read.
    """
    with (
        _migration_lock,
        engine.connect().execution_options(sqlite_begin="IMMEDIATE") as connection,
    ):
        if engine.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
            connection.commit()
        try:
            from alembic import command

            command.upgrade(_alembic_config(connection), revision)
            connection.commit()
        finally:
            if engine.dialect.name == "postgresql":
                connection.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
                connection.commit()
