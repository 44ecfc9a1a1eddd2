"""Block validation: every rule, one reason code each.

``validate_block`` is the single entry point and runs every check; callers
mutate nothing until it returns. Checks go from cheap to expensive so that
junk costs little (proof-of-work before signatures).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus.crypto import BLOCK_DOMAIN, RECORD_DOMAIN, is_signature_valid
from consensus.errors import ValidationError
from consensus.governance import GovernanceContext, ModelRound, validate_block_entries
from consensus.merkle import compute_merkle_root
from consensus.pow import is_pow_valid
from consensus.signers import may_sign, signer_limit
from consensus.types import (
    MAX_BLOCK_BYTES,
    MAX_BLOCK_ENTRIES,
    MAX_BLOCK_RECORDS,
    ZERO_HASH,
    Block,
    BlockHeader,
    ChainParams,
    DiagnosisRecord,
)

MAX_FUTURE_MS = 2 * 60 * 60 * 1000
MEDIAN_TIME_SPAN = 11


@dataclass(frozen=True)
class BlockMeta:
    """What the block index keeps of a block (everything fork choice needs)."""

    block_hash: bytes
    prev_hash: bytes
    height: int
    chain_work: int
    timestamp_ms: int
    miner_id: bytes


def compute_median_time_past(timestamps: Sequence[int]) -> int:
    """Median of the last (up to) 11 block timestamps, parent included."""
    recent = list(timestamps)[-MEDIAN_TIME_SPAN:]
    return int(statistics.median_low(recent)) if recent else 0


def validate_header(header: BlockHeader, params: ChainParams) -> None:
    """Checks that need nothing but the header (used by headers-first sync)."""
    if header.height == 0:
        raise ValidationError("bad-height", "only the genesis block has height 0")
    if header.difficulty != params.difficulty:
        raise ValidationError("bad-difficulty", f"difficulty {header.difficulty}, chain requires {params.difficulty}")
    if not is_pow_valid(header.block_hash, params.difficulty):
        raise ValidationError("bad-pow", f"hash {header.block_hash.hex()} does not start with {params.difficulty} zeros")
    if header.miner_id not in params.members_by_id:
        raise ValidationError("unknown-member", f"miner {header.miner_id.hex()} is not a consortium member")


def validate_header_context(header: BlockHeader, parent: BlockMeta | None, median_time_past: int, now_ms: int) -> None:
    """Checks against the parent and the clock."""
    if parent is None or parent.block_hash != header.prev_hash:
        raise ValidationError("bad-prev", f"previous block {header.prev_hash.hex()} is not a valid known block")
    if header.height != parent.height + 1:
        raise ValidationError("bad-height", f"height {header.height} after parent height {parent.height}")
    if header.timestamp_ms <= median_time_past:
        raise ValidationError("time-too-old", f"timestamp {header.timestamp_ms} not after median time past {median_time_past}")
    if header.timestamp_ms > now_ms + MAX_FUTURE_MS:
        raise ValidationError("time-too-new", f"timestamp {header.timestamp_ms} more than 2 h ahead of {now_ms}")


def validate_signer_limit(header: BlockHeader, params: ChainParams, recent_miners: Sequence[bytes]) -> None:
    """The miner signed none of the ``signer_limit(N) - 1`` blocks before this one on its branch.

    ``recent_miners``: the parent's and its ancestors' miners, newest first,
    genesis excluded (``BlockTree.get_recent_miners``); only the first
    ``signer_limit(N) - 1`` are read.
    """
    member_count = len(params.members)
    if not may_sign(header.miner_id, recent_miners, member_count):
        window = signer_limit(member_count) - 1
        raise ValidationError("signer-limit", f"miner {header.miner_id.hex()} signed one of the {window} blocks before "
                                              f"height {header.height}")


def validate_block_body(block: Block, params: ChainParams) -> None:
    """Size, miner signature, Merkle root and every record's signature (entries: ``validate_block_entries``)."""
    if len(block.encoded) > MAX_BLOCK_BYTES or len(block.records) > MAX_BLOCK_RECORDS \
            or len(block.entries) > MAX_BLOCK_ENTRIES:
        raise ValidationError("block-too-large", f"{len(block.encoded)} bytes, {len(block.records)} records, "
                                                 f"{len(block.entries)} entries")
    if not block.records and not block.entries:
        raise ValidationError("empty-block", "blocks carry at least one record or governance entry")
    miner = params.members_by_id[block.header.miner_id]
    if not is_signature_valid(miner.public_key, block.signature, BLOCK_DOMAIN, block.block_hash):
        raise ValidationError("bad-signature", "the miner's block signature does not verify")
    if compute_merkle_root(block.leaf_hashes) != block.header.merkle_root:
        raise ValidationError("bad-merkle", "Merkle root does not match the records and entries")
    seen: set[bytes] = set()
    for record in block.records:
        validate_record(record, params)
        if record.record_id in seen:
            raise ValidationError("duplicate-record", f"record {record.record_id.hex()} appears twice in the block")
        seen.add(record.record_id)


