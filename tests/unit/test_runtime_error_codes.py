"""The JS runtime's error codes and constants are generated from the Python code: the committed
files must be exactly what the generator writes now (``runtime/scripts/generate_contract.py``)."""

from __future__ import annotations

import json

from _runtime_contract import assert_current, load_generator

from ledger_db import errors
from starter import error_codes


def test_committed_error_codes_are_current() -> None:
    generator = load_generator()
    assert_current(generator.ERROR_CODES_PATH, generator.error_codes_document())


def test_every_ledger_code_and_every_face_code_is_listed() -> None:
    generator = load_generator()
    document = json.loads(generator.ERROR_CODES_PATH.read_text(encoding="utf-8"))
    assert set(document["ledger_codes"]) == {*errors.ERROR_CODES, "ledger_error"}
    assert set(document["codes"]) == set(document["ledger_codes"]) | set(error_codes.ERROR_STATUSES)
    for code, row in document["codes"].items():
        assert row["http_status"] == error_codes.http_status_for(code)
        if row["source"] == "ledger":
            assert errors.error_class_for_code(code).__name__ == row["class"]


def test_committed_contract_constants_are_current() -> None:
    generator = load_generator()
    assert_current(generator.CONTRACT_PATH, generator.contract_document())


def test_check_mode_reports_a_stale_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    generator = load_generator()
    stale = tmp_path / "error-codes.json"
    stale.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(generator, "ERROR_CODES_PATH", stale)
    assert stale in generator.stale_files()
    assert generator.main(["--check"]) == 1
