"""The lock rule and equivocation evidence (``consensus.locks``), over pure block metas.

1. Building blocks: conflict, fork point, a member's latest block.
2. ``get_lock_decision``: free, on its branch, held (with the release time), released by a final branch
   elsewhere, released when the best chain is stuck for ``LOCK_RELEASE_MS``; never at or below the lock.
3. ``is_equivocation``: a double sign at one height and the race-then-switch are evidence; a justified
   release (stuck or final) and blocks on one branch are not. The block tree finds evidence in any
   arrival order and re-derives it from stored metas.
4. Simulation (hypothesis): lock-obeying members with random races and delivery delays below
   ``LOCK_RELEASE_MS / 2`` never leave two nodes with conflicting final blocks and never produce
   evidence; with the members online, the chain never stalls (every round after a quiet period grows it).
5. With an even number of members (2L - N = 2), one member that ignores the lock and signs on any branch
   still cannot make two nodes finalize siblings (docs/CONSENSUS.md, threat model); it leaves evidence.
"""

from __future__ import annotations

import hashlib
import heapq
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.blocktree import BlockTree
from consensus.locks import (
    LOCK_FREE, LOCK_HELD, LOCK_ON_BRANCH, LOCK_RELEASE_MS, LOCK_RELEASED_FINAL, LOCK_RELEASED_STUCK,
    get_fork_point, get_latest_signed, get_lock_decision, is_conflicting, is_equivocation, is_release_justified,
)
from consensus.signers import may_sign, signer_limit
from consensus.validation import BlockMeta

MINERS = [bytes([i]) * 16 for i in range(1, 6)]
A, B, C, D, E = MINERS
GENESIS = BlockMeta(hashlib.sha256(b"genesis").digest(), bytes(32), 0, 1, 0, bytes(16))


def child(parent: BlockMeta, miner: bytes, tag: int, timestamp_ms: int | None = None) -> BlockMeta:
    block_hash = hashlib.sha256(parent.block_hash + miner + tag.to_bytes(4, "big")).digest()
    timestamp = parent.timestamp_ms + 1 if timestamp_ms is None else timestamp_ms
    return BlockMeta(block_hash, parent.block_hash, parent.height + 1, parent.chain_work + 1, timestamp, miner)


def index_of(*metas: BlockMeta) -> dict[bytes, BlockMeta]:
    return {meta.block_hash: meta for meta in (GENESIS, *metas)}


def race() -> tuple[BlockMeta, BlockMeta, BlockMeta, BlockMeta]:
    """A's X and B's Y on genesis; C's Z extends X; A's W extends Y (the switch the lock forbids)."""
    x, y = child(GENESIS, A, 1), child(GENESIS, B, 2)
    return x, y, child(x, C, 3), child(y, A, 4)


# ------------------------------------------------------------------ building blocks
def test_conflict_fork_point_and_latest_block() -> None:
    x, y, z, w = race()
    metas = index_of(x, y, z, w)
    assert is_conflicting(metas, x, y) and is_conflicting(metas, z, w) and is_conflicting(metas, x, w)
    assert not is_conflicting(metas, x, z) and not is_conflicting(metas, z, x) and not is_conflicting(metas, x, x)
    assert get_fork_point(metas, z, w) == GENESIS and get_fork_point(metas, z, x) == x
    later = child(y, A, 5, timestamp_ms=x.timestamp_ms + 50)
    assert get_latest_signed([x, later]) == later and get_latest_signed([]) is None


# ------------------------------------------------------------------ lock decisions
def test_lock_decisions() -> None:
    x, y, z, w = race()
    metas = index_of(x, y, z, w)
    assert get_lock_decision(metas, None, y, GENESIS, 0).reason == LOCK_FREE
    assert get_lock_decision(metas, x, z, GENESIS, 0).reason == LOCK_ON_BRANCH
    held = get_lock_decision(metas, x, y, GENESIS, y.timestamp_ms + 1)
    assert not held.allowed and held.reason == LOCK_HELD and held.release_at_ms == y.timestamp_ms + LOCK_RELEASE_MS
    stuck = get_lock_decision(metas, x, y, GENESIS, y.timestamp_ms + LOCK_RELEASE_MS)
    assert stuck.allowed and stuck.reason == LOCK_RELEASED_STUCK
    # Y's branch final here (B, C signed on it): A's X can never be best again.
    v = child(y, C, 6)
    metas = index_of(x, y, z, v)
    assert get_lock_decision(metas, x, v, y, v.timestamp_ms).reason == LOCK_RELEASED_FINAL
    # Never a release at or below the locked block's height: the locked block is higher than the parent.
    assert get_lock_decision(metas, z, y, y, 10**12) == get_lock_decision(metas, z, y, GENESIS, 10**12)
    assert not get_lock_decision(metas, z, y, y, 10**12).allowed


