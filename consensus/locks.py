"""The lock rule: a member never signs on two conflicting branches, and proof when one does.

Majority finality (``signer_limit(N)`` distinct members) can only finalize two
conflicting blocks if a member signs on both branches (2L > N). An honest race
(two members mine on one parent at once) plus one member that then signs on
the other sibling's branch is enough to make two groups of nodes finalize
different siblings. So:

- **Lock.** A member is locked to the latest block it signed (latest by
  timestamp, then height: :func:`get_latest_signed`). It signs a block on
  ``parent`` only if its lock is ``parent`` or one of its ancestors
  (:func:`get_lock_decision`): never on a branch that conflicts with its own
  latest block.
- **Release** (the stuck-fork escape). The lock is released, for a block on
  ``parent`` at a height above the locked block's, when

  1. ``released-final``: the locked block conflicts with the node's last
     final block (it lost to a branch final here: it can never be best
     again), or
  2. ``released-stuck``: the best chain has not grown for
     :data:`LOCK_RELEASE_MS`: the signing time is at least ``parent``'s
     timestamp plus that delay.

  Both are visible in the blocks themselves, so a release is never evidence
  (:func:`is_release_justified`). Liveness: with ``L`` honest members online,
  a best tip that nobody may extend is at most ``LOCK_RELEASE_MS`` old before
  every lock that keeps a member off it is released, and at least one of the
  ``L`` online members is not among the tip's last ``L - 1`` miners.
- **Evidence.** Two blocks signed by one member that conflict (neither is an
  ancestor of the other), at most ``window`` heights apart, where neither
  order of signing is a justified release, prove the member equivocated
  (:func:`is_equivocation`). Honest, lock-obeying members never produce it.

Pure: time (``now_ms``) and the block index come in as arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consensus.validation import BlockMeta

LOCK_RELEASE_MS = 10_000  # the best chain has not grown for this long: a locked member may release its lock

LOCK_FREE = "free"  # the member has signed nothing yet
LOCK_ON_BRANCH = "on-branch"  # the lock is the parent or one of its ancestors
LOCK_RELEASED_FINAL = "released-final"
LOCK_RELEASED_STUCK = "released-stuck"
LOCK_HELD = "locked"  # the parent's branch conflicts with the lock: do not sign (yet)


@dataclass(frozen=True)
class LockDecision:
    """May a member sign a block on a parent, and why (``reason`` is one of the ``LOCK_*`` codes)."""

    allowed: bool
    reason: str
    release_at_ms: int | None = None  # when held: the earliest signing time at which ``released-stuck`` applies


@dataclass(frozen=True)
class Evidence:
    """Two conflicting blocks signed by one member, neither a justified release (ordered by hash)."""

    member_id: bytes
    first: BlockMeta
    second: BlockMeta


def compute_signed_order_key(meta: BlockMeta) -> tuple[int, int, bytes]:
    """Which of a member's blocks is its latest: timestamp, then height, then hash."""
    return meta.timestamp_ms, meta.height, meta.block_hash


def get_latest_signed(blocks: Iterable[BlockMeta]) -> BlockMeta | None:
    """The latest of one member's blocks (its lock), None if it signed none."""
    latest: BlockMeta | None = None
    for meta in blocks:
        if latest is None or compute_signed_order_key(meta) > compute_signed_order_key(latest):
            latest = meta
    return latest


def is_ancestor_or_self(metas: Mapping[bytes, BlockMeta], ancestor: BlockMeta, meta: BlockMeta) -> bool:
    """``ancestor`` is ``meta`` or one of its ancestors (walks back ``meta.height - ancestor.height`` blocks)."""
    node: BlockMeta | None = meta
    while node is not None and node.height > ancestor.height:
        node = metas.get(node.prev_hash)
    return node is not None and node.block_hash == ancestor.block_hash


def is_conflicting(metas: Mapping[bytes, BlockMeta], first: BlockMeta, second: BlockMeta) -> bool:
    """Neither block is the other or an ancestor of it: they sit on sibling branches."""
    low, high = (first, second) if first.height <= second.height else (second, first)
    return not is_ancestor_or_self(metas, low, high)


