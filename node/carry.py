"""Who carries a relayed record first: an in-turn order per record, so miners do not race for it.

Any member may mine any member's record, and every node holds the relayed
copies, so without an order every node would mine the same record at once and
all but one block would go stale (measured: two stale blocks per upload on
three nodes). As Clique's in-turn / out-of-turn signers (EIP-225), each record
gets an order of carriers: its creator first, then the other members in
genesis order after the creator, skipping those the signer limit
(``consensus.signers.may_sign``) does not let sign the next block (once the
limit is enforced: ``SIGNER_LIMIT_ENFORCED``). A node
mines a record at once when it is first in that order, and otherwise only
after the record has waited ``rank × CARRY_DELAY_S`` here (from its arrival),
so a creator that is down, cannot sign, or leaves the record out is bypassed
within a fraction of a second, and a censoring member cannot hold it back.

A record whose arrival this node did not see (queued before a restart, or
returned to the pool by a reorg) counts as arriving when the miner first sees
it: after a reorg every node holds the losing block's records again, and
letting all of them mine those at once made the races (and reorgs) feed
themselves. Own records are always due.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from consensus.blocktree import ChainView
from consensus.signers import may_sign, signer_limit
from consensus.types import DiagnosisRecord

CARRY_DELAY_S = 0.1  # per rank: more than a block takes to be mined and reach the others on a LAN
# Skip members the signer limit stops only once the limit is a validity rule (branch `rules`): while a
# member may still sign twice in a row, treating it as stopped makes the next carrier race it.
SIGNER_LIMIT_ENFORCED = False
MAX_TRACKED_ARRIVALS = 50_000


def get_recent_miners(view: ChainView, count: int) -> list[bytes]:
    """Miners of the tip and its ancestors, newest first, at most ``count`` (genesis excluded)."""
    miners: list[bytes] = []
    meta = view.tip
    while meta.height > 0 and len(miners) < count:
        miners.append(meta.miner_id)
        meta = view.metas[meta.prev_hash]
    return miners


def compute_carry_rank(member_id: bytes, creator_id: bytes, member_ids: Sequence[bytes],
                       recent_miners: Sequence[bytes]) -> int:
    """Position of ``member_id`` in the record's carrier order (0: mine at once); len(members) if not in it.

    ``recent_miners`` (newest first) drop the members the signer limit stops; pass none to skip nobody.
    """
    count = len(member_ids)
    start = member_ids.index(creator_id) if creator_id in member_ids else 0
    order = [member_ids[(start + step) % count] for step in range(count)]
    eligible = [m for m in order if may_sign(m, recent_miners, count)]
    return eligible.index(member_id) if member_id in eligible else count


class CarrySchedule:
    """Arrival times of relayed records at this node, and which pending records are due for this miner."""

    def __init__(self, own_id: bytes, member_ids: Sequence[bytes], clock: Callable[[], float] = time.monotonic,
                 signer_limit_enforced: bool = SIGNER_LIMIT_ENFORCED) -> None:
        self.own_id = own_id
        self.member_ids = list(member_ids)
        self.clock = clock
        self.signer_limit_enforced = signer_limit_enforced
        self.arrivals: OrderedDict[bytes, float] = OrderedDict()

    def on_arrival(self, records: Sequence[DiagnosisRecord], source: object) -> None:
        if source is None:
            return  # our own: always due
        now = self.clock()
        for record in records:
            self.arrivals[record.record_id] = now
        while len(self.arrivals) > MAX_TRACKED_ARRIVALS:
            self.arrivals.popitem(last=False)

    def get_due(self, pending: Sequence[DiagnosisRecord], view: ChainView) -> tuple[list[DiagnosisRecord], float | None]:
        """The pending records this node may mine now, and in how many seconds the next deferred one is due."""
        recent = get_recent_miners(view, signer_limit(len(self.member_ids)) - 1) if self.signer_limit_enforced else []
        now = self.clock()
        due: list[DiagnosisRecord] = []
        wait: float | None = None
        for record in pending:
            if record.member_id == self.own_id:
                due.append(record)
                continue
            arrived = self.arrivals.setdefault(record.record_id, now)
            rank = compute_carry_rank(self.own_id, record.member_id, self.member_ids, recent)
            remaining = arrived + rank * CARRY_DELAY_S - now
            if remaining <= 0:
                due.append(record)
            else:
                wait = remaining if wait is None else min(wait, remaining)
        return due, wait
