"""Frozen containers of the chain: members, genesis parameters, records, headers, blocks.

Every container declares its wire fields once, in a ``FIELDS`` table (see
consensus/encoding.py); ``to_fields()`` (the msgpack array in canonical field
order) and ``from_fields()`` (which checks the schema and raises
ValidationError('bad-encoding') on anything unexpected) come from that table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from consensus.crypto import MEMBER_ID_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, compute_member_id
from consensus.encoding import (Bin, Canonical, Field, Int, ListOf, Nested, SignedCanonical, Str, expect_array, pack,
                                unpack)
from consensus.entries import GovernanceEntry
from consensus.errors import ValidationError

HASH_BYTES = 32
RECORD_ID_BYTES = 16
BLOCK_VERSION = 1
MAX_BLOCK_BYTES = 512 * 1024
MAX_BLOCK_RECORDS = 400
MAX_BLOCK_ENTRIES = 400
MAX_RECORD_BYTES = 1024
MAX_MEMBERS = 64
MAX_NONCE = 2**64 - 1
PPM = 1_000_000
MODALITIES = frozenset({"ct", "xray"})
LABELS = frozenset({"affected", "normal"})
RISK_LEVELS = frozenset({"High", "Moderate", "Low"})
ZERO_HASH = bytes(HASH_BYTES)


@dataclass(frozen=True)
class Member(Canonical):
    """A consortium member (hospital): id = fingerprint of its Ed25519 key."""

    WIRE_NAME: ClassVar[str] = "member"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("public_key", Bin(PUBLIC_KEY_BYTES)),
        Field("name", Str(128)),
    )
    public_key: bytes
    name: str

    @property
    def member_id(self) -> bytes:
        return compute_member_id(self.public_key)



@dataclass(frozen=True)
class ChainParams(Canonical):
    """What the genesis block fixes: members, difficulty, deep-fork depth."""

    WIRE_NAME: ClassVar[str] = "params"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("name", Str(128)),
        Field("timestamp_ms", Int()),
        Field("difficulty", Int(0, 16)),
        Field("max_reorg_depth", Int(1, 1_000_000)),
        Field("members", ListOf(Nested(Member), MAX_MEMBERS)),
    )
    name: str
    timestamp_ms: int
    difficulty: int
    max_reorg_depth: int
    members: tuple[Member, ...]

    @classmethod
    def check_fields(cls, values: dict[str, Any]) -> None:
        members: tuple[Member, ...] = values["members"]
        if not members:
            raise ValidationError("bad-genesis", "the genesis lists no members")
        if len({m.member_id for m in members}) != len(members):
            raise ValidationError("bad-genesis", "a member is listed twice")

    @cached_property
    def members_by_id(self) -> dict[bytes, Member]:
        return {m.member_id: m for m in self.members}

    @cached_property
    def params_hash(self) -> bytes:
        return hashlib.sha256(pack(self.to_fields())).digest()


@dataclass(frozen=True)
class DiagnosisRecord(SignedCanonical):
    """What goes on chain for one diagnosis: digests and scores, never a patient identifier.

    Probabilities are integers in parts per million so the encoding has no floats.
    ``modalities``, ``image_digests``, ``model_ids`` and ``probabilities_ppm`` are
    parallel tuples, modalities sorted. The signature is the last field and
    covers the encoding of all the others.
    """

    WIRE_NAME: ClassVar[str] = "record"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("record_id", Bin(RECORD_ID_BYTES)),
        Field("member_id", Bin(MEMBER_ID_BYTES)),
        Field("created_ms", Int()),
        Field("modalities", ListOf(Str(8, MODALITIES), 2)),
        Field("image_digests", ListOf(Bin(HASH_BYTES), 2)),
        Field("model_ids", ListOf(Bin(HASH_BYTES), 2)),
        Field("probabilities_ppm", ListOf(Int(0, PPM), 2)),
        Field("fused_ppm", Int(0, PPM)),
        Field("label", Str(16, LABELS)),
        Field("risk_level", Str(16, RISK_LEVELS)),
        Field("details_digest", Bin(HASH_BYTES)),
        Field("signature", Bin(SIGNATURE_BYTES)),
    )
    PARALLEL: ClassVar[tuple[str, ...]] = ("image_digests", "model_ids", "probabilities_ppm")

    record_id: bytes
    member_id: bytes
    created_ms: int
    modalities: tuple[str, ...]
    image_digests: tuple[bytes, ...]
    model_ids: tuple[bytes, ...]
    probabilities_ppm: tuple[int, ...]
    fused_ppm: int
    label: str
    risk_level: str
    details_digest: bytes
    signature: bytes = b""

    @cached_property
    def signing_bytes(self) -> bytes:
        return self.signed_bytes()

    @cached_property
    def encoded(self) -> bytes:
        return pack(self.to_fields())

    @cached_property
    def record_hash(self) -> bytes:
        return hashlib.sha256(self.encoded).digest()

    @classmethod
    def check_fields(cls, values: dict[str, Any]) -> None:
        modalities: tuple[str, ...] = values["modalities"]
        count = len(modalities)
        if count == 0 or list(modalities) != sorted(set(modalities)):
            raise ValidationError("bad-encoding", "record.modalities: one or two distinct modalities, sorted")
        for name in cls.PARALLEL:
            if len(values[name]) != count:
                raise ValidationError("bad-encoding", f"record.{name}: expected {count} items, one per modality")


@dataclass(frozen=True)
class BlockHeader(Canonical):
    """The header: what the proof-of-work and the block hash cover.

    The nonce is the last field on the wire (the miner hashes the prefix once);
    ``version`` is the first on the wire but last here, for its default.
    """

    WIRE_NAME: ClassVar[str] = "header"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("version", Int(BLOCK_VERSION, BLOCK_VERSION)),
        Field("height", Int()),
        Field("prev_hash", Bin(HASH_BYTES)),
        Field("merkle_root", Bin(HASH_BYTES)),
        Field("timestamp_ms", Int()),
        Field("difficulty", Int(0, 64)),
        Field("miner_id", Bin(MEMBER_ID_BYTES)),
        Field("nonce", Int(0, MAX_NONCE)),
    )

    height: int
    prev_hash: bytes
    merkle_root: bytes
    timestamp_ms: int
    difficulty: int
    miner_id: bytes
    nonce: int
    version: int = BLOCK_VERSION


    @cached_property
    def encoded(self) -> bytes:
        return pack(self.to_fields())

    @cached_property
    def block_hash(self) -> bytes:
        return hashlib.sha256(self.encoded).digest()

    @property
    def work(self) -> int:
        return int(16**self.difficulty)

    @classmethod
    def decode(cls, data: bytes) -> BlockHeader:
        return cls.from_fields(unpack(data, 256))


@dataclass(frozen=True)
class Block(Canonical):
    """A header, the miner's signature over the block hash, the records and the governance entries.

    The entries are a fourth array on the wire, present only when the block holds
    entries: a block without them encodes exactly as before governance entries
    existed (so every such block, genesis included, keeps its bytes and hash), and a
    fourth array that is empty is not canonical (``bad-encoding``).
    """

    WIRE_NAME: ClassVar[str] = "block"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("header", Nested(BlockHeader)),
        Field("signature", Bin(max_length=SIGNATURE_BYTES)),
        Field("records", ListOf(Nested(DiagnosisRecord), MAX_BLOCK_RECORDS)),
    )
    ENTRIES: ClassVar[ListOf] = ListOf(Nested(GovernanceEntry), MAX_BLOCK_ENTRIES)

    header: BlockHeader
    signature: bytes
    records: tuple[DiagnosisRecord, ...] = field(default=())
    entries: tuple[GovernanceEntry, ...] = field(default=())

    @property
    def block_hash(self) -> bytes:
        return self.header.block_hash

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def leaf_hashes(self) -> list[bytes]:
        """What the Merkle root covers: the records' hashes, then the entries'."""
        return [r.record_hash for r in self.records] + [e.entry_hash for e in self.entries]

    def to_fields(self) -> list[Any]:
        fields = super().to_fields()
        if self.entries:
            fields.append(self.ENTRIES.encode(self.entries))
        return fields

    @classmethod
    def from_fields(cls, value: Any) -> Block:
        if not isinstance(value, list) or len(value) != 4:
            return super().from_fields(value)
        entries = cls.ENTRIES.decode(expect_array(value[3], "block.entries", MAX_BLOCK_ENTRIES), "block.entries")
        if not entries:
            raise ValidationError("bad-encoding", "block.entries: an empty entries array is not canonical (omit it)")
        block = super().from_fields(value[:3])
        object.__setattr__(block, "entries", entries)
        return block

    @cached_property
    def encoded(self) -> bytes:
        return pack(self.to_fields())

    @classmethod
    def decode(cls, data: bytes) -> Block:
        block = cls.from_fields(unpack(data, MAX_BLOCK_BYTES))
        # The decoded bytes are canonical, so keep them instead of re-encoding.
        object.__setattr__(block, "encoded", bytes(data))
        return block
