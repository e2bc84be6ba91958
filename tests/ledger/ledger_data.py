"""Sample inputs shared by the ledger suites (imported by name: ``tests/ledger`` is on the path)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ledger_db.database import create_engine, migrate
from ledger_db.schema import instant_text


def sample_record(**overrides: Any) -> dict[str, Any]:
    """A valid LedgerEntry v1.0 record of 1.00 USD, as a caller hands it to ``record_entries``."""
    entry: dict[str, Any] = {
        "task_id": "task-1",
        "direction": "OUT",
        "amount": "1.00",
        "currency": "USD",
        "reason": "PROCUREMENT",
        "category": "CLOUD_COST",
    }
    entry.update(overrides)
    return entry


FIXTURES = Path(__file__).parent / "fixtures"
# Parents before children (foreign keys), the head replaced by the fixture's.
_JOURNAL_TABLES = (
    "accounts",
    "journal_transactions",
    "journal_entries",
    "holds",
    "idempotency_keys",
    "outbox_events",
    "journal_head",
)


def _stored(value: Any, dialect: str) -> Any:
    if isinstance(value, dict) and set(value) == {"$instant"}:
        instant = datetime.fromisoformat(value["$instant"])
        return instant_text(instant) if dialect == "sqlite" else instant
    return value


def load_journal_fixture(url: str, fixture: Path, revision: str) -> dict[str, list[dict[str, Any]]]:
    """A database at ``revision`` holding the fixture's rows exactly as the old code wrote them
    (reflected tables: that revision's schema, not today's); returns the rows."""
    engine = create_engine(url)
    rows: dict[str, list[dict[str, Any]]] = json.loads(fixture.read_text())
    try:
        migrate(engine, revision)
        with engine.begin() as connection:
            tables = sa.MetaData()
            tables.reflect(bind=connection)
            connection.execute(tables.tables["journal_head"].delete())
            for name in _JOURNAL_TABLES:
                values = [
                    {column: _stored(value, engine.dialect.name) for column, value in row.items()}
                    for row in rows[name]
                ]
                connection.execute(tables.tables[name].insert(), values)
            if engine.dialect.name == "postgresql":
                # Rows came with their sequence numbers; move the serial past them, as a
                # restored dump does.
                connection.execute(
                    sa.text(
                        "SELECT setval(pg_get_serial_sequence('outbox_events', 'sequence'), "
                        "(SELECT max(sequence) FROM outbox_events))"
                    )
                )
    finally:
        engine.dispose()
    return rows
