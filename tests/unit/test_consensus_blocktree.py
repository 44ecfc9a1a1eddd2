"""Property tests of the pure block tree (no SQLite, no signatures: block metas only).

1. The head does not depend on the order blocks arrive in (parents before children)
   while no fork is deeper than the deep-fork depth (most work, lowest hash on ties).
   With deep forks it can: the distinct-signer rule is not transitive (see
   ``test_deep_fork_rule_is_not_transitive``, a known gap left to issue 12).
2. A reorg deeper than the deep-fork depth never goes to a branch with fewer
   distinct signers after the fork, nor to one with as many unless it has more work.
3. A HeadChange applied to the tree it came from gives exactly the new head:
   the old best chain up to the fork, then the connected blocks.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.blocktree import BlockTree, HeadChange, TreeInconsistent
from consensus.validation import BlockMeta

MINERS = [bytes([i]) * 16 for i in range(1, 5)]
GENESIS = BlockMeta(hashlib.sha256(b"genesis").digest(), bytes(32), 0, 1, 0, bytes(16))


def make_tree_blocks(seed: int, size: int, miners: int, extend_bias: float) -> list[BlockMeta]:
    """A random tree rooted at genesis: long branches (bias to extend the newest block) and forks."""
    rng = random.Random(seed)
    metas = [GENESIS]
    for index in range(size):
        parent = metas[-1] if rng.random() < extend_bias else rng.choice(metas)
        work = rng.choice([1, 1, 2])
        block_hash = hashlib.sha256(seed.to_bytes(8, "big") + index.to_bytes(4, "big")).digest()
        metas.append(BlockMeta(block_hash, parent.block_hash, parent.height + 1, parent.chain_work + work,
                               parent.timestamp_ms + 1, rng.choice(MINERS[:miners])))
    return metas[1:]


def deliver(blocks: list[BlockMeta], depth: int, check: bool = False) -> tuple[BlockTree, list[HeadChange]]:
    """Feed blocks in the given order, holding back children until their parent is in (as sync does)."""
    tree = BlockTree(GENESIS, depth)
    changes: list[HeadChange] = []
    waiting = list(blocks)
    while waiting:
        held = []
        for meta in waiting:
            if meta.prev_hash not in tree.index:
                held.append(meta)
                continue
            old_best = list(tree.best)
            change = tree.on_block(meta)
            assert tree.best == old_best, "on_block must not move the best chain"
            tree.apply_head_change(change)
            if check:
                check_applied(tree, old_best, change)
            changes.append(change)
        assert len(held) < len(waiting)
        waiting = held
    return tree, changes


def chain_to(tree: BlockTree, tip: BlockMeta) -> list[bytes]:
    path, node = [], tip
    while True:
        path.append(node.block_hash)
        if node.height == 0:
            return path[::-1]
        node = tree.index[node.prev_hash]


def distinct_miners(tree: BlockTree, hashes: list[bytes] | tuple[bytes, ...]) -> int:
    return len({tree.index[h].miner_id for h in hashes})


def check_applied(tree: BlockTree, old_best: list[bytes], change: HeadChange) -> None:
    assert tree.tip == change.new_tip
    assert tree.best == chain_to(tree, change.new_tip)
    assert tree.best == old_best[: change.fork.height + 1] + [m.block_hash for m in change.connect]
    assert list(change.disconnect) == old_best[change.fork.height + 1 :]
    assert change.tip_changed == (old_best[-1] != tree.best[-1])


orders = st.randoms(use_true_random=False)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.integers(2, 40), st.integers(1, 4), st.floats(0.3, 0.9), orders)
def test_head_is_independent_of_arrival_order(seed: int, size: int, miners: int, bias: float,
                                              rng: random.Random) -> None:
    blocks = make_tree_blocks(seed, size, miners, bias)
    shuffled = list(blocks)
    rng.shuffle(shuffled)
    in_order, _ = deliver(blocks, depth=size)  # no fork can be deep
    any_order, changes = deliver(shuffled, depth=size)
    assert in_order.tip == any_order.tip
    assert in_order.tip == max(blocks, key=lambda m: (m.chain_work, bytes(255 - b for b in m.block_hash)))


@pytest.mark.xfail(strict=True, reason="deep-fork rule is not transitive: B beats A by work on a signer tie, "
                                       "C beats B by work on a signer tie, A beats C by more signers from a later "
                                       "fork point; the head depends on arrival order (issue 12 replaces the rule)")
def test_deep_fork_rule_is_not_transitive() -> None:
    blocks = make_tree_blocks(358, 17, 2, 0.535)
    shuffled = list(blocks)
    random.Random(3580).shuffle(shuffled)
    assert deliver(blocks, 3)[0].tip == deliver(shuffled, 3)[0].tip


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.integers(2, 40), st.integers(1, 4), st.floats(0.3, 0.9), st.integers(1, 6), orders)
def test_no_deep_reorg_without_more_distinct_signers(seed: int, size: int, miners: int, bias: float, depth: int,
                                                     rng: random.Random) -> None:
    blocks = make_tree_blocks(seed, size, miners, bias)
    rng.shuffle(blocks)
    tree, changes = deliver(blocks, depth)
    for change in changes:
        if not change.is_reorg or max(len(change.disconnect), len(change.connect)) <= depth:
            continue
        old_signers = distinct_miners(tree, change.disconnect)
        new_signers = distinct_miners(tree, [m.block_hash for m in change.connect])
        assert new_signers >= old_signers, (old_signers, new_signers)
        if new_signers == old_signers:
            assert change.new_tip.chain_work >= change.old_tip.chain_work


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.integers(2, 40), st.integers(1, 4), st.floats(0.3, 0.9), st.integers(1, 6), orders)
def test_head_change_applied_gives_the_new_head(seed: int, size: int, miners: int, bias: float, depth: int,
                                                rng: random.Random) -> None:
    blocks = make_tree_blocks(seed, size, miners, bias)
    rng.shuffle(blocks)
    deliver(blocks, depth, check=True)


def test_single_signer_private_branch_cannot_replace_deep_history() -> None:
    """Three signers' 8 blocks vs one signer's 12 heavier blocks from genesis (depth 4): history stays."""
    honest, parent = [], GENESIS
    for i in range(8):
        parent = BlockMeta(bytes([1, i]) * 16, parent.block_hash, parent.height + 1, parent.chain_work + 1, i + 1,
                           MINERS[i % 3])
        honest.append(parent)
    attack, parent = [], GENESIS
    for i in range(12):
        parent = BlockMeta(bytes([2, i]) * 16, parent.block_hash, parent.height + 1, parent.chain_work + 2, i + 1,
                           MINERS[3])
        attack.append(parent)
    tree, changes = deliver(honest + attack, 4)
    assert tree.tip == honest[-1] and any(c.refused_deep for c in changes)
    assert not any(c.tip_changed for c in changes[len(honest):])
    tree, changes = deliver(attack + honest, 4)
    assert tree.tip == honest[-1]


def test_a_plan_from_another_head_is_refused() -> None:
    first = BlockMeta(b"\x01" * 32, GENESIS.block_hash, 1, 2, 1, MINERS[0])
    second = BlockMeta(b"\x02" * 32, first.block_hash, 2, 3, 2, MINERS[0])
    tree = BlockTree(GENESIS, 10)
    stale = tree.on_block(first)
    tree.apply_head_change(stale)
    tree.apply_head_change(tree.on_block(second))
    with pytest.raises(TreeInconsistent):
        tree.apply_head_change(stale)
    with pytest.raises(TreeInconsistent):
        tree.on_block(BlockMeta(b"\x03" * 32, b"\x09" * 32, 1, 2, 1, MINERS[0]))