# ------------------------------------------------------------------ evidence
def test_double_sign_at_one_height_and_race_switch_are_evidence() -> None:
    x, y, z, w = race()
    twin = child(GENESIS, A, 9, timestamp_ms=10**9)  # even a much later double sign at one height
    metas = index_of(x, y, z, w, twin)
    assert is_equivocation(metas, x, twin, 2) and is_equivocation(metas, twin, x, 2)
    assert is_equivocation(metas, x, w, 2)  # A signed X, then W on B's sibling Y: the split the lock forbids
    assert not is_equivocation(metas, x, z, 2) and not is_equivocation(metas, x, x, 2)


def test_justified_releases_are_not_evidence() -> None:
    x, y, z, _ = race()
    late = child(y, A, 7, timestamp_ms=y.timestamp_ms + LOCK_RELEASE_MS)  # stuck: Y's branch waited the delay
    v = child(y, C, 6)
    after_final = child(v, A, 8)  # Y's branch had B and C (final with 3 members) before A signed on it
    metas = index_of(x, y, z, late, v, after_final)
    assert is_release_justified(metas, x, late, 2) and not is_equivocation(metas, x, late, 2)
    assert is_release_justified(metas, x, after_final, 2) and not is_equivocation(metas, x, after_final, 2)
    assert not is_release_justified(metas, late, x, 2)  # never downwards


def test_the_tree_finds_evidence_in_any_order_and_rederives_it() -> None:
    x, y, z, w = race()
    for order in ([x, y, z, w], [y, w, x, z], [x, z, y, w]):
        tree = BlockTree(GENESIS, 10, 3)
        for meta in order:
            tree.apply_head_change(tree.on_block(meta))
        assert [(e.member_id, {e.first, e.second}) for e in tree.evidence] == [(A, {x, w})]
        assert tree.latest_signed[A] == w and tree.get_view().evidence == tuple(tree.evidence)
        rebuilt = BlockTree.from_index(tree.index.values(), tree.best, 10, 3)
        assert rebuilt.evidence == tree.evidence and rebuilt.latest_signed == tree.latest_signed


# ------------------------------------------------------------------ simulation
class Node:
    """One member's view: its own block tree and the blocks still waiting for their parent."""

    def __init__(self, member: bytes, members: int) -> None:
        self.member = member
        self.tree = BlockTree(GENESIS, 100, members)
        self.orphans: list[BlockMeta] = []

    def receive(self, meta: BlockMeta) -> None:
        self.orphans.append(meta)
        progress = True
        while progress:
            progress = False
            for waiting in list(self.orphans):
                if waiting.block_hash in self.tree.index:
                    self.orphans.remove(waiting)
                elif waiting.prev_hash in self.tree.index:
                    self.orphans.remove(waiting)
                    self.tree.apply_head_change(self.tree.on_block(waiting))
                    progress = True

    def try_mine_anywhere(self, now_ms: int, tag: int, rng: random.Random) -> BlockMeta | None:
        """An equivocator: any candidate tip the signer limit allows, lock or not."""
        tree = self.tree
        tips = [tree.index[h] for h in sorted(tree.tips)
                if may_sign(self.member, tree.get_signer_window(tree.index[h]), tree.member_count)]
        if not tips:
            return None
        parent = rng.choice(tips)
        return child(parent, self.member, tag, timestamp_ms=max(now_ms, parent.timestamp_ms + 1))

    def try_mine(self, now_ms: int, tag: int) -> BlockMeta | None:
        tree, parent = self.tree, self.tree.tip
        if not may_sign(self.member, tree.get_signer_window(parent), tree.member_count):
            return None
        lock = get_lock_decision(tree.index, tree.latest_signed.get(self.member), parent, tree.final, now_ms)
        if not lock.allowed:
            return None
        return child(parent, self.member, tag, timestamp_ms=max(now_ms, parent.timestamp_ms + 1))


