"""Which pending records this miner may mine now: one in-turn line per height, so miners do not race.

Any member may mine any member's record, and every node holds the relayed
copies, so without an order every node would mine the same records at once
and all but one block would go stale (measured: two stale blocks per upload on
three nodes); under majority finality such races can even leave two groups of
nodes with different final blocks (docs/CONSENSUS.md, threat model). As
Clique's in-turn / out-of-turn signers (EIP-225), the next height has one line
of members (``consensus.signers.compute_turn_rank``): the member at
``height mod N`` in genesis order first, then the others in genesis order,
skipping those the signer limit does not let sign. The member in turn mines
every pending record at once; one ``rank`` places behind mines a record only
after it has waited ``rank × CARRY_DELAY_S`` here (from its arrival or, for a
record this node did not see arrive — queued before a restart, returned by a
reorg — from when the miner first sees it). The same line holds for the
node's own records, so a creator out of turn lets the member in turn carry its
record (one relay hop) rather than race it; a member that is down, cannot
sign, or leaves records out is bypassed within a fraction of a second, and a
censoring member cannot hold a record back.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from consensus.types import DiagnosisRecord

CARRY_DELAY_S = 0.1  # per rank: more than a block takes to be mined and reach the others on a LAN
MAX_TRACKED_ARRIVALS = 50_000


class CarrySchedule:
    """Arrival times of pending records at this node, and which of them are due for this miner."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.arrivals: OrderedDict[bytes, float] = OrderedDict()
        self.tip_hash: bytes | None = None
        self.tip_seen = 0.0

    def on_arrival(self, records: Sequence[DiagnosisRecord], source: object) -> None:
        """Records newly pending here, ours (``source`` None) or relayed: their wait starts now."""
        now = self.clock()
        for record in records:
            self.arrivals[record.record_id] = now
        while len(self.arrivals) > MAX_TRACKED_ARRIVALS:
            self.arrivals.popitem(last=False)

    def get_due(self, pending: Sequence[DiagnosisRecord], rank: int,
                tip_hash: bytes) -> tuple[list[DiagnosisRecord], float | None]:
        """The pending records this node may mine now, ``rank`` places behind the member in turn on
        ``tip_hash``, and in how many seconds the next deferred one is due.

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
            remaining = max(arrived, self.tip_seen) + rank * CARRY_DELAY_S - now
            if remaining <= 0:
                due.append(record)
            else:
                wait = remaining if wait is None else min(wait, remaining)
        return due, wait
