"""Record relay: pending records flood to every peer once, so any member can mine them.

- A node sends its own new records to every peer at once, and the records it
  newly admitted to its pending pool from a peer once to every other peer
  (flood with dedup: a peer that sent us a record, or was sent it, is marked
  as knowing it and never gets it again; a record that was already pending is
  not admitted again, so it is not relayed again).
- When a session opens, each side sends the other its pending records (at
  most RELAY_ON_CONNECT_RECORDS), so a site that was away gets what was queued
  meanwhile, and the records it queued while away reach the others.
- Outgoing records wait in an outbox; one sender task sends each peer what
  it does not know, in `records` messages of at most MAX_RECORDS_PER_MESSAGE,
  at most once per RELAY_FLUSH_INTERVAL_S: an isolated record leaves at once,
  a burst of uploads is batched and stays far inside the peer's rate limit.
- Records taken from one member's sessions pass a token bucket
  (RELAY_RECORDS_RATE, on top of the per-message rate limit): past it they
  are dropped without blame (`relay-rate`), so a member cannot make this node
  validate records faster than that.
- A record that does not decode or that breaks the consensus record rule
  (creator not a member, signature not the creator's) bans the sender
  (`invalid-record:<code>`), as an invalid block does; a record already
  pending or on the best chain, or one the pool has no room for (the whole
  pool, `pending-full`, or its creator's share of it, `pending-share-full`:
  node/pending.py), is ignored without blame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from consensus.encoding import unpack
from consensus.errors import ValidationError
from consensus.types import MAX_RECORD_BYTES, DiagnosisRecord
from network.backend import ChainBackend
from network.constants import (
    MAX_RECENT_RECORDS, MAX_RECORDS_PER_MESSAGE, RELAY_FLUSH_INTERVAL_S, RELAY_ON_CONNECT_RECORDS, RELAY_RECORDS_RATE,
)
from network.errors import ProtocolViolation
from network.messages import Records
from network.peer import Peer
from network.ratelimit import TokenBucket

log = logging.getLogger("lungledger.net")


def decode_record(raw: bytes) -> DiagnosisRecord:
    """One relayed record's canonical bytes -> record, or ProtocolViolation('invalid-record:<code>')."""
    try:
        return DiagnosisRecord.from_fields(unpack(raw, MAX_RECORD_BYTES))
    except ValidationError as error:
        raise ProtocolViolation(f"invalid-record:{error.code}", error.message) from error


class RecordRelay:
    def __init__(self, backend: ChainBackend, get_peers: Callable[[], Sequence[Peer]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.get_peers = get_peers
        self.clock = clock
        self.buckets: dict[bytes, TokenBucket] = {}  # per member (genesis members only: bounded)
        self.records_throttled = 0
        self.records_refused: dict[str, int] = {}  # by reason: pending-full, pending-share-full
        self.outbox: OrderedDict[bytes, DiagnosisRecord] = OrderedDict()
        self.recent: OrderedDict[bytes, None] = OrderedDict()  # ids made pending here lately
        self.wakeup = asyncio.Event()
        self.records_received = 0
        self.records_accepted = 0
        self.records_sent = 0
        backend.subscribe_records(self.on_pending)

    # ------------------------------------------------------------- outgoing
    def on_pending(self, records: Sequence[DiagnosisRecord], source: Any) -> None:
        """Records newly pending here (ours: source None; a peer's: its member id) go to the outbox."""
        for record in records:
            self._remember(record.record_id)
            self.outbox[record.record_id] = record
        self.wakeup.set()

    async def run_sender(self) -> None:
        """Send the outbox to every peer, paced; until cancelled."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            records = list(self.outbox.values())
            self.outbox.clear()
            for peer in self.get_peers():
                self.send_records(peer, records)
            await asyncio.sleep(RELAY_FLUSH_INTERVAL_S)  # pacing: records arriving meanwhile go in one message

    async def send_pending(self, peer: Peer) -> None:
        """On a new session: the peer gets our pending records (it may have been away)."""
        self.send_records(peer, await self.backend.get_pending_records(RELAY_ON_CONNECT_RECORDS))

    def send_records(self, peer: Peer, records: Sequence[DiagnosisRecord]) -> None:
        fresh = [record for record in records if not peer.knows_record(record.record_id)]
        for start in range(0, len(fresh), MAX_RECORDS_PER_MESSAGE):
            batch = fresh[start:start + MAX_RECORDS_PER_MESSAGE]
            for record in batch:
                peer.mark_record_known(record.record_id)
            peer.send(Records(tuple(record.encoded for record in batch)))
            self.records_sent += len(batch)

    # ------------------------------------------------------------- incoming
    async def on_records(self, peer: Peer, message: Records) -> None:
        records = []
        for raw in message.records:
            record = decode_record(raw)
            peer.mark_record_known(record.record_id)
            if record.record_id not in self.recent:
                records.append(record)
        self.records_received += len(message.records)
        if not records:
            return
        allowed = self._get_bucket(peer.member_id).take_up_to(len(records), self.clock())
        if allowed < len(records):
            self.records_throttled += len(records) - allowed
            log.warning("relay-rate: %d records from %s dropped", len(records) - allowed, peer.member_id.hex()[:8])
            records = records[:allowed]
            if not records:
                return
        result = await self.backend.add_records(records, peer.member_id)
        self.records_accepted += len(result.accepted)
        for reason, count in result.refused_by.items():
            self.records_refused[reason] = self.records_refused.get(reason, 0) + count
            log.warning("%s: %d records from %s not admitted", reason, count, peer.member_id.hex()[:8])
        if result.error is not None:
            raise ProtocolViolation(f"invalid-record:{result.error.code}", result.error.message)

    def _get_bucket(self, member_id: bytes) -> TokenBucket:
        bucket = self.buckets.get(member_id)
        if bucket is None:
            rate, burst = RELAY_RECORDS_RATE
            bucket = self.buckets[member_id] = TokenBucket(rate, burst, burst, self.clock())
        return bucket

    def _remember(self, record_id: bytes) -> None:
        self.recent[record_id] = None
        self.recent.move_to_end(record_id)
        if len(self.recent) > MAX_RECENT_RECORDS:
            self.recent.popitem(last=False)
