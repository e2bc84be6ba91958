"""The checkpoint without a database: its Merkle tree is RFC 6962's (the certificate-transparency
reference vectors: the eight leaves of the CT test suites and the tree head of every size 0..8,
and the properties that make it a commitment), the document's parsing, and the chain store behind
two swappable functions."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from ledger_db import checkpoint as checkpoint_module
from ledger_db.checkpoint import (
    EMPTY_TREE_ROOT,
    Checkpoint,
    CheckpointChain,
    chain_leaf_data,
    checkpoint_problems,
    compute_checkpoint,
    leaf_hash,
    merkle_root,
    node_hash,
    parse_checkpoint,
)

# The leaves of the certificate-transparency Merkle tree tests (RFC 6962 section 2.1).
CT_LEAVES = [
    bytes.fromhex(text)
    for text in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
# Their tree heads: index n is the root of the first n leaves.
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("size", range(len(CT_ROOTS)))
def test_roots_match_the_certificate_transparency_vectors(size: int) -> None:
    assert merkle_root(CT_LEAVES[:size]).hex() == CT_ROOTS[size]


def test_the_empty_tree_and_one_leaf() -> None:
    assert EMPTY_TREE_ROOT == hashlib.sha256(b"").hexdigest() == CT_ROOTS[0]
    assert merkle_root([b"x"]) == leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()


def _reference(leaves: list[bytes]) -> bytes:
    """RFC 6962's MTH written from the definition, with slices, as a second opinion."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return node_hash(_reference(leaves[:split]), _reference(leaves[split:]))


def test_every_size_up_to_70_matches_the_definition() -> None:
    leaves = [bytes([index, index * 7 % 256]) for index in range(70)]
    for size in range(71):
        assert merkle_root(leaves[:size]) == _reference(leaves[:size]), size


def test_the_root_commits_to_every_leaf_and_its_position() -> None:
    leaves = [chain_leaf_data(f"t{index}", index + 1, f"{index:064x}") for index in range(13)]
    root = merkle_root(leaves)
    for index in range(len(leaves)):
        changed = list(leaves)
        changed[index] = chain_leaf_data(f"t{index}", index + 1, f"{index + 1:064x}")
        assert merkle_root(changed) != root, index
    assert merkle_root(leaves[::-1]) != root
    assert merkle_root(leaves[:-1]) != root
    assert merkle_root([*leaves, leaves[-1]]) != root


def test_a_leaf_cannot_pass_for_an_inner_node() -> None:
    # The 0x00 / 0x01 prefixes: two leaves' hashes concatenated, given as one leaf, do not
    # reproduce the root of the two (the second-preimage attack RFC 6962 rules out).
    a, b = b"a", b"b"
    assert merkle_root([leaf_hash(a) + leaf_hash(b)]) != merkle_root([a, b])


def test_leaf_data_is_canonical_json() -> None:
    assert chain_leaf_data("acme", 12, "ab" * 32) == f'["acme",12,"{"ab" * 32}"]'.encode()
    assert chain_leaf_data("é", 1, "0" * 64) == '["é",1,"{}"]'.format("0" * 64).encode()


def test_a_document_round_trips_and_malformed_text_is_refused() -> None:
    chains = [CheckpointChain(tenant_id="a", sequence=3, hash="1" * 64)]
    checkpoint = Checkpoint(
        version=1,
        checkpoint_id="id",
        created_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        tree_size=1,
        root=merkle_root([chain_leaf_data("a", 3, "1" * 64)]).hex(),
        chains=chains,
    )
    assert parse_checkpoint(checkpoint.to_json()) == checkpoint
    assert json.loads(checkpoint.to_json())["created_at"] == "2026-12-01T12:00:00.000000Z"
    event = {"type": "LEDGER_CHECKPOINT", "payload": checkpoint.document()}
    assert parse_checkpoint(json.dumps(event)) == checkpoint
    malformed = [
        "",
        "[]",
        "{}",
        '{"version": 1}',
        checkpoint.to_json().replace('"sequence": 3', '"sequence": "3"'),
        checkpoint.to_json().replace('"version": 1', '"version": "1"'),
        checkpoint.to_json().replace('"tree_size": 1', '"tree_size": true'),
        checkpoint.to_json().replace('"root"', '"extra": 1, "root"'),
    ]
    for text in malformed:
        assert text != checkpoint.to_json()
        with pytest.raises(ValueError):
            parse_checkpoint(text)
    naive = checkpoint.document() | {"created_at": "2026-12-01T12:00:00"}
    with pytest.raises(ValueError):
        parse_checkpoint(json.dumps(naive))


@dataclass(frozen=True)
class _StoreHead:
    """A chain store's own head type: only the three attributes are relied on."""

    tenant_id: str
    sequence: int
    hash: str
    extra: str = "ignored"


def test_the_chain_store_is_two_swappable_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    heads = {"b": _StoreHead("b", 7, "b" * 64), "a": _StoreHead("a", 3, "a" * 64)}
    stored = {("a", 3): "a" * 64, ("b", 7): "c" * 64}
    monkeypatch.setattr(checkpoint_module, "chain_heads", lambda _connection: list(heads.values()))
    monkeypatch.setattr(
        checkpoint_module,
        "chain_hash_at",
        lambda _connection, tenant, sequence: stored.get((tenant, sequence)),
    )
    connection: Any = object()  # never used: both calls are the fakes above
    taken = compute_checkpoint(connection, datetime(2026, 12, 1, tzinfo=UTC))
    # Sorted by tenant whatever order the store returns.
    assert [(c.tenant_id, c.sequence) for c in taken.chains] == [("a", 3), ("b", 7)]
    assert (
        taken.root
        == merkle_root([chain_leaf_data("a", 3, "a" * 64), chain_leaf_data("b", 7, "b" * 64)]).hex()
    )
    problems = checkpoint_problems(connection, taken)
    assert [(p.kind, p.tenant_id, p.journal_sequence, p.actual) for p in problems] == [
        ("checkpoint_hash_mismatch", "b", 7, "c" * 64)
    ]
    heads["b"] = _StoreHead("b", 5, "d" * 64)
    assert [p.kind for p in checkpoint_problems(connection, taken)] == ["checkpoint_chain_shorter"]
    del heads["b"]
    assert [p.kind for p in checkpoint_problems(connection, taken)] == ["checkpoint_chain_missing"]
    heads["b"] = _StoreHead("b", 9, "d" * 64)
    del stored[("b", 7)]
    assert [p.kind for p in checkpoint_problems(connection, taken)] == [
        "checkpoint_position_missing"
    ]
