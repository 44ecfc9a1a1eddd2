"""Deterministic constructors: genesis, block templates, signed records and blocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consensus.crypto import BLOCK_DOMAIN, RECORD_DOMAIN, sign
from consensus.merkle import compute_merkle_root
from consensus.pow import mine_header
from consensus.entries import GovernanceEntry
from consensus.types import MAX_NONCE, ZERO_HASH, Block, BlockHeader, ChainParams, DiagnosisRecord
from consensus.validation import BlockMeta

GENESIS_MINER = bytes(16)


def make_genesis_block(params: ChainParams, nonce: int) -> Block:
    """The genesis block: height 0, no parent, committing to the chain parameters."""
    header = BlockHeader(
        height=0,
        prev_hash=ZERO_HASH,
        merkle_root=params.params_hash,
        timestamp_ms=params.timestamp_ms,
        difficulty=params.difficulty,
        miner_id=GENESIS_MINER,
        nonce=nonce,
    )
    return Block(header=header, signature=b"", records=())


def make_genesis(params: ChainParams) -> Block:
    """Find the genesis nonce and return the genesis block."""
    solved = mine_header(make_genesis_block(params, 0).header, 0, MAX_NONCE)
    if solved is None:
        raise RuntimeError("no genesis nonce found")
    return Block(header=solved, signature=b"", records=())


def compute_block_meta(block: Block, parent_work: int) -> BlockMeta:
    header = block.header
    return BlockMeta(
        block_hash=header.block_hash,
        prev_hash=header.prev_hash,
        height=header.height,
        chain_work=parent_work + header.work,
        timestamp_ms=header.timestamp_ms,
        miner_id=header.miner_id,
    )


def make_header_template(
    parent: BlockMeta, records: Sequence[DiagnosisRecord], timestamp_ms: int, difficulty: int, miner_id: bytes,
    entries: Sequence[GovernanceEntry] = (),
) -> BlockHeader:
    return BlockHeader(
        height=parent.height + 1,
        prev_hash=parent.block_hash,
        merkle_root=compute_merkle_root([r.record_hash for r in records] + [e.entry_hash for e in entries]),
        timestamp_ms=timestamp_ms,
        difficulty=difficulty,
        miner_id=miner_id,
        nonce=0,
    )


def sign_block(header: BlockHeader, records: Sequence[DiagnosisRecord], key: Ed25519PrivateKey,
               entries: Sequence[GovernanceEntry] = ()) -> Block:
    return Block(header=header, signature=sign(key, BLOCK_DOMAIN, header.block_hash), records=tuple(records),
                 entries=tuple(entries))


def sign_record(record: DiagnosisRecord, key: Ed25519PrivateKey) -> DiagnosisRecord:
    return replace(record, signature=sign(key, RECORD_DOMAIN, record.signing_bytes))