def validate_record(record: DiagnosisRecord, params: ChainParams) -> None:
    """Creator is a member and signed the record (any member may carry it: the miner need not be the creator).

    The same check admits a relayed record into a node's pending pool.
    """
    creator = params.members_by_id.get(record.member_id)
    if creator is None:
        raise ValidationError("unknown-member", f"record creator {record.member_id.hex()} is not a member")
    if not is_signature_valid(creator.public_key, record.signature, RECORD_DOMAIN, record.signing_bytes):
        raise ValidationError("bad-signature", f"record {record.record_id.hex()} signature does not verify")


def validate_block(
    block: Block,
    params: ChainParams,
    parent: BlockMeta | None,
    median_time_past: int,
    now_ms: int,
    is_record_in_ancestry: Callable[[bytes], bool],
    recent_miners: Sequence[bytes],
    governance: GovernanceContext | None = None,
) -> None:
    """Run every rule; raise ValidationError with the first broken rule's code.

    ``recent_miners``: miners of the parent and its ancestors, newest first
    (at least ``signer_limit(N) - 1`` of them, or all back to genesis).
    ``governance``: the entries on the parent's branch (needed when the block holds entries;
    None reads as a branch without any).
    """
    validate_header(block.header, params)
    validate_header_context(block.header, parent, median_time_past, now_ms)
    validate_signer_limit(block.header, params, recent_miners)
    validate_block_body(block, params)
    for record in block.records:
        if is_record_in_ancestry(record.record_id):
            raise ValidationError("duplicate-record", f"record {record.record_id.hex()} is already in this chain")
    if block.entries:
        validate_block_entries(block.entries, params, governance or EMPTY_BRANCH)


class EmptyBranch:
    """A branch without governance entries."""

    def get_round(self, round_id: bytes) -> ModelRound | None:
        return None

    def has_entry(self, key: tuple[str, bytes, bytes]) -> bool:
        return False


EMPTY_BRANCH = EmptyBranch()


def validate_genesis(block: Block, params: ChainParams) -> None:
    header = block.header
    if header.height != 0 or header.prev_hash != ZERO_HASH or block.records or block.entries or block.signature:
        raise ValidationError("bad-genesis", "genesis must be height 0, no parent, no records, no signature")
    if header.merkle_root != params.params_hash or header.difficulty != params.difficulty:
        raise ValidationError("bad-genesis", "genesis header does not commit to the chain parameters")
    if header.timestamp_ms != params.timestamp_ms:
        raise ValidationError("bad-genesis", "genesis timestamp differs from the parameters")
    if not is_pow_valid(header.block_hash, params.difficulty):
        raise ValidationError("bad-pow", "genesis proof-of-work")
