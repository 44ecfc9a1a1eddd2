"""Fork choice: most cumulative work, with a guard against deep rewrites.

Between the current best tip and a candidate tip that fork at block F:

- if both branches have at most D blocks after F (D = ``max_reorg_depth`` from
  genesis), the branch with more cumulative work wins; equal work goes to the
  lower block hash (deterministic, so every node picks the same tip);
- if either branch has more than D blocks after F, the branch whose blocks
  after F were mined by more *distinct members* wins, then more work, then
  the lower hash. A single member out-mining everyone privately cannot
  rewrite history; a site that worked offline joins the consortium's branch
  and re-mines its own records there.

A candidate that only extends the best tip (F is the best tip) is never a
fork and always wins by work.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.validation import BlockMeta


@dataclass(frozen=True)
class ForkSide:
    """One branch of a fork, seen from the fork point."""

    tip: BlockMeta
    blocks_after_fork: int
    distinct_miners: int


@dataclass(frozen=True)
class ForkDecision:
    switch: bool
    deep: bool
    decisive: bool = False  # deep, and one side has more distinct miners: the loser can only fall further behind


def compute_tie_key(block_hash: bytes) -> bytes:
    """Higher key wins ties: the lower hash gets the higher key."""
    return bytes(255 - b for b in block_hash)


def is_deep_fork(current: ForkSide, candidate: ForkSide, max_reorg_depth: int) -> bool:
    if current.blocks_after_fork == 0:
        return False
    return max(current.blocks_after_fork, candidate.blocks_after_fork) > max_reorg_depth


def compute_fork_key(side: ForkSide, deep: bool) -> tuple[int, ...] | tuple[object, ...]:
    work_key = (side.tip.chain_work, compute_tie_key(side.tip.block_hash))
    return (side.distinct_miners, *work_key) if deep else work_key


def on_candidate_tip(current: ForkSide, candidate: ForkSide, max_reorg_depth: int) -> ForkDecision:
    """Decide whether the candidate tip replaces the current best tip."""
    deep = is_deep_fork(current, candidate, max_reorg_depth)
    better = compute_fork_key(candidate, deep) > compute_fork_key(current, deep)
    decisive = deep and candidate.distinct_miners != current.distinct_miners
    return ForkDecision(switch=better, deep=deep, decisive=decisive)
