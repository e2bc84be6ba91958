"""The write store: units of work applied in batches, one transaction and one commit for many.

- :mod:`ledger_db.store.writer`: the combining batch writer (a savepoint per unit, one commit);
- :mod:`ledger_db.store.conflicts`: which database errors are retried, which are typed errors.

The journal append itself (chains, hashes, multi-row inserts) is :func:`ledger_db.journal.append`.
"""

from ledger_db.store.conflicts import collision_error, is_retryable
from ledger_db.store.writer import BATCH_MAX_DEFAULT, BatchWriter, WriterStats

__all__ = ["BATCH_MAX_DEFAULT", "BatchWriter", "WriterStats", "collision_error", "is_retryable"]
