"""Checkpoints: every tenant chain's head at an instant, under one RFC 6962 Merkle root.

The hash chains make a change of one stored row visible, but someone who can write the database
can also recompute every hash after the row and move the head: the rewritten books then verify.
A checkpoint closes that gap the way a certificate-transparency tree head does. It lists each
tenant's chain head ``(tenant_id, sequence, hash)``, sorted by tenant, and the Merkle tree hash of
those leaves; it is stored (``ledger_checkpoints``, append-only) and published on the bus as a
``LEDGER_CHECKPOINT`` event. Whoever keeps a copy outside the database (the event on the bus, a
file) can later check the books against it: :func:`verify_against_checkpoint` verifies the
journal, then requires that each checkpointed position still carries the checkpointed hash.
Because each hash chains everything before it, a history rewritten before a checkpoint cannot
reproduce the hash at the checkpointed head, however consistent the rewrite.

The tree is RFC 6962 section 2.1 over SHA-256: a leaf is ``SHA-256(0x00 || data)``, an inner
node ``SHA-256(0x01 || left || right)``, split at the largest power of two below the size, and
the empty tree hashes to ``SHA-256("")``. A leaf's data is the canonical JSON (no spaces, UTF-8)
of ``[tenant_id, sequence, hash]``: any verifier can recompute the root with a few lines.

How chains are stored is behind :data:`chain_heads` and :data:`chain_hash_at`; everything else
here only sees heads with ``tenant_id``, ``sequence`` and ``hash`` (:class:`ChainHeadLike`).

The event: ``type`` ``LEDGER_CHECKPOINT``, ``tenant_id`` :data:`CHECKPOINT_TENANT_ID` (``_ledger``,
which no tenant can be: tenant IDs start with a letter or digit), so on NATS it is the subject
``billing._ledger.LEDGER_CHECKPOINT``; ``event_id`` derived from the checkpoint ID; ``payload``
the checkpoint document itself.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from ledger_db import journal
from ledger_db.ids import LEDGER_NAMESPACE, derive_event_id
from ledger_db.journal import ChainHead
from ledger_db.models import Event, Problem
from ledger_db.schema import (
    instant_text,
    ledger_checkpoints,
    outbox_events,
)

__all__ = [
    "CHECKPOINT_EVENT_TYPE",
    "CHECKPOINT_TENANT_ID",
    "CHECKPOINT_VERSION",
    "EMPTY_TREE_ROOT",
    "ChainHead",
    "ChainHeadLike",
    "Checkpoint",
    "CheckpointChain",
    "chain_hash_at",
    "chain_heads",
    "chain_leaf_data",
    "checkpoint_event",
    "checkpoint_problems",
    "compute_checkpoint",
    "latest_checkpoint",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "parse_checkpoint",
    "store_checkpoint",
    "take_checkpoint",
    "verify_against_checkpoint",
]

CHECKPOINT_VERSION = 1
CHECKPOINT_EVENT_TYPE = "LEDGER_CHECKPOINT"
# The envelope's tenant for events about the whole ledger: not a valid tenant ID (those start
# with a letter or a digit), so no tenant's stream or subject ever carries it.
CHECKPOINT_TENANT_ID = "_ledger"
_EVENT_VERSION = "1.0"
_HASH_TEXT = re.compile(r"[0-9a-f]{64}")

# --------------------------------------------------------------------------------------------
# RFC 6962 Merkle tree hash


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one leaf (RFC 6962 section 2.1)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an inner node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_TREE_ROOT = hashlib.sha256(b"").hexdigest()


def _subtree_hash(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    size = end - start
    if size == 1:
        return leaves[start]
    # The largest power of two smaller than size: the left subtree is always full.
    split = 1 << ((size - 1).bit_length() - 1)
    return node_hash(
        _subtree_hash(leaves, start, start + split), _subtree_hash(leaves, start + split, end)
    )


def merkle_root(leaf_data: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (RFC 6962 ``MTH``) of the leaves' data, in order."""
    if not leaf_data:
        return hashlib.sha256(b"").digest()
    hashes = [leaf_hash(data) for data in leaf_data]
    return _subtree_hash(hashes, 0, len(hashes))


