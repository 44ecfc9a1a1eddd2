"""Frozen containers of the chain: members, genesis parameters, records, headers, blocks.

Every container has ``to_fields()`` (the msgpack array in canonical field
order) and a ``from_fields()`` that checks the schema and raises
ValidationError('bad-encoding') on anything unexpected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from consensus.crypto import MEMBER_ID_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES, compute_member_id
from consensus.encoding import (
    expect_array,
    expect_bytes,
    expect_int,
    expect_list,
    expect_str,
    pack,
    unpack,
)
from consensus.errors import ValidationError

HASH_BYTES = 32
RECORD_ID_BYTES = 16
BLOCK_VERSION = 1
MAX_BLOCK_BYTES = 512 * 1024
MAX_BLOCK_RECORDS = 400
MAX_RECORD_BYTES = 1024
MAX_MEMBERS = 64
MAX_NONCE = 2**64 - 1
PPM = 1_000_000
MODALITIES = frozenset({"ct", "xray"})
LABELS = frozenset({"affected", "normal"})
RISK_LEVELS = frozenset({"High", "Moderate", "Low"})
ZERO_HASH = bytes(HASH_BYTES)


@dataclass(frozen=True)
class Member:
    """A consortium member (hospital): id = fingerprint of its Ed25519 key."""

    public_key: bytes
    name: str

    @property
    def member_id(self) -> bytes:
        return compute_member_id(self.public_key)

    def to_fields(self) -> list[Any]:
        return [self.public_key, self.name]

    @classmethod
    def from_fields(cls, value: Any) -> Member:
        public_key, name = expect_list(value, 2, "member")
        return cls(expect_bytes(public_key, "member.public_key", PUBLIC_KEY_BYTES), expect_str(name, "member.name", 128))


@dataclass(frozen=True)
class ChainParams:
    """What the genesis block fixes: members, difficulty, deep-fork depth."""

    name: str
    timestamp_ms: int
    difficulty: int
    max_reorg_depth: int
    members: tuple[Member, ...]

    def to_fields(self) -> list[Any]:
        return [self.name, self.timestamp_ms, self.difficulty, self.max_reorg_depth, [m.to_fields() for m in self.members]]

    @classmethod
    def from_fields(cls, value: Any) -> ChainParams:
        name, timestamp_ms, difficulty, depth, members = expect_list(value, 5, "params")
        parsed = tuple(Member.from_fields(m) for m in expect_array(members, "params.members", MAX_MEMBERS))
        if not parsed:
            raise ValidationError("bad-genesis", "the genesis lists no members")
        if len({m.member_id for m in parsed}) != len(parsed):
            raise ValidationError("bad-genesis", "a member is listed twice")
        return cls(
            expect_str(name, "params.name", 128),
            expect_int(timestamp_ms, "params.timestamp_ms"),
            expect_int(difficulty, "params.difficulty", 0, 16),
            expect_int(depth, "params.max_reorg_depth", 1, 1_000_000),
            parsed,
        )

    @cached_property
    def members_by_id(self) -> dict[bytes, Member]:
        return {m.member_id: m for m in self.members}

    @cached_property
    def params_hash(self) -> bytes:
        return hashlib.sha256(pack(self.to_fields())).digest()


@dataclass(frozen=True)
class DiagnosisRecord:
    """What goes on chain for one diagnosis: digests and scores, never a patient identifier.

    Probabilities are integers in parts per million so the encoding has no floats.
    ``modalities``, ``image_digests``, ``model_ids`` and ``probabilities_ppm`` are
    parallel tuples, modalities sorted.
    """

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

    def unsigned_fields(self) -> list[Any]:
        return [
            self.record_id,
            self.member_id,
            self.created_ms,
            list(self.modalities),
            list(self.image_digests),
            list(self.model_ids),
            list(self.probabilities_ppm),
            self.fused_ppm,
            self.label,
            self.risk_level,
            self.details_digest,
        ]

    def to_fields(self) -> list[Any]:
        return [*self.unsigned_fields(), self.signature]

    @cached_property
    def signing_bytes(self) -> bytes:
        return pack(self.unsigned_fields())

    @cached_property
    def encoded(self) -> bytes:
        return pack(self.to_fields())

    @cached_property
    def record_hash(self) -> bytes:
        return hashlib.sha256(self.encoded).digest()

    @classmethod
    def from_fields(cls, value: Any) -> DiagnosisRecord:
        fields = expect_list(value, 12, "record")
        modalities = tuple(expect_str(m, "record.modality", 8, MODALITIES) for m in expect_array(fields[3], "record.modalities", 2))
        count = len(modalities)
        if count == 0 or list(modalities) != sorted(set(modalities)):
            raise ValidationError("bad-encoding", "record.modalities: one or two distinct modalities, sorted")
        digests = _parallel(fields[4], count, "record.image_digests", lambda v: expect_bytes(v, "image digest", HASH_BYTES))
        model_ids = _parallel(fields[5], count, "record.model_ids", lambda v: expect_bytes(v, "model id", HASH_BYTES))
        probabilities = _parallel(fields[6], count, "record.probabilities_ppm", lambda v: expect_int(v, "probability", 0, PPM))
        return cls(
            record_id=expect_bytes(fields[0], "record.record_id", RECORD_ID_BYTES),
            member_id=expect_bytes(fields[1], "record.member_id", MEMBER_ID_BYTES),
            created_ms=expect_int(fields[2], "record.created_ms"),
            modalities=modalities,
            image_digests=digests,
            model_ids=model_ids,
            probabilities_ppm=probabilities,
            fused_ppm=expect_int(fields[7], "record.fused_ppm", 0, PPM),
            label=expect_str(fields[8], "record.label", 16, LABELS),
            risk_level=expect_str(fields[9], "record.risk_level", 16, RISK_LEVELS),
            details_digest=expect_bytes(fields[10], "record.details_digest", HASH_BYTES),
            signature=expect_bytes(fields[11], "record.signature", SIGNATURE_BYTES),
        )


def _parallel(value: Any, count: int, what: str, parse: Any) -> tuple[Any, ...]:
    items = expect_array(value, what, 2)
    if len(items) != count:
        raise ValidationError("bad-encoding", f"{what}: expected {count} items, one per modality")
    return tuple(parse(item) for item in items)


@dataclass(frozen=True)
class BlockHeader:
    """The header: what the proof-of-work and the block hash cover."""

    height: int
    prev_hash: bytes
    merkle_root: bytes
    timestamp_ms: int
    difficulty: int
    miner_id: bytes
    nonce: int
    version: int = BLOCK_VERSION

    def to_fields(self) -> list[Any]:
        return [
            self.version,
            self.height,
            self.prev_hash,
            self.merkle_root,
            self.timestamp_ms,
            self.difficulty,
            self.miner_id,
            self.nonce,
        ]

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
    def from_fields(cls, value: Any) -> BlockHeader:
        fields = expect_list(value, 8, "header")
        version = expect_int(fields[0], "header.version")
        if version != BLOCK_VERSION:
            raise ValidationError("bad-encoding", f"header.version {version} is not supported")
        return cls(
            version=version,
            height=expect_int(fields[1], "header.height"),
            prev_hash=expect_bytes(fields[2], "header.prev_hash", HASH_BYTES),
            merkle_root=expect_bytes(fields[3], "header.merkle_root", HASH_BYTES),
            timestamp_ms=expect_int(fields[4], "header.timestamp_ms"),
            difficulty=expect_int(fields[5], "header.difficulty", 0, 64),
            miner_id=expect_bytes(fields[6], "header.miner_id", MEMBER_ID_BYTES),
            nonce=expect_int(fields[7], "header.nonce", 0, MAX_NONCE),
        )

    @classmethod
    def decode(cls, data: bytes) -> BlockHeader:
        return cls.from_fields(unpack(data, 256))


@dataclass(frozen=True)
class Block:
    """A header, the miner's signature over the block hash, and the records."""

    header: BlockHeader
    signature: bytes
    records: tuple[DiagnosisRecord, ...] = field(default=())

    @property
    def block_hash(self) -> bytes:
        return self.header.block_hash

    @property
    def height(self) -> int:
        return self.header.height

    def to_fields(self) -> list[Any]:
        return [self.header.to_fields(), self.signature, [r.to_fields() for r in self.records]]

    @cached_property
    def encoded(self) -> bytes:
        return pack(self.to_fields())

    @classmethod
    def decode(cls, data: bytes) -> Block:
        header, signature, records = expect_list(unpack(data, MAX_BLOCK_BYTES), 3, "block")
        parsed = tuple(DiagnosisRecord.from_fields(r) for r in expect_array(records, "block.records", MAX_BLOCK_RECORDS))
        block = cls(
            header=BlockHeader.from_fields(header),
            signature=expect_bytes(signature, "block.signature", max_length=SIGNATURE_BYTES),
            records=parsed,
        )
        # The decoded bytes are canonical, so keep them instead of re-encoding.
        object.__setattr__(block, "encoded", bytes(data))
        return block
