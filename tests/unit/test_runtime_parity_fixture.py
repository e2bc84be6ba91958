"""The table the JS runtime's unit tests compare their answers with (hold IDs, amounts, request
hashes, tenant and key checks) is what the Python functions answer now."""

from __future__ import annotations

import json

from _runtime_contract import assert_current, load_generator

from ledger_db.ids import derive_hold_id


def test_committed_parity_fixture_is_current() -> None:
    generator = load_generator()
    assert_current(generator.PARITY_FIXTURE_PATH, generator.parity_document())


def test_the_fixture_covers_non_ascii_keys_and_both_outcomes() -> None:
    generator = load_generator()
    document = json.loads(generator.PARITY_FIXTURE_PATH.read_text(encoding="utf-8"))
    keys = [case["idempotency_key"] for case in document["hold_ids"]]
    assert any(not key.isascii() for key in keys)
    assert any(ord(character) > 0xFFFF for key in keys for character in key)
    for case in document["hold_ids"]:
        assert case["hold_id"] == derive_hold_id(case["tenant_id"], case["idempotency_key"])
    outcomes = {case["code"] is None for case in document["amounts"]}
    assert outcomes == {True, False}
    # Two spellings of one amount are one request; another amount is another request.
    hashes = [case["hash"] for case in document["freeze_hashes"]]
    assert hashes[0] == hashes[1]
    assert len(set(hashes)) == len(hashes) - 1