# --------------------------------------------------------------------------------------------
# Chain heads: the only part that knows how chains are stored


class ChainHeadLike(Protocol):
    """What the chain store's heads must offer (:class:`ChainHead`, or the store's own type)."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def sequence(self) -> int: ...
    @property
    def hash(self) -> str: ...


# The storage interface, the only two calls into the chain store (``ledger_db.journal``): every
# tenant chain's head (its last ``chain_sequence`` and hash), and a chain's hash at a chain
# sequence; nothing else here depends on how chains are stored.
chain_heads: Callable[[sa.Connection], Sequence[ChainHeadLike]] = journal.chain_heads
chain_hash_at: Callable[[sa.Connection, str, int], str | None] = journal.chain_hash_at


# --------------------------------------------------------------------------------------------
# The checkpoint document


class CheckpointChain(BaseModel):
    """One leaf of a checkpoint: a tenant chain's head."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    tenant_id: str = Field(min_length=1, max_length=128)
    sequence: int = Field(ge=1)
    hash: str


class Checkpoint(BaseModel):
    """Every tenant chain's head at ``created_at`` and the RFC 6962 root over them.

    ``chains`` is sorted by tenant (code-point order), one entry per tenant; ``tree_size`` is
    their number and ``root`` the hex Merkle tree hash of their leaves (:func:`chain_leaf_data`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(strict=True)
    checkpoint_id: str = Field(min_length=1, max_length=64)
    created_at: AwareDatetime
    tree_size: int = Field(ge=0, strict=True)
    root: str
    chains: list[CheckpointChain]

    def document(self) -> dict[str, Any]:
        """The JSON form, as published and written to files (instants fixed-width UTC)."""
        return {
            "version": self.version,
            "checkpoint_id": self.checkpoint_id,
            "created_at": instant_text(self.created_at),
            "tree_size": self.tree_size,
            "root": self.root,
            "chains": [chain.model_dump() for chain in self.chains],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.document(), indent=indent, ensure_ascii=False)


def chain_leaf_data(tenant_id: str, sequence: int, hash_text: str) -> bytes:
    """The leaf data of one chain head: canonical JSON ``["tenant",12,"ab…"]`` in UTF-8."""
    return json.dumps(
        [tenant_id, sequence, hash_text], separators=(",", ":"), ensure_ascii=False
    ).encode()


def _root_of(chains: Sequence[CheckpointChain | ChainHeadLike]) -> str:
    return merkle_root([chain_leaf_data(c.tenant_id, c.sequence, c.hash) for c in chains]).hex()


def _checkpoint_id(created_at: datetime, root: str) -> str:
    return str(uuid.uuid5(LEDGER_NAMESPACE, f"checkpoint\x1f{instant_text(created_at)}\x1f{root}"))


def compute_checkpoint(connection: sa.Connection, now: datetime) -> Checkpoint:
    """The checkpoint of the books as ``connection`` sees them, dated ``now``."""
    # Sorted here, whatever order the chain store returns: code-point order on every engine.
    heads = sorted(chain_heads(connection), key=lambda head: head.tenant_id)
    chains = [
        CheckpointChain(tenant_id=h.tenant_id, sequence=h.sequence, hash=h.hash) for h in heads
    ]
    root = _root_of(chains)
    created_at = now.astimezone(UTC)
    return Checkpoint(
        version=CHECKPOINT_VERSION,
        checkpoint_id=_checkpoint_id(created_at, root),
        created_at=created_at,
        tree_size=len(chains),
        root=root,
        chains=chains,
    )


def checkpoint_event(checkpoint: Checkpoint) -> Event:
    """The ``LEDGER_CHECKPOINT`` event that publishes ``checkpoint``."""
    return Event(
        event_id=derive_event_id(checkpoint.checkpoint_id, CHECKPOINT_EVENT_TYPE),
        type=CHECKPOINT_EVENT_TYPE,
        version=_EVENT_VERSION,
        tenant_id=CHECKPOINT_TENANT_ID,
        occurred_at=checkpoint.created_at,
        payload=checkpoint.document(),
    )


def store_checkpoint(connection: sa.Connection, checkpoint: Checkpoint) -> Event:
    """Stores ``checkpoint`` and enqueues its event in the outbox, in the caller's transaction
    (the relay publishes it like every billing event). Returns the event."""
    document = checkpoint.document()
    connection.execute(
        ledger_checkpoints.insert().values(
            checkpoint_id=checkpoint.checkpoint_id,
            version=checkpoint.version,
            created_at=checkpoint.created_at,
            tree_size=checkpoint.tree_size,
            root=checkpoint.root,
            chains=document["chains"],
        )
    )
    event = checkpoint_event(checkpoint)
    connection.execute(
        outbox_events.insert().values(
            event_id=event.event_id,
            type=event.type,
            version=event.version,
            tenant_id=event.tenant_id,
            occurred_at=event.occurred_at,
            hold_id=None,
            order_id=None,
            account_id=None,
            transaction_id=None,
            payload=event.payload,
            sent_at=None,
        )
    )
    return event


def latest_checkpoint(connection: sa.Connection) -> Checkpoint | None:
    """The newest stored checkpoint, or None."""
    row = connection.execute(
        sa.select(ledger_checkpoints).order_by(ledger_checkpoints.c.sequence.desc()).limit(1)
    ).first()
    if row is None:
        return None
    return Checkpoint(
        version=int(row.version),
        checkpoint_id=row.checkpoint_id,
        created_at=row.created_at,
        tree_size=int(row.tree_size),
        root=row.root,
        chains=[CheckpointChain.model_validate(chain) for chain in row.chains],
    )


def take_checkpoint(
    engine: sa.Engine, now: datetime, *, if_changed: bool = False
) -> tuple[Checkpoint, bool]:
    """Computes, stores and enqueues a checkpoint in one write transaction.

    With ``if_changed`` a checkpoint whose chains equal the newest stored one's is not stored
    again (a periodic run over idle books adds nothing): that one is returned instead. Returns
    the checkpoint and whether this call stored it.
    """
    with (
        engine.connect().execution_options(sqlite_begin="IMMEDIATE") as connection,
        connection.begin(),
    ):
        if connection.dialect.name == "postgresql":
            # One snapshot for every head, however many statements a chain store needs.
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        checkpoint = compute_checkpoint(connection, now)
        if if_changed:
            previous = latest_checkpoint(connection)
            if previous is not None and previous.chains == checkpoint.chains:
                return previous, False
        store_checkpoint(connection, checkpoint)
        return checkpoint, True


def parse_checkpoint(text: str | bytes) -> Checkpoint:
    """A checkpoint document read from outside (a file, an event's payload).

    Raises ``ValueError`` (with a message naming what is wrong) for text that is not a
    checkpoint at all; a well-formed document whose content disagrees with itself (a root that
    does not recompute, unsorted chains) parses, and :func:`checkpoint_problems` reports it.
    """
    try:
        body = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"not JSON: {error}") from error
    if isinstance(body, dict) and body.get("type") == CHECKPOINT_EVENT_TYPE:
        # A LEDGER_CHECKPOINT event as published: its payload is the checkpoint.
        body = body.get("payload")
    if not isinstance(body, dict):
        raise ValueError("a checkpoint is a JSON object")
    try:
        return Checkpoint.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "checkpoint"
        raise ValueError(f"{where}: {first['msg']}") from error


# --------------------------------------------------------------------------------------------
# Verification


def _self_problems(checkpoint: Checkpoint) -> list[Problem]:
    """What is wrong with the document on its own: version, shape, order, root."""
    problems: list[Problem] = []
    if checkpoint.version != CHECKPOINT_VERSION:
        problems.append(
            Problem(
                kind="checkpoint_invalid",
                message=f"checkpoint version {checkpoint.version} is not a known format",
                field="version",
                expected=str(CHECKPOINT_VERSION),
                actual=str(checkpoint.version),
            )
        )
    if checkpoint.tree_size != len(checkpoint.chains):
        problems.append(
            Problem(
                kind="checkpoint_invalid",
                message="tree_size is not the number of chains",
                field="tree_size",
                expected=str(len(checkpoint.chains)),
                actual=str(checkpoint.tree_size),
            )
        )
    tenants = [chain.tenant_id for chain in checkpoint.chains]
    if tenants != sorted(set(tenants)):
        problems.append(
            Problem(
                kind="checkpoint_invalid",
                message="chains are not sorted by tenant, one each",
                field="chains",
            )
        )
    for chain in checkpoint.chains:
        if not _HASH_TEXT.fullmatch(chain.hash):
            problems.append(
                Problem(
                    kind="checkpoint_invalid",
                    message="a chain's hash is not 64 lower-case hex digits",
                    tenant_id=chain.tenant_id,
                    journal_sequence=chain.sequence,
                    field="hash",
                    actual=chain.hash,
                )
            )
    recomputed = _root_of(checkpoint.chains)
    if recomputed != checkpoint.root:
        problems.append(
            Problem(
                kind="checkpoint_root_mismatch",
                message="the checkpoint's root is not the Merkle root of its chains: "
                "the document was altered",
                field="root",
                expected=recomputed,
                actual=checkpoint.root,
            )
        )
    return problems


def checkpoint_problems(connection: sa.Connection, checkpoint: Checkpoint) -> list[Problem]:
    """The checkpoint's own consistency, then each checkpointed chain against the books: the
    position must still exist and carry the checkpointed hash. A problem names the tenant chain
    (``tenant_id``) and the checkpointed ``journal_sequence``. Chains of tenants the checkpoint
    does not list (newer ones) are not its business."""
    problems = _self_problems(checkpoint)
    heads = {head.tenant_id: head for head in chain_heads(connection)}
    for chain in checkpoint.chains:
        where = {"tenant_id": chain.tenant_id, "journal_sequence": chain.sequence}
        head = heads.get(chain.tenant_id)
        if head is None:
            problems.append(
                Problem(
                    kind="checkpoint_chain_missing",
                    message=f"tenant {chain.tenant_id}'s chain is gone: the checkpoint has it "
                    f"at sequence {chain.sequence}",
                    expected=chain.hash,
                    **where,
                )
            )
            continue
        if head.sequence < chain.sequence:
            problems.append(
                Problem(
                    kind="checkpoint_chain_shorter",
                    message=f"tenant {chain.tenant_id}'s chain ends at sequence "
                    f"{head.sequence}, before the checkpointed {chain.sequence}",
                    expected=str(chain.sequence),
                    actual=str(head.sequence),
                    **where,
                )
            )
            continue
        stored = chain_hash_at(connection, chain.tenant_id, chain.sequence)
        if stored is None:
            problems.append(
                Problem(
                    kind="checkpoint_position_missing",
                    message=f"tenant {chain.tenant_id}'s chain has no transaction at the "
                    f"checkpointed sequence {chain.sequence}",
                    expected=chain.hash,
                    **where,
                )
            )
        elif stored != chain.hash:
            problems.append(
                Problem(
                    kind="checkpoint_hash_mismatch",
                    message=f"tenant {chain.tenant_id}'s chain differs from the checkpoint at "
                    f"sequence {chain.sequence}: rewritten since the checkpoint (or the "
                    "checkpoint is not this ledger's)",
                    expected=chain.hash,
                    actual=stored,
                    **where,
                )
            )
    return problems


def verify_against_checkpoint(connection: sa.Connection, checkpoint: Checkpoint) -> list[Problem]:
    """Every problem of the books (``verify_journal``'s checks), then every disagreement with
    ``checkpoint`` (:func:`checkpoint_problems`); empty when both hold."""
    return journal.verify(connection) + checkpoint_problems(connection, checkpoint)