def get_fork_point(metas: Mapping[bytes, BlockMeta], first: BlockMeta, second: BlockMeta) -> BlockMeta | None:
    """The last block two branches share (None if the index does not connect them)."""
    a: BlockMeta | None = first
    b: BlockMeta | None = second
    while a is not None and b is not None and a.block_hash != b.block_hash:
        if a.height >= b.height:
            a = metas.get(a.prev_hash)
        else:
            b = metas.get(b.prev_hash)
    return a if a is not None and b is not None else None


def count_distinct_miners_after(metas: Mapping[bytes, BlockMeta], tip: BlockMeta, fork: BlockMeta,
                                enough: int) -> int:
    """Distinct miners of ``tip`` and its ancestors above ``fork``, counted up to ``enough``."""
    miners: set[bytes] = set()
    node: BlockMeta | None = tip
    while node is not None and node.height > fork.height and len(miners) < enough:
        miners.add(node.miner_id)
        node = metas.get(node.prev_hash)
    return len(miners)


def is_release_justified(metas: Mapping[bytes, BlockMeta], old: BlockMeta, new: BlockMeta, needed: int,
                         release_ms: int = LOCK_RELEASE_MS) -> bool:
    """Could an honest member locked to ``old`` have signed ``new`` (a conflicting block) afterwards?

    Only above the old block's height, and only when the blocks show a release:
    ``new``'s parent branch has ``needed`` distinct miners after the fork (a
    final block the old one conflicts with: ``released-final``), or ``new`` was
    signed at least ``release_ms`` after its parent (``released-stuck``).
    """
    if new.height <= old.height:
        return False
    parent = metas.get(new.prev_hash)
    if parent is None:
        return False
    if new.timestamp_ms >= parent.timestamp_ms + release_ms:
        return True
    fork = get_fork_point(metas, old, parent)
    return fork is not None and count_distinct_miners_after(metas, parent, fork, needed) >= needed


def is_equivocation(metas: Mapping[bytes, BlockMeta], first: BlockMeta, second: BlockMeta, needed: int,
                    release_ms: int = LOCK_RELEASE_MS) -> bool:
    """Two blocks of one member prove it broke the lock rule, whichever it signed first."""
    if first.miner_id != second.miner_id or first.block_hash == second.block_hash:
        return False
    if not is_conflicting(metas, first, second):
        return False
    return not (is_release_justified(metas, first, second, needed, release_ms)
                or is_release_justified(metas, second, first, needed, release_ms))


def make_evidence(first: BlockMeta, second: BlockMeta) -> Evidence:
    low, high = sorted((first, second), key=lambda meta: meta.block_hash)
    return Evidence(first.miner_id, low, high)


def get_lock_decision(metas: Mapping[bytes, BlockMeta], lock: BlockMeta | None, parent: BlockMeta,
                      final: BlockMeta, now_ms: int, release_ms: int = LOCK_RELEASE_MS) -> LockDecision:
    """May the member whose latest signed block is ``lock`` sign a block on ``parent`` at ``now_ms``?

    ``final`` is the node's last final block (on its best chain). The block
    signed after a release must carry a timestamp of at least ``now_ms``
    (the miner uses ``max(now_ms, median time past + 1)``), so that the
    release stays visible in the blocks (:func:`is_release_justified`).
    """
    if lock is None:
        return LockDecision(True, LOCK_FREE)
    if is_ancestor_or_self(metas, lock, parent):
        return LockDecision(True, LOCK_ON_BRANCH)
    release_at = parent.timestamp_ms + release_ms
    if parent.height < lock.height:  # a release only ever signs above the locked block
        return LockDecision(False, LOCK_HELD)
    if is_ancestor_or_self(metas, final, parent) and not is_ancestor_or_self(metas, final, lock):
        return LockDecision(True, LOCK_RELEASED_FINAL)  # the lock lies off a final branch: it can never be best
    if now_ms >= release_at:
        return LockDecision(True, LOCK_RELEASED_STUCK)
    return LockDecision(False, LOCK_HELD, release_at)
