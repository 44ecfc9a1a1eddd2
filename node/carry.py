"""Which pending records this miner may mine now: the creator first, then one in-turn line per height.

Any member may mine any member's record, and every node holds the relayed
copies, so without an order every node would mine the same records at once
and all but one block would go stale (measured: two stale blocks per upload on
three nodes); under majority finality such races can even leave two groups of
nodes with different final blocks (docs/CONSENSUS.md, threat model). The
order of a record at the next height (``get_carry_rank``):

1. **its creator**, when the signer limit lets the creator sign and the
   creator mines: it holds the record first (the others see it only one
   relay hop later), so it mines it at once. A creator that sees another
   eligible creator's record pending here (two hospitals uploading at once)
   gives up that place and waits in the line like everyone else, so two
   creators seldom race on one parent. Nobody goes first unless blocks of
   at least ``signer_limit(N) - 1`` other members arrived here within
   ``LIVE_WINDOW_S`` (``CarrySchedule.count_live_signers``): a group that may
   be a minority (a partition, most members down, or simply a quiet chain)
   can add only a few blocks before the signer limit stalls it, so there
   its records wait in the line and batch into fewer blocks;
2. **the in-turn line** (Clique's in-turn / out-of-turn signers, EIP-225):
   the member at ``height mod N`` in genesis order first, then the others in
   genesis order, skipping members the signer limit excludes and members
   whose peer session said they do not mine (hello ``mines`` = 0,
   docs/PROTOCOL.md), so nobody waits for a relay-only node.

Rank 0 mines at once; rank ``n`` mines a record only after it has waited
``n × CARRY_DELAY_S`` here (from its arrival or, for a record this node did
not see arrive — queued before a restart, returned by a reorg — from when the
miner first sees it, and never before the current tip was seen). A member
that is down, cannot sign, or leaves records out is bypassed within a
fraction of a second, and a censoring member cannot hold a record back.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence

from consensus.signers import may_sign
from consensus.types import DiagnosisRecord

CARRY_DELAY_S = 0.1  # per rank: more than a block takes to be mined and reach the others on a LAN
MAX_TRACKED_ARRIVALS = 50_000
LIVE_WINDOW_S = 5.0  # a member whose block arrived this recently counts as signing (creator-first needs a majority)


def get_turn_line(recent_miners: Sequence[bytes], member_ids: Sequence[bytes], height: int,
                  non_mining: Collection[bytes] = ()) -> list[bytes]:
    """The in-turn line for ``height``: members from ``height mod N`` on, in genesis order, that may sign
    after ``recent_miners`` (newest first) and are not known not to mine."""
    count = len(member_ids)
    line = [member_ids[(height + i) % count] for i in range(count)]
    return [m for m in line if m not in non_mining and may_sign(m, recent_miners, count)]


def get_carry_rank(miner_id: bytes, creator: bytes, line: Sequence[bytes], creator_first: bool = True) -> int | None:
    """``miner_id``'s place for a record of ``creator`` (0: mine at once), None when it may not sign.

    The creator comes first when it is in ``line`` (eligible and mining) and ``creator_first``;
    everyone else keeps the line's order behind it.
    """
    if miner_id not in line:
        return None
    if creator_first and creator in line:
        order = [creator, *(m for m in line if m != creator)]
        return order.index(miner_id)
    return line.index(miner_id)


class CarrySchedule:
    """Arrival times of pending records at this node, and which of them are due for this miner."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.arrivals: OrderedDict[bytes, float] = OrderedDict()
        self.tip_hash: bytes | None = None
        self.tip_seen = 0.0
        self.signed_at: dict[bytes, float] = {}  # member id -> when a block it mined last arrived here

    def on_block(self, miner_id: bytes) -> None:
        """A block mined by ``miner_id`` was stored here (ours or a peer's): that member is signing."""
        self.signed_at[miner_id] = self.clock()

    def count_live_signers(self, exclude: bytes) -> int:
        """Members other than ``exclude`` whose blocks arrived within LIVE_WINDOW_S."""
        since = self.clock() - LIVE_WINDOW_S
        return sum(1 for member, at in self.signed_at.items() if member != exclude and at >= since)

    def on_arrival(self, records: Sequence[DiagnosisRecord], source: object) -> None:
        """Records newly pending here, ours (``source`` None) or relayed: their wait starts now."""
        now = self.clock()
        for record in records:
            self.arrivals[record.record_id] = now
        while len(self.arrivals) > MAX_TRACKED_ARRIVALS:
            self.arrivals.popitem(last=False)

    def get_due(self, pending: Sequence[DiagnosisRecord], rank_of: Callable[[DiagnosisRecord], int],
                tip_hash: bytes) -> tuple[list[DiagnosisRecord], float | None]:
        """The pending records this node may mine now on ``tip_hash`` (``rank_of(record)`` places behind
        the first in line for it), and in how many seconds the next deferred one is due.

        The wait runs from the record's arrival or from when this node first saw the tip, whichever
        is later: on every new tip the line starts again, so records that waited on the old tip do
        not let members out of turn race the one in turn.
        """
        now = self.clock()
        if tip_hash != self.tip_hash:
            self.tip_hash, self.tip_seen = tip_hash, now
        due: list[DiagnosisRecord] = []
        wait: float | None = None
        for record in pending:
            arrived = self.arrivals.setdefault(record.record_id, now)
            remaining = max(arrived, self.tip_seen) + rank_of(record) * CARRY_DELAY_S - now
            if remaining <= 0:
                due.append(record)
            else:
                wait = remaining if wait is None else min(wait, remaining)
        return due, wait
