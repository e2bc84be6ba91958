"""The ledger database as the command line and the read API open it: explicit migrations and a
cheap check of the schema version.

``compute-ledger db upgrade`` (and ``dev``, ``demo``, ``worker``) migrate; every other command
opens the ledger without migrating and first reads ``alembic_version`` in one query. A database
behind this program is ``schema_outdated`` (run ``compute-ledger db upgrade``); one ahead of it
(a newer program migrated it) is ``schema_unknown``. The revisions this program knows are read
from the text of its migration files, so the check needs neither Alembic nor an import of the
migrations.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starter.config import database_url
from starter.output import CliError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ledger_db import Ledger

__all__ = [
    "SchemaStatus",
    "known_revisions",
    "open_ledger",
    "opened_ledger",
    "schema_status",
    "shown_url",
    "upgrade",
]

_REVISION = re.compile(r"^revision(?::[^=]*)?=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION = re.compile(
    r"^down_revision(?::[^=]*)?=\s*(?:None|[\"']([^\"']+)[\"'])", re.MULTILINE
)


def _versions_directory() -> Path:
    # Found without importing ledger_db: its package would load SQLAlchemy for nothing here.
    spec = importlib.util.find_spec("ledger_db")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the ledger_db package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "migrations" / "versions"


@functools.cache
def known_revisions() -> tuple[str, ...]:
    """The migration chain this program ships, oldest first (the last one is its head)."""
    parents: dict[str, str | None] = {}
    for path in sorted(_versions_directory().glob("*.py")):
        text = path.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN_REVISION.search(text)
        if revision is None or down is None:
            raise RuntimeError(f"{path.name} names no revision and down_revision")
        parents[revision.group(1)] = down.group(1)
    children = {parent: child for child, parent in parents.items()}
    if len(children) != len(parents):
        raise RuntimeError(f"the migrations do not form one chain: {parents}")
    chain: list[str] = []
    current = children.get(None)
    while current is not None:
        chain.append(current)
        current = children.get(current)
    if len(chain) != len(parents):
        raise RuntimeError(f"the migrations do not form one chain: {parents}")
    return tuple(chain)


def shown_url(url: str) -> str:
    """A database URL fit for a message: the password hidden."""
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against this program's migrations."""

    database_url: str
    current: str | None
    head: str
    pending: tuple[str, ...]
    known: bool

    @property
    def ok(self) -> bool:
        return self.known and not self.pending


def _missing_table(error: Exception) -> bool:
    original = getattr(error, "orig", None)
    if getattr(original, "sqlstate", None) == "42P01":  # PostgreSQL: undefined_table
        return True
    return "no such table" in str(error)


def _current_revision(engine: sa.Engine) -> str | None:
    import sqlalchemy as sa

    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.DBAPIError as error:
        if _missing_table(error):
            return None
        raise
    if len(rows) > 1:
        raise CliError("schema_unknown", f"the database has {len(rows)} schema heads")
    return str(rows[0][0]) if rows else None


def schema_status(engine: sa.Engine) -> SchemaStatus:
    """One query: the database's revision against this program's chain."""
    chain = known_revisions()
    current = _current_revision(engine)
    known = current is None or current in chain
    done = chain.index(current) + 1 if current in chain else 0
    return SchemaStatus(
        database_url=engine.url.render_as_string(hide_password=True),
        current=current,
        head=chain[-1],
        pending=chain[done:] if known else (),
        known=known,
    )


def check_schema(engine: sa.Engine) -> SchemaStatus:
    """The schema status, or ``schema_outdated`` / ``schema_unknown`` saying what to do."""
    status = schema_status(engine)
    if not status.known:
        raise CliError(
            "schema_unknown",
            f"the ledger database {status.database_url} is at schema revision "
            f"{status.current}, which this program does not know (its newest is {status.head}): "
            "a newer compute-ledger migrated it; upgrade this program",
            current=status.current,
            head=status.head,
        )
    if status.pending:
        state = (
            "has no schema yet"
            if status.current is None
            else f"is at schema revision {status.current}, this program needs {status.head}"
        )
        raise CliError(
            "schema_outdated",
            f"the ledger database {status.database_url} {state}: run `compute-ledger db upgrade`",
            current=status.current,
            head=status.head,
        )
    return status


def open_ledger(url: str | None = None, *, check: bool = True) -> Ledger:
    """The ledger of this process (``LEDGER_DATABASE_URL`` or the embedded SQLite file),
    opened without migrating; with ``check``, refused unless its schema is this program's."""
    from ledger_db import Ledger

    ledger = Ledger.from_url(url or database_url(), migrate=False)
    try:
        if check:
            check_schema(ledger.engine)
    except BaseException:
        ledger.close()
        raise
    return ledger


@contextlib.contextmanager
def opened_ledger(url: str | None = None) -> Iterator[Ledger]:
    """:func:`open_ledger` (schema checked, never migrated), closed on the way out."""
    ledger = open_ledger(url)
    try:
        yield ledger
    finally:
        ledger.close()


def upgrade(url: str | None = None) -> tuple[SchemaStatus, SchemaStatus]:
    """Migrates the ledger database to this program's head; returns (before, after)."""
    from ledger_db import Ledger

    ledger = Ledger.from_url(url or database_url(), migrate=False)
    try:
        before = schema_status(ledger.engine)
        if not before.known:
            check_schema(ledger.engine)
        ledger.migrate()
        return before, schema_status(ledger.engine)
    finally:
        ledger.close()
