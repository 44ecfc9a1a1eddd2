"""What the chain store reports: one stored block's effect, a batch's outcome, the ignorable failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from consensus.blocktree import HeadChange
from consensus.errors import ValidationError
from consensus.types import Block, DiagnosisRecord
from consensus.validation import BlockMeta

FailureKind = Literal["invalid", "missing-parent", "duplicate"]


class MissingParent(Exception):
    """The block's parent is unknown: fetch it, do not drop the block."""

    def __init__(self, block: Block) -> None:
        super().__init__(f"parent {block.header.prev_hash.hex()} of block {block.block_hash.hex()} is unknown")
        self.block = block


class DuplicateBlock(Exception):
    """The block is already stored (ignorable)."""


@dataclass(frozen=True)
class Reorg:
    depth: int
    old_tip: bytes
    new_tip: bytes
    fork_height: int


@dataclass(frozen=True)
class AddResult:
    """One stored block and what it did to the best chain."""

    meta: BlockMeta
    on_best_chain: bool  # the block itself is on the best chain after its commit
    tip_changed: bool  # the best tip moved: to this block, or (its arrival made another branch win) elsewhere
    reorg: Reorg | None = None
    refused_deep: bool = False
    refused_final: bool = False  # stored, but forks below the last final block: never best

    @classmethod
    def from_change(cls, change: HeadChange) -> AddResult:
        reorg = None
        if change.is_reorg:
            reorg = Reorg(len(change.disconnect), change.old_tip.block_hash, change.new_tip.block_hash,
                          change.fork.height)
        return cls(change.block, change.block_on_best, change.tip_changed, reorg, change.refused_deep,
                   change.refused_final)


@dataclass(frozen=True)
class BatchResult:
    """A batch's outcome: the committed prefix, then at most one failure (which stopped the batch)."""

    accepted: list[AddResult] = field(default_factory=list)
    failed: Block | None = None
    failure: FailureKind | None = None
    error: ValidationError | None = None


@dataclass(frozen=True)
class RecordBatchResult:
    """Peers' records offered to the pending pool: what entered, what was ignored, the first invalid one.

    ``ignored`` counts records that were fine but not new (already pending, already on the best chain);
    ``refused`` those the pool had no room for, by reason in ``refused_by`` (``pending-full``: the whole
    pool; ``pending-share-full``: the creator's share of it). Neither is the sender's fault. ``error``
    stopped the batch: the record it names broke a consensus rule and did not enter.
    """

    accepted: list[DiagnosisRecord] = field(default_factory=list)
    ignored: int = 0
    refused: int = 0
    error: ValidationError | None = None
    refused_by: dict[str, int] = field(default_factory=dict)
