"""Property tests of the pure block tree (no SQLite, no signatures: block metas only).

Trees are built as consortium members would build them: every block obeys the
signer limit (``consensus.signers.may_sign``), every block has the same work
(the difficulty is fixed by genesis), and, unless a test says otherwise, no
member signs on two conflicting branches.

1. The head does not depend on the order blocks arrive in, for every deep-fork
   depth at least the signer limit (most work, lowest hash on ties; a final
   block is never left).
2. A final block is never disconnected, whatever the blocks (equivocating
   members, honest races and blocks that break the signer limit included);
   the last final block only moves up the best chain.
3. A reorg deeper than the deep-fork depth only goes to a branch with strictly
   more distinct signers after the fork.
4. A HeadChange applied to the tree it came from gives exactly the new head:
   the old best chain up to the fork, then the connected blocks.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.blocktree import BlockTree, HeadChange, TreeInconsistent
from consensus.locks import get_lock_decision
from consensus.signers import may_sign, signer_limit
from consensus.validation import BlockMeta

MINERS = [bytes([i]) * 16 for i in range(1, 6)]
GENESIS = BlockMeta(hashlib.sha256(b"genesis").digest(), bytes(32), 0, 1, 0, bytes(16))


def make_tree_blocks(seed: int, size: int, miners: int, extend_bias: float, members: int | None = None,
                     signer_limit_rule: bool = True, loyal: bool = True) -> list[BlockMeta]:
    """A random tree rooted at genesis: long branches (bias to extend the newest block) and forks.

    ``signer_limit_rule``: each miner may sign (consortium of ``members``, default ``miners``).
    ``loyal``: a member builds only on branches holding its own earlier blocks (no equivocation).
    """
    rng = random.Random(seed)
    members = members or miners
    window = signer_limit(members) - 1
    index = {GENESIS.block_hash: GENESIS}
    metas = [GENESIS]
    last_own: dict[bytes, BlockMeta] = {}
    for number in range(size * 4):
        if len(metas) > size:
            break
        parent = metas[-1] if rng.random() < extend_bias else rng.choice(metas)
        eligible = [m for m in MINERS[:miners] if (not signer_limit_rule or may_sign(m, recent(index, parent, window), members))
                    and (not loyal or m not in last_own or is_ancestor(index, last_own[m], parent))]
        if not eligible:
            continue
        miner = rng.choice(eligible)
        block_hash = hashlib.sha256(seed.to_bytes(8, "big") + number.to_bytes(4, "big")).digest()
        work = 1 if signer_limit_rule else rng.choice([1, 1, 2])
        meta = BlockMeta(block_hash, parent.block_hash, parent.height + 1, parent.chain_work + work,
                         parent.timestamp_ms + 1, miner)
        index[block_hash] = meta
        metas.append(meta)
        last_own[miner] = meta
    return metas[1:]


def recent(index: dict[bytes, BlockMeta], meta: BlockMeta, count: int) -> list[bytes]:
    miners, node = [], meta
    while node.height > 0 and len(miners) < count:
        miners.append(node.miner_id)
        node = index[node.prev_hash]
    return miners


def is_ancestor(index: dict[bytes, BlockMeta], ancestor: BlockMeta, meta: BlockMeta) -> bool:
    node = meta
    while node.height > ancestor.height:
        node = index[node.prev_hash]
    return node.block_hash == ancestor.block_hash


def deliver(blocks: list[BlockMeta], depth: int, check: bool = False, members: int = 3) -> tuple[BlockTree, list[HeadChange]]:
    """Feed blocks in the given order, holding back children until their parent is in (as sync does).

    Every step checks that the last final block stays on the best chain and only moves up it.
    """
    tree = BlockTree(GENESIS, depth, members)
    changes: list[HeadChange] = []
    waiting = list(blocks)
    while waiting:
        held = []
        for meta in waiting:
            if meta.prev_hash not in tree.index:
                held.append(meta)
                continue
            old_best, old_final = list(tree.best), tree.final
            change = tree.on_block(meta)
            assert tree.best == old_best, "on_block must not move the best chain"
            tree.apply_head_change(change)
            assert tree.is_on_best_chain(old_final.block_hash), "a final block was disconnected"
            assert tree.final.height >= old_final.height and tree.is_on_best_chain(tree.final.block_hash)
            assert change.fork.height >= old_final.height
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


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**9), st.integers(2, 40), st.integers(1, 5), st.floats(0.3, 0.9), st.integers(1, 6), orders)
def test_head_is_independent_of_arrival_order(seed: int, size: int, members: int, bias: float, depth: int,
                                              rng: random.Random) -> None:
    """Signer limit, loyal members, equal work per block (the tree raises a depth below the signer limit to it)."""
    blocks = make_tree_blocks(seed, size, members, bias)
    shuffled = list(blocks)
    rng.shuffle(shuffled)
    in_order, _ = deliver(blocks, depth, members=members)
    any_order, _ = deliver(shuffled, depth, members=members)
    assert in_order.tip == any_order.tip
    assert in_order.final == any_order.final


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.integers(2, 40), st.integers(1, 5), st.floats(0.3, 0.9), st.integers(1, 6),
       st.booleans(), st.booleans(), orders)
def test_a_final_block_is_never_disconnected(seed: int, size: int, members: int, bias: float, depth: int,
                                             limit_rule: bool, loyal: bool, rng: random.Random) -> None:
    """Any trees, equivocating members and more work included: ``deliver`` checks it after every block."""
    blocks = make_tree_blocks(seed, size, members, bias, signer_limit_rule=limit_rule, loyal=loyal)
    rng.shuffle(blocks)
    tree, _ = deliver(blocks, depth, members=members)
    assert tree.is_descendant_of_final(tree.tip)


def test_deep_fork_rule_is_not_transitive() -> None:
    """The old counterexample (issue 11), in its two-member consortium: three branches beat each other in a
    circle and the head depended on arrival order. Under the new rules (finality: a block mined on by both
    members is never left; a deep-fork tie keeps the current branch) the head is the same either way.
    Its blocks break the signer limit (a member signs twice in a row), so a node would not even accept them."""
    blocks = make_tree_blocks(358, 17, 2, 0.535, signer_limit_rule=False, loyal=False)
    shuffled = list(blocks)
    random.Random(3580).shuffle(shuffled)
    assert deliver(blocks, 3, members=2)[0].tip == deliver(shuffled, 3, members=2)[0].tip


@pytest.mark.xfail(strict=True, reason="the deep-fork tie rule alone is not transitive: the same blocks in a "
                                       "4-member consortium (finality needs 3 distinct miners, only 2 mine) still "
                                       "circle. Only the signer limit (these blocks break it) and finality make "
                                       "the head order-independent: test_head_is_independent_of_arrival_order")
def test_tie_rule_alone_is_not_transitive() -> None:
    blocks = make_tree_blocks(358, 17, 2, 0.535, signer_limit_rule=False, loyal=False)
    shuffled = list(blocks)
    random.Random(3580).shuffle(shuffled)
    assert deliver(blocks, 3, members=4)[0].tip == deliver(shuffled, 3, members=4)[0].tip


def test_honest_race_no_longer_finalizes_either_sibling() -> None:
    """With 3 members, A's X and B's Y race on one parent and C extends X. Honest A is locked to X
    (consensus.locks): it does not sign on Y's branch while the race is open, so Y's branch never gets a
    second signer and every arrival order ends with X final (docs/CONSENSUS.md, threat model)."""
    a, b, c = MINERS[:3]
    x = BlockMeta(b"\x0a" * 32, GENESIS.block_hash, 1, 2, 1, a)
    y = BlockMeta(b"\x0b" * 32, GENESIS.block_hash, 1, 2, 1, b)
    z = BlockMeta(b"\x0c" * 32, x.block_hash, 2, 3, 2, c)
    seen_y = BlockTree(GENESIS, 3, 3)
    for meta in (x, y):
        seen_y.apply_head_change(seen_y.on_block(meta))
    assert seen_y.tip == x  # the lower hash: A's own X. Were Y the tip, A still could not sign on it:
    assert not get_lock_decision(seen_y.index, seen_y.latest_signed[a], y, seen_y.final, y.timestamp_ms + 1).allowed
    for order in ([x, z, y], [y, x, z], [x, y, z]):
        tree, _ = deliver(order, 3)
        assert tree.final == x and tree.tip == z and not tree.evidence


def test_equivocator_and_race_can_finalize_either_sibling() -> None:
    """The remaining bound (docs/CONSENSUS.md, threat model): with 3 members, A's X and B's Y race on one
    parent; C extends X, and A *deliberately* breaks its lock and extends Y. Each pair is a majority, so
    whichever pair arrives first is final and the other branch is never taken: order decides, a final block
    stays. Every node that holds both of A's blocks holds the evidence against A."""
    a, b, c = MINERS[:3]
    x = BlockMeta(b"\x0a" * 32, GENESIS.block_hash, 1, 2, 1, a)
    y = BlockMeta(b"\x0b" * 32, GENESIS.block_hash, 1, 2, 1, b)
    z = BlockMeta(b"\x0c" * 32, x.block_hash, 2, 3, 2, c)
    w = BlockMeta(b"\x0d" * 32, y.block_hash, 2, 3, 2, a)
    first, changes = deliver([x, z, y, w], 3)
    assert first.final == x and first.tip == z and changes[-1].refused_final
    second, _ = deliver([y, w, x, z], 3)
    assert second.final == y and second.tip == w
    for tree in (first, second):
        assert [(e.member_id, {e.first, e.second}) for e in tree.evidence] == [(a, {x, w})]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.integers(2, 40), st.integers(1, 5), st.floats(0.3, 0.9), st.integers(1, 6),
       st.booleans(), orders)
