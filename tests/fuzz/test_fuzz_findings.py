"""What the CLI fuzz found, pinned: each of these exited 1 (``internal_error``, a raw
``ValueError``/``OSError``/``UnicodeEncodeError``) before; now each is a typed refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger_db import Ledger
from ledger_db.errors import InvalidEntry
from ledger_db.finops import EntryFilter

pytestmark = pytest.mark.fuzz


def _cli(directory: Path, *arguments: str) -> tuple[int, dict[str, object]]:
    url = f"sqlite:///{directory}/ledger.db"
    Ledger.from_url(url).close()
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "compute-ledger"), *arguments, "--json"],
        cwd=directory,
        env={**os.environ, "LEDGER_DATABASE_URL": url, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        check=False,
    )
    return completed.returncode, json.loads(completed.stdout.strip().split("\n")[-1])


@pytest.mark.parametrize(
    "arguments",
    [
        ["export", "--output", ""],
        ["export", "--output", "/proc/no-such-dir/x"],
        ["statement", "--tenant", "t", "--month", "2026-01", "--output", ""],
        ["statement", "--tenant", "t", "--month", "2026-01", "--output", "/proc/no-such-dir/x"],
        ["reconcile", "--tenant", "t", "--bill", "."],
    ],
)
def test_a_file_path_that_cannot_be_used_is_a_usage_error(
    tmp_path: Path, arguments: list[str]
) -> None:
    status, body = _cli(tmp_path, *arguments)
    assert status == 2, body
    assert body["error"]["code"] == "usage_error", body  # type: ignore[index]


def test_an_output_directory_is_refused_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    status, body = _cli(tmp_path, "export", "--output", str(tmp_path / "target"))
    assert status == 2, body
    assert not list(tmp_path.glob(".target.tmp"))


@pytest.mark.parametrize("value", ["\x00", "\ud800", "\udcff", "a\x00b"])
@pytest.mark.parametrize("field", ["account_id", "tenant_id", "tag", "external_ref", "currency"])
def test_a_report_filter_with_nul_or_a_lone_surrogate_is_invalid_entry(
    field: str, value: str
) -> None:
    with pytest.raises(InvalidEntry) as raised:
        EntryFilter(**{field: value})
    assert raised.value.details.get("field") == field


def test_report_with_an_undecodable_account_byte_is_invalid_entry(tmp_path: Path) -> None:
    # A byte that is not UTF-8 arrives as a lone surrogate (surrogateescape).
    status, body = _cli(tmp_path, "report", "--account", "\udcff")
    assert status == 4, body
    assert body["error"]["code"] == "invalid_entry", body  # type: ignore[index]
