"""Every limit of the ledger, in one place, with the unit last in its name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

amount_minor_max: Final = 2**63 - 1
# Amount text (and Decimal digits) longer than this is refused before it is read as a number.
amount_text_length_max: Final = 64
hold_ttl_seconds_min: Final = 1
hold_ttl_seconds_max: Final = 30 * 24 * 3600
idempotency_key_length_max: Final = 255
account_id_length_max: Final = 128
tenant_id_length_max: Final = 128
text_field_length_max: Final = 255
# The journal's ``env`` column is 64 characters wide.
env_length_max: Final = 64
# Hold, transaction and ledger entry IDs are stored in 64-character columns.
id_length_max: Final = 64
meta_bytes_max: Final = 16 * 1024
# Nesting of meta objects and arrays; deeper structures are refused before they are walked.
meta_depth_max: Final = 32
tags_per_entry_max: Final = 32
tag_length_max: Final = 64
entries_per_transaction_max: Final = 1000
page_size_default: Final = 100
page_size_max: Final = 1000
batch_size_max: Final = 10_000
# Records of one import file, applied in one database transaction (all tenants together).
import_records_max: Final = 100_000
fee_basis_points_max: Final = 10_000
retry_attempts_max: Final = 20
# Journal sequences, outbox sequences and cursors are 64-bit integers in both engines.
sequence_max: Final = 2**63 - 1

# Every stored instant lies in [instant_min, instant_max] (UTC, microseconds): the range both
# engines store and read back exactly, in the fixed-width text of SQLite as in PostgreSQL.
instant_min: Final = datetime(1970, 1, 1, tzinfo=UTC)
instant_max: Final = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
# A caller-supplied ``now`` lies within [ledger clock - lag, ledger clock + lead]. The lag lets a
# caller's clock run a little behind the ledger's, and no further: a ``now`` a year old would
# capture a hold that expired long ago. The lead covers the time-skipping Temporal test server,
# whose workflow time runs ahead of the wall clock by up to a hold's longest TTL.
now_lag_seconds_max: Final = 300
now_lead_seconds_max: Final = hold_ttl_seconds_max + 24 * 3600