def test_no_deep_reorg_without_more_distinct_signers(seed: int, size: int, members: int, bias: float, depth: int,
                                                     limit_rule: bool, rng: random.Random) -> None:
    blocks = make_tree_blocks(seed, size, members, bias, signer_limit_rule=limit_rule, loyal=False)
    rng.shuffle(blocks)
    tree, changes = deliver(blocks, depth, members=members)
    for change in changes:
        if not change.is_reorg or max(len(change.disconnect), len(change.connect)) <= tree.max_reorg_depth:
            continue
        old_signers = distinct_miners(tree, change.disconnect)
        new_signers = distinct_miners(tree, [m.block_hash for m in change.connect])
        assert new_signers > old_signers, (old_signers, new_signers)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.integers(2, 40), st.integers(1, 5), st.floats(0.3, 0.9), st.integers(1, 6),
       st.booleans(), orders)
def test_head_change_applied_gives_the_new_head(seed: int, size: int, members: int, bias: float, depth: int,
                                                limit_rule: bool, rng: random.Random) -> None:
    blocks = make_tree_blocks(seed, size, members, bias, signer_limit_rule=limit_rule, loyal=False)
    rng.shuffle(blocks)
    deliver(blocks, depth, check=True, members=members)


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
    tree, changes = deliver(honest + attack, 4, members=4)
    assert tree.tip == honest[-1] and all(c.refused_final for c in changes[len(honest):])
    assert not any(c.tip_changed for c in changes[len(honest):])
    tree, changes = deliver(attack + honest, 4, members=4)
    assert tree.tip == honest[-1]


def test_a_plan_from_another_head_is_refused() -> None:
    first = BlockMeta(b"\x01" * 32, GENESIS.block_hash, 1, 2, 1, MINERS[0])
    second = BlockMeta(b"\x02" * 32, first.block_hash, 2, 3, 2, MINERS[0])
    tree = BlockTree(GENESIS, 10, 3)
    stale = tree.on_block(first)
    tree.apply_head_change(stale)
    tree.apply_head_change(tree.on_block(second))
    with pytest.raises(TreeInconsistent):
        tree.apply_head_change(stale)
    with pytest.raises(TreeInconsistent):
        tree.on_block(BlockMeta(b"\x03" * 32, b"\x09" * 32, 1, 2, 1, MINERS[0]))
