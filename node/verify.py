"""Re-validation of the stored best chain from genesis, with every consensus rule.

Used by ``GET /api/v1/chain/verify`` and by the crash tests: it trusts nothing
in the index, re-decodes every block from its stored bytes and replays
``validate_block`` against its predecessors.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus.builders import compute_block_meta
from consensus.errors import ValidationError
from consensus.governance import BranchEntries
from consensus.signers import signer_limit
from consensus.types import Block, ChainParams
from consensus.validation import (
    MEDIAN_TIME_SPAN,
    BlockMeta,
    compute_median_time_past,
    validate_block,
    validate_genesis,
)
from node.database import BlockReader
from node.store import ChainStore


@dataclass(frozen=True)
class ChainReport:
    valid: bool
    height: int
    blocks_checked: int
    records_checked: int
    first_bad_height: int | None = None
    first_bad_hash: str | None = None
    reason: str | None = None
    message: str | None = None


def verify_best_chain(store: ChainStore, now_ms: int, progress: Callable[[int, int], None] | None = None) -> ChainReport:
    """Replay every rule along the best chain; stop at the first bad block.

    Safe to run on any thread: it takes the best chain of the latest published
    view (a committed chain from genesis) and reads blocks through its own
    read-only connection, never the chain thread's.
    """
    reader = store.open_reader()
    try:
        return _verify(reader, store.view.best, store.params, now_ms, progress)
    finally:
        reader.close()


def _verify(reader: BlockReader, best: Sequence[bytes], params: ChainParams, now_ms: int,
            progress: Callable[[int, int], None] | None) -> ChainReport:
    records_seen: set[bytes] = set()
    entries = BranchEntries()
    timestamps: deque[int] = deque(maxlen=MEDIAN_TIME_SPAN)  # only the last 11 count
    recent_miners: deque[bytes] = deque(maxlen=signer_limit(len(params.members)) - 1)  # newest first
    parent: BlockMeta | None = None
    records_checked = 0
    for height, block_hash in enumerate(best):
        try:
            block = _load(reader, block_hash)
            if height == 0:
                validate_genesis(block, params)
            else:
                validate_block(block, params, parent, compute_median_time_past(timestamps),
                               now_ms, records_seen.__contains__, recent_miners, entries)
            if block.block_hash != block_hash:
                raise ValidationError("bad-encoding", "stored bytes do not hash to the indexed block hash")
        except ValidationError as error:
            return ChainReport(False, len(best) - 1, height, records_checked, height, block_hash.hex(), error.code, error.message)
        parent = compute_block_meta(block, parent.chain_work if parent else 0)
        timestamps.append(block.header.timestamp_ms)
        if height > 0:
            recent_miners.appendleft(block.header.miner_id)
        records_seen.update(r.record_id for r in block.records)
        entries.add(block.entries)
        records_checked += len(block.records)
        if progress is not None and height % 1000 == 0:
            progress(height, len(best) - 1)
    return ChainReport(True, len(best) - 1, len(best), records_checked)


def _load(reader: BlockReader, block_hash: bytes) -> Block:
    block = reader.get_block(block_hash)
    if block is None:
        raise ValidationError("bad-prev", "block bytes missing from the store")
    return block
