"""Fork choice: most cumulative work, with a guard against deep rewrites.

Between the current best tip and a candidate tip that fork at block F:

- if both branches have at most D blocks after F (D = ``max_reorg_depth`` from
  genesis), the branch with more cumulative work wins; equal work goes to the
  lower block hash (deterministic, so every node picks the same tip);
- if either branch has more than D blocks after F, the candidate wins only
  if its blocks after F were mined by strictly more *distinct members*; on a
  tie the current branch stays, whatever the work. A single member
  out-mining everyone privately cannot rewrite history (and under the signer
  limit it cannot build a branch of two blocks alone); a site that worked
  offline joins the consortium's branch and re-mines its own records there.

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


def compute_work_key(side: ForkSide) -> tuple[int, bytes]:
    """Shallow forks: more cumulative work, then the lower tip hash."""
    return side.tip.chain_work, compute_tie_key(side.tip.block_hash)


def on_candidate_tip(current: ForkSide, candidate: ForkSide, max_reorg_depth: int) -> ForkDecision:
    """Decide whether the candidate tip replaces the current best tip.

    Deep: strictly more distinct signers after the fork, else the current
    branch stays (a tie keeps it, however much work the candidate has).
    """
    deep = is_deep_fork(current, candidate, max_reorg_depth)
    more_signers = candidate.distinct_miners > current.distinct_miners
    better = more_signers if deep else compute_work_key(candidate) > compute_work_key(current)
    decisive = deep and candidate.distinct_miners != current.distinct_miners
    return ForkDecision(switch=better, deep=deep, decisive=decisive)