def assert_finals_agree(nodes: list[Node]) -> None:
    """Every two nodes' last final blocks lie on one chain (one is the other or its ancestor)."""
    everything = {h: m for node in nodes for h, m in node.tree.index.items()}
    for first in nodes:
        for second in nodes:
            assert not is_conflicting(everything, first.tree.final, second.tree.final), "two nodes finalized siblings"


@settings(max_examples=120, deadline=None)
@given(st.integers(0, 10**9), st.integers(2, 5), st.integers(0, 2), st.integers(100, LOCK_RELEASE_MS // 2 - 1))
def test_lock_obeying_members_never_split_and_never_stall(seed: int, members: int, offline: int,
                                                          max_delay_ms: int) -> None:
    rng = random.Random(seed)
    online = min(members, max(signer_limit(members), members - offline))
    nodes = [Node(MINERS[i], members) for i in range(online)]  # the offline members never mine nor receive
    inbox: list[tuple[int, int, int, BlockMeta]] = []
    now, tag = 0, 0

    def publish(origin: int, meta: BlockMeta, delay: int) -> None:
        nonlocal tag
        nodes[origin].receive(meta)
        for i in range(len(nodes)):
            if i != origin:
                tag += 1
                heapq.heappush(inbox, (now + rng.randint(0, delay), tag, i, meta))

    def deliver_until(deadline: int) -> None:
        while inbox and inbox[0][0] <= deadline:
            _, _, target, meta = heapq.heappop(inbox)
            nodes[target].receive(meta)

    for _ in range(60):
        now += rng.choice([1, 5, 50, 500, 3_000, 2 * LOCK_RELEASE_MS])  # races, bursts and quiet periods
        deliver_until(now)
        for origin in rng.sample(range(len(nodes)), rng.randint(1, len(nodes))):  # several mine at once: races
            tag += 1
            meta = nodes[origin].try_mine(now, tag)
            if meta is not None:
                publish(origin, meta, max_delay_ms)
        assert_finals_agree(nodes)
        assert all(not node.tree.evidence for node in nodes)

    # Liveness: after a quiet period every node holds every block; each round someone may sign and the chain grows.
    for _ in range(3 * members):
        now += LOCK_RELEASE_MS
        deliver_until(now)
        height = nodes[0].tree.height
        for origin in range(len(nodes)):
            tag += 1
            meta = nodes[origin].try_mine(now, tag)
            if meta is not None:
                publish(origin, meta, 0)
                deliver_until(now)
                break
        assert nodes[0].tree.height == height + 1, "the chain stalled"
        assert_finals_agree(nodes)
    assert nodes[0].tree.final.height > 0


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 10**9), st.sampled_from([2, 4]), st.integers(100, 3_000))
def test_one_equivocator_cannot_split_an_even_consortium(seed: int, members: int, max_delay_ms: int) -> None:
    rng = random.Random(seed)
    nodes = [Node(MINERS[i], members) for i in range(members)]  # node 0 is the equivocator
    inbox: list[tuple[int, int, int, BlockMeta]] = []
    now, tag = 0, 0
    for _ in range(80):
        now += rng.choice([1, 5, 50, 500, 3_000])
        while inbox and inbox[0][0] <= now:
            _, _, target, meta = heapq.heappop(inbox)
            nodes[target].receive(meta)
        for origin in rng.sample(range(members), rng.randint(1, members)):
            tag += 1
            node = nodes[origin]
            meta = node.try_mine_anywhere(now, tag, rng) if origin == 0 else node.try_mine(now, tag)
            if meta is None:
                continue
            node.receive(meta)
            for target in range(members):
                if target != origin:
                    tag += 1
                    heapq.heappush(inbox, (now + rng.randint(0, max_delay_ms), tag, target, meta))
        assert_finals_agree(nodes)
        for node in nodes:
            assert all(e.member_id == MINERS[0] for e in node.tree.evidence)  # only the equivocator is accused
