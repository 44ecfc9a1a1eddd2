"""The signer limit (in the spirit of Clique, EIP-225): who may sign the next block.

With ``N`` consortium members, a member may sign at most one of every
``signer_limit(N) = N // 2 + 1`` consecutive blocks. So a member may sign a
block only if it signed none of the ``signer_limit(N) - 1`` blocks before it
(genesis, mined by nobody, does not count). One member alone can therefore
extend a chain by at most one block: any longer branch needs a majority of
the members taking turns.

Chains of one or two members: one member signs every block (limit 1: a chain
of one has no one else to protect); two members alternate (limit 2), so
neither can extend the chain alone and liveness needs both.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice


def signer_limit(member_count: int) -> int:
    """Length of the window in which a member may sign at most one block."""
    if member_count < 1:
        raise ValueError("a chain has at least one member")
    return member_count // 2 + 1


def may_sign(miner_id: bytes, recent_miners: Sequence[bytes], member_count: int) -> bool:
    """May ``miner_id`` sign the block after the one whose miners (newest first) are ``recent_miners``?

    ``recent_miners`` are the miners of the parent and its ancestors, newest
    first, genesis excluded (``BlockTree.get_recent_miners(parent, signer_limit(N) - 1)``).
    """
    window = signer_limit(member_count) - 1
    return miner_id not in islice(recent_miners, window)


def compute_turn_rank(miner_id: bytes, recent_miners: Sequence[bytes], member_ids: Sequence[bytes], height: int) -> int | None:
    """``miner_id``'s place in line to sign the block at ``height`` (0: in turn), None if it may not sign.

    The line starts at the member at ``height mod N`` in genesis order and
    skips members the signer limit excludes. Not a validity rule: miners out of
    turn wait ``rank`` delays before mining (Clique's out-of-turn wiggle), so
    two members rarely race on one parent.
    """
    count = len(member_ids)
    line = [member_ids[(height + i) % count] for i in range(count)]
    eligible = [member for member in line if may_sign(member, recent_miners, count)]
    return eligible.index(miner_id) if miner_id in eligible else None
