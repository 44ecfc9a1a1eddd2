"""The block tree and its fork choice: pure, in memory, no storage.

``BlockTree`` holds the index of valid blocks (:class:`BlockMeta`), the
candidate tips and the best chain. One event handler changes it:

- :meth:`BlockTree.on_block` adds a valid block whose parent is known and
  returns the :class:`HeadChange` fork choice wants (possibly none), without
  moving the best chain;
- :meth:`BlockTree.apply_head_change` moves the best chain by that plan
  (disconnect the old branch above the fork point, connect the new one).

The caller (``node.store.ChainStore``) writes the same plan to disk in one
transaction between the two calls. :meth:`BlockTree.get_view` returns a frozen
:class:`ChainView` of the best chain for readers on other threads.

Fork choice (``consensus.forkchoice`` compares two tips) runs as a tournament
over every candidate tip after every block, so the head does not depend on
the order blocks arrived in. Before any tip comparison, finality prunes the
candidates: the **last final block** (the highest best-chain block whose
descendants-or-itself on the best chain were mined by ``signer_limit(N)``
distinct members) is never disconnected, so a tip that does not descend from
it is no candidate. The signer limit is a validity rule
(``consensus.validation.validate_signer_limit``); it reads the recent miners
of a parent through :meth:`BlockTree.get_recent_miners`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from consensus.forkchoice import ForkDecision, ForkSide, on_candidate_tip
from consensus.locks import Evidence, compute_signed_order_key, is_equivocation, make_evidence
from consensus.signers import signer_limit
from consensus.validation import MEDIAN_TIME_SPAN, BlockMeta, compute_median_time_past

LOCATOR_DENSE = 10


class TreeInconsistent(ValueError):
    """Metas and a best chain that do not form one tree rooted at genesis."""


@dataclass(frozen=True)
class HeadChange:
    """What one block's arrival does to the best chain: a plan, applied by ``apply_head_change``.

    ``disconnect`` are the old best-chain hashes above ``fork`` (ascending);
    ``connect`` the new branch's blocks above ``fork`` (ascending). Both are
    empty when the head stays where it was.
    """

    block: BlockMeta
    old_tip: BlockMeta
    new_tip: BlockMeta
    fork: BlockMeta
    disconnect: tuple[bytes, ...] = ()
    connect: tuple[BlockMeta, ...] = ()
    refused_deep: bool = False
    refused_final: bool = False  # the arriving block forks below the last final block: it can never be best

    @property
    def tip_changed(self) -> bool:
        return self.new_tip.block_hash != self.old_tip.block_hash

    @property
    def is_reorg(self) -> bool:
        return bool(self.disconnect)

    @property
    def block_on_best(self) -> bool:
        """The arriving block is on the best chain once the change is applied."""
        return any(meta.block_hash == self.block.block_hash for meta in self.connect)


@dataclass(frozen=True)
class ChainView:
    """A frozen picture of the best chain after one commit (safe to read from any thread)."""

    best: tuple[bytes, ...]
    metas: Mapping[bytes, BlockMeta]
    pending_count: int = 0
    final_height: int = 0  # height of the last final block (genesis is final)
    member_count: int = 1
    latest_signed: Mapping[bytes, BlockMeta] = field(default_factory=lambda: MappingProxyType({}))  # locks
    evidence: tuple[Evidence, ...] = ()  # equivocations proven by the indexed blocks, in the order found

    @property
    def tip(self) -> BlockMeta:
        return self.metas[self.best[-1]]

    @property
    def tip_hash(self) -> bytes:
        return self.best[-1]

    @property
    def height(self) -> int:
        return len(self.best) - 1

    def has_block(self, block_hash: bytes) -> bool:
        return block_hash in self.metas

    def get_meta(self, block_hash: bytes) -> BlockMeta | None:
        return self.metas.get(block_hash)

    def get_height_of(self, block_hash: bytes) -> int | None:
        meta = self.metas.get(block_hash)
        return None if meta is None else meta.height

    def get_best_hash(self, height: int) -> bytes | None:
        return self.best[height] if 0 <= height < len(self.best) else None

    def is_on_best_chain(self, block_hash: bytes) -> bool:
        return is_on_best_chain(self.best, self.metas, block_hash)

    def get_confirmations(self, meta: BlockMeta) -> int:
        return self.height - meta.height + 1 if self.is_on_best_chain(meta.block_hash) else 0

    @property
    def needed_confirmers(self) -> int:
        """Distinct members that make a block final: ``signer_limit(N)``."""
        return signer_limit(self.member_count)

    @property
    def final(self) -> BlockMeta:
        """The last final block."""
        return self.metas[self.best[self.final_height]]

    def is_final(self, meta: BlockMeta) -> bool:
        return meta.height <= self.final_height and self.is_on_best_chain(meta.block_hash)

    def get_distinct_confirmers(self, meta: BlockMeta) -> int:
        """Distinct members that mined ``meta`` or its best-chain descendants (0 off the best chain).

        Counted up to ``needed_confirmers`` (final): under the signer limit that is at most
        ``signer_limit(N)`` blocks to read, wherever the block is.
        """
        if not self.is_on_best_chain(meta.block_hash):
            return 0
        needed = self.needed_confirmers
        miners: set[bytes] = set()
        for block_hash in self.best[max(meta.height, 1):]:
            miners.add(self.metas[block_hash].miner_id)
            if len(miners) >= needed:
                break
        return len(miners)

    def get_recent_miners(self, meta: BlockMeta, count: int) -> list[bytes]:
        return get_recent_miners(self.metas, meta, count)

    def get_locator(self) -> list[bytes]:
        return compute_locator(self.best)

    def find_fork_height(self, locator: Sequence[bytes]) -> int:
        return find_fork_height(self.best, self.metas, locator)

    def get_median_time_past(self, meta: BlockMeta) -> int:
        return get_median_time_past(self.metas, meta)


# ------------------------------------------------------------- free functions
def is_on_best_chain(best: Sequence[bytes], metas: Mapping[bytes, BlockMeta], block_hash: bytes) -> bool:
    meta = metas.get(block_hash)
    return meta is not None and meta.height < len(best) and best[meta.height] == block_hash


def compute_locator(best: Sequence[bytes]) -> list[bytes]:
    """Best-chain hashes: the last 10, then exponentially sparser, then genesis."""
    heights, step, height = [], 1, len(best) - 1
    while height > 0:
        heights.append(height)
        if len(heights) >= LOCATOR_DENSE:
            step *= 2
        height -= step
    heights.append(0)
    return [best[h] for h in heights]


def find_fork_height(best: Sequence[bytes], metas: Mapping[bytes, BlockMeta], locator: Sequence[bytes]) -> int:
    """Height of the first locator hash that is on the best chain (0 if none)."""
    for block_hash in locator:
        if is_on_best_chain(best, metas, block_hash):
            return metas[block_hash].height
    return 0


def get_recent_miners(metas: Mapping[bytes, BlockMeta], meta: BlockMeta, count: int) -> list[bytes]:
    """Miners of ``meta`` and its ancestors, newest first, at most ``count`` (genesis excluded)."""
    miners: list[bytes] = []
    node: BlockMeta | None = meta
    while node is not None and node.height > 0 and len(miners) < count:
        miners.append(node.miner_id)
        node = metas.get(node.prev_hash)
    return miners


def get_median_time_past(metas: Mapping[bytes, BlockMeta], meta: BlockMeta) -> int:
    """Median of ``meta``'s and its ancestors' timestamps (up to 11)."""
    timestamps, node = [], meta
    for _ in range(MEDIAN_TIME_SPAN):
        timestamps.append(node.timestamp_ms)
        parent = metas.get(node.prev_hash)
        if parent is None:
            break
        node = parent
    return compute_median_time_past(timestamps)


# ------------------------------------------------------------------- the tree
class BlockTree:
    """Index of valid blocks, candidate tips and the best chain (as Bitcoin Core's block index)."""

    def __init__(self, genesis: BlockMeta, max_reorg_depth: int, member_count: int) -> None:
        self.member_count = member_count
        self.needed_confirmers = signer_limit(member_count)
        # A deep-fork depth below the finality window protects nothing finality does not, and makes the
        # head depend on arrival order: it is raised to signer_limit(N).
        self.max_reorg_depth = max(max_reorg_depth, self.needed_confirmers)
        self.index: dict[bytes, BlockMeta] = {genesis.block_hash: genesis}
        self.tips: set[bytes] = {genesis.block_hash}  # valid blocks without children, still in the running
        self.best: list[bytes] = [genesis.block_hash]
        self.final: BlockMeta = genesis  # the last final block; never disconnected
        # The lock rule (consensus.locks): each member's blocks by height, its latest block, proven equivocations.
        # Under the signer limit a branch has L distinct miners within L blocks of any fork, so only two
        # blocks at most L heights apart can count towards two conflicting final blocks.
        self.evidence_window = self.needed_confirmers
        self.signed: dict[bytes, dict[int, list[BlockMeta]]] = {}
        self.latest_signed: dict[bytes, BlockMeta] = {}
        self.evidence: list[Evidence] = []

    @classmethod
    def from_index(cls, metas: Iterable[BlockMeta], best: Sequence[bytes], max_reorg_depth: int,
                   member_count: int) -> BlockTree:
        """Rebuild from stored metas and the stored best chain; raises TreeInconsistent."""
        index = {meta.block_hash: meta for meta in metas}
        if not best or best[0] not in index:
            raise TreeInconsistent("the best chain does not start at an indexed genesis")
        tree = cls(index[best[0]], max_reorg_depth, member_count)
        tree.index = index
        tree.tips = set(index) - {meta.prev_hash for meta in index.values()}
        tree.best = list(best)
        for height, block_hash in enumerate(tree.best):
            meta = index.get(block_hash)
            if meta is None or meta.height != height or (height and meta.prev_hash != tree.best[height - 1]):
                raise TreeInconsistent(f"best chain entry at height {height} is not an indexed block on the chain")
        for signed in sorted(index.values(), key=lambda m: (m.height, m.block_hash)):
            if signed.height > 0:
                tree._on_signed(signed)  # locks and evidence are re-derived from the stored blocks
        tree._update_final()
        return tree

    # ----------------------------------------------------------------- reading
    @property
    def tip(self) -> BlockMeta:
        return self.index[self.best[-1]]

    @property
    def height(self) -> int:
        return len(self.best) - 1

    def get_meta(self, block_hash: bytes) -> BlockMeta | None:
        return self.index.get(block_hash)

    def get_best_hash(self, height: int) -> bytes | None:
        return self.best[height] if 0 <= height < len(self.best) else None

    def is_on_best_chain(self, block_hash: bytes) -> bool:
        return is_on_best_chain(self.best, self.index, block_hash)

    def get_ancestor(self, meta: BlockMeta, height: int) -> BlockMeta | None:
        """The ancestor of ``meta`` at ``height`` (walks back to the best chain, then jumps)."""
        if height > meta.height or height < 0:
            return None
        node: BlockMeta | None = meta
        while node is not None and node.height > height and not self.is_on_best_chain(node.block_hash):
            node = self.index.get(node.prev_hash)
        if node is None:
            return None
        if node.height == height:
            return node
        return self.index[self.best[height]]

    def is_in_ancestry(self, block_hash: bytes, meta: BlockMeta) -> bool:
        """``block_hash`` is ``meta`` or one of its ancestors."""
        holder = self.index.get(block_hash)
        if holder is None or holder.height > meta.height:
            return False
        ancestor = self.get_ancestor(meta, holder.height)
        return ancestor is not None and ancestor.block_hash == block_hash

    def get_median_time_past(self, meta: BlockMeta) -> int:
        return get_median_time_past(self.index, meta)

    def get_recent_miners(self, meta: BlockMeta, count: int) -> list[bytes]:
        """Miners of ``meta`` and its ancestors, newest first, at most ``count`` (genesis excluded)."""
        return get_recent_miners(self.index, meta, count)

    def get_signer_window(self, parent: BlockMeta) -> list[bytes]:
        """What the signer limit reads for a block on ``parent``: its last ``signer_limit(N) - 1`` miners."""
        return self.get_recent_miners(parent, self.needed_confirmers - 1)

    def is_descendant_of_final(self, meta: BlockMeta) -> bool:
        """``meta`` is the last final block or descends from it (it may become best)."""
        return self.is_in_ancestry(self.final.block_hash, meta)

    def get_view(self, pending_count: int = 0) -> ChainView:
        """A frozen copy of the best chain and the index, for readers on other threads."""
        return ChainView(tuple(self.best), MappingProxyType(dict(self.index)), pending_count, self.final.height,
                         self.member_count, MappingProxyType(dict(self.latest_signed)), tuple(self.evidence))

    # ------------------------------------------------------------------ events
    def on_block(self, meta: BlockMeta) -> HeadChange:
        """Index a valid block whose parent is indexed; return the head change fork choice wants.

        The best chain does not move until :meth:`apply_head_change`.
        """
        parent = self.index.get(meta.prev_hash)
        if parent is None or meta.height != parent.height + 1:
            raise TreeInconsistent(f"block {meta.block_hash.hex()} does not extend an indexed parent")
        if meta.block_hash in self.index:
            raise TreeInconsistent(f"block {meta.block_hash.hex()} is already indexed")
        self.index[meta.block_hash] = meta
        self._on_signed(meta)
        self.tips.discard(meta.prev_hash)
        self.tips.add(meta.block_hash)
        old_tip = self.tip
        if not self.is_descendant_of_final(meta):
            self.tips.discard(meta.block_hash)
            return HeadChange(meta, old_tip, old_tip, old_tip, refused_final=True)
        start = meta if meta.prev_hash == old_tip.block_hash else old_tip
        winner, refused = self._choose_head(start, meta)
        return self._plan(meta, old_tip, winner, refused)

    def apply_head_change(self, change: HeadChange) -> None:
        """Move the best chain by the plan (it must come from this tree's current head)."""
        if change.old_tip.block_hash != self.best[-1]:
            raise TreeInconsistent("the head change was planned from another head")
        if change.fork.height < self.final.height:
            raise TreeInconsistent("the head change disconnects a final block")
        del self.best[change.fork.height + 1 :]
        self.best.extend(meta.block_hash for meta in change.connect)
        if change.connect:
            self._update_final()

    def _on_signed(self, meta: BlockMeta) -> None:
        """Record an indexed block as its miner's: move the miner's lock, look for equivocation evidence.

        Evidence pairs are looked for within ``evidence_window`` = ``signer_limit(N)`` heights: under the
        signer limit a branch is final within L blocks of its fork, so two conflicting blocks further apart
        cannot both count towards two conflicting final blocks.
        """
        by_height = self.signed.setdefault(meta.miner_id, {})
        for height in range(meta.height - self.evidence_window, meta.height + self.evidence_window + 1):
            for other in by_height.get(height, ()):
                low, high = (other, meta) if other.height <= meta.height else (meta, other)
                if self.is_in_ancestry(low.block_hash, high):
                    continue  # one branch (the common case): no conflict, checked through the best chain
                if is_equivocation(self.index, meta, other, self.needed_confirmers):
                    self.evidence.append(make_evidence(meta, other))
        by_height.setdefault(meta.height, []).append(meta)
        latest = self.latest_signed.get(meta.miner_id)
        if latest is None or compute_signed_order_key(meta) > compute_signed_order_key(latest):
            self.latest_signed[meta.miner_id] = meta

    def _update_final(self) -> None:
        """Move the last final block up the best chain: the highest block whose descendants-or-itself
        on the best chain have ``signer_limit(N)`` distinct miners (genesis excluded).

        Final is sticky, so the walk stops at the last final block; under the
        signer limit any ``signer_limit(N)`` consecutive blocks have distinct
        miners, so it takes ``signer_limit(N)`` steps. Tips that no longer
        descend from the last final block leave the candidates.
        """
        miners: set[bytes] = set()
        for height in range(len(self.best) - 1, self.final.height, -1):
            miners.add(self.index[self.best[height]].miner_id)
            if len(miners) >= self.needed_confirmers:
                self.final = self.index[self.best[height]]
                self.tips = {t for t in self.tips if self.is_descendant_of_final(self.index[t])}
                return

    # ------------------------------------------------------------ fork choice
    def get_fork_point(self, first: BlockMeta, second: BlockMeta) -> BlockMeta:
        """The last block two branches share."""
        low = min(first.height, second.height)
        a, b = self.get_ancestor(first, low), self.get_ancestor(second, low)
        while a is not None and b is not None and a.block_hash != b.block_hash:
            a, b = self.index.get(a.prev_hash), self.index.get(b.prev_hash)
        if a is None or b is None:
            raise TreeInconsistent("two indexed blocks share no ancestor")
        return a

    def get_fork_side(self, tip: BlockMeta, fork: BlockMeta, enough: int | None = None) -> ForkSide:
        """Distinct miners after the fork; counting may stop once ``enough`` are seen."""
        miners: set[bytes] = set()
        node = tip
        while node.block_hash != fork.block_hash and (enough is None or len(miners) < enough):
            miners.add(node.miner_id)
            node = self.index[node.prev_hash]
        return ForkSide(tip=tip, blocks_after_fork=tip.height - fork.height, distinct_miners=len(miners))

    def compare_tips(self, best: BlockMeta, candidate: BlockMeta) -> ForkDecision:
        """Fork choice between two tips (``consensus.forkchoice``), over their sides of the fork."""
        fork = self.get_fork_point(best, candidate)
        candidate_side = self.get_fork_side(candidate, fork)
        # Only "more distinct miners than the candidate" matters for the best side: stop counting there.
        best_side = self.get_fork_side(best, fork, enough=candidate_side.distinct_miners + 1)
        return on_candidate_tip(best_side, candidate_side, self.max_reorg_depth)

    def _choose_head(self, start: BlockMeta, new_block: BlockMeta) -> tuple[BlockMeta, bool]:
        """Tournament over all candidate tips, starting from ``start``; the winner must beat the head itself.

        Re-run after every block so the result does not depend on arrival order:
        a branch that wins while the fork is shallow is dropped again once the
        fork becomes deep and the other branch has more distinct miners. A tip
        that loses a deep comparison can only fall further behind, so it
        leaves the candidate set (a block extending it becomes a candidate again).

        Deep and shallow comparisons do not chain (A beats B by work, B beats C
        by work, yet C's fork from A is deep and A has more distinct miners), so
        the tournament's winner is compared with the current head directly: a
        winner that loses that deep comparison leaves the candidates and the
        tournament runs again (it ends: every round removes a tip).
        """
        head, refused_new = self.tip, False
        excluded: set[bytes] = set()  # lost to the head directly in this round, without being refused for good
        while True:
            # Finality first: ``self.tips`` holds only descendants of the last final block
            # (``on_block`` refuses the others, ``_update_final`` prunes them).
            candidates = self.tips - excluded
            best = start if start.block_hash in candidates else head
            for tip_hash in sorted(candidates - {best.block_hash}):
                candidate = self.index[tip_hash]
                decision = self.compare_tips(best, candidate)
                loser = best if decision.switch else candidate
                if decision.switch:
                    best = candidate
                if decision.decisive:
                    refused_new |= self._refuse(loser, new_block)
            if best.block_hash == head.block_hash or best.prev_hash == head.block_hash:
                return best, refused_new
            direct = self.compare_tips(head, best)
            if direct.switch or not direct.deep:
                return best, refused_new
            if direct.decisive:
                refused_new |= self._refuse(best, new_block)
            else:
                excluded.add(best.block_hash)
                refused_new |= best.block_hash == new_block.block_hash

    def _refuse(self, loser: BlockMeta, new_block: BlockMeta) -> bool:
        """A tip lost a deep comparison: it leaves the candidates. True if it is the new block."""
        self.tips.discard(loser.block_hash)
        return loser.block_hash == new_block.block_hash

    def _plan(self, block: BlockMeta, old_tip: BlockMeta, new_tip: BlockMeta, refused: bool) -> HeadChange:
        if new_tip.block_hash == old_tip.block_hash:
            return HeadChange(block, old_tip, new_tip, old_tip, refused_deep=refused)
        fork = self.get_fork_point(old_tip, new_tip)
        connect: list[BlockMeta] = []
        node = new_tip
        while node.block_hash != fork.block_hash:
            connect.append(node)
            node = self.index[node.prev_hash]
        connect.reverse()
        disconnect = tuple(self.best[fork.height + 1 :])
        return HeadChange(block, old_tip, new_tip, fork, disconnect, tuple(connect), refused)
