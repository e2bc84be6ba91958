"""Every limit of the ledger, in one place, with the unit last in its name."""

from __future__ import annotations

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
meta_bytes_max: Final = 16 * 1024
tags_per_entry_max: Final = 32
tag_length_max: Final = 64
entries_per_transaction_max: Final = 1000
page_size_default: Final = 100
page_size_max: Final = 1000
batch_size_max: Final = 10_000
fee_basis_points_max: Final = 10_000
retry_attempts_max: Final = 20
