"""Headers-first block sync, orphan handling and serving headers and blocks.

- Headers come by locator (`get_headers`), are validated alone and joined to
  the header tree; bodies are fetched lowest height first, in batches of
  BLOCKS_PER_GET_BLOCKS, from every peer that sent the header, at most
  MAX_BLOCKS_IN_FLIGHT_PER_PEER per peer and never more than
  BLOCK_DOWNLOAD_WINDOW above our tip.
- Bodies wait in `received` until their parent is connected; one connector
  task hands runs of them to the chain in batches (one transaction each).
- A body whose parent we do not know (an orphan) is kept, bounded by
  MAX_ORPHAN_BLOCKS, while its parent is fetched from the same peer.
- A peer's own newly mined block may come unrequested (a *pushed* block: a
  `blocks` message of one block whose miner is the sending member, within
  MAX_DIRECT_FETCH_GAP of our height); it is taken as if we had asked for it.
  Any other unrequested block is ignored.
- An invalid body bans the peer that sent it (unless the reason is not its
  fault) and drops everything built on it, pushed or requested alike.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus.errors import ValidationError
from consensus.types import Block, BlockHeader
from consensus.validation import validate_header
from network.backend import ChainBackend, ConnectResult
from network.constants import (
    BLOCK_DOWNLOAD_WINDOW,
    BLOCKS_PER_GET_BLOCKS,
    CONNECT_BATCH_BLOCKS,
    MAX_BLOCKS_IN_FLIGHT_PER_PEER,
    MAX_DIRECT_FETCH_GAP,
    MAX_HEADERS_PER_MESSAGE,
    MAX_LOCATOR_HASHES,
    MAX_ORPHAN_BLOCKS,
    MAX_REJECTED_HASHES,
    MAX_UNCONNECTING_HEADERS,
    MUTATED_BLOCK_CODES,
    NOT_PEER_FAULT_CODES,
    REQUEST_TIMEOUT_S,
)
from network.errors import ProtocolViolation
from network.headers import HeaderTree
from network.messages import Announce, Blocks, GetBlocks, GetHeaders, Headers, NotFound
from network.peer import Peer
from network.serving import send_blocks

log = logging.getLogger("lungledger.net")
SYNC_LOG_INTERVAL_S = 2.0

Punish = Callable[[bytes, str], None]


@dataclass
class InFlight:
    member_id: bytes
    deadline: float


@dataclass
class Received:
    block: Block
    source: bytes


class BlockSync:
    def __init__(self, backend: ChainBackend, get_peers: Callable[[], Sequence[Peer]], punish: Punish,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.clock = clock
        self.params = backend.params
        self.get_peers = get_peers
        self.punish = punish
        self.tree = HeaderTree()
        self.in_flight: dict[bytes, InFlight] = {}
        self.received: dict[bytes, Received] = {}
        self.orphans: OrderedDict[bytes, None] = OrderedDict()
        self.rejected: OrderedDict[bytes, str] = OrderedDict()
        self.wakeup = asyncio.Event()
        self.blocks_connected = 0
        self.blocks_received_from: Counter[bytes] = Counter()
        self.pushed_blocks_received = 0
        self.progress_logged_at = clock()
        # Blocks refused here, before they reach the chain (header checks), by reason code.
        self.rejection_listeners: list[Callable[[str], None]] = []
        self.progress_logged_blocks = 0

    # ------------------------------------------------------------- requests
    def request_headers(self, peer: Peer, start: bytes | None = None) -> None:
        locator = self.backend.get_locator()
        if start is not None and start not in locator:
            locator = [start, *locator]
        peer.headers_requested_at = self.clock()
        peer.send(GetHeaders(tuple(locator[:MAX_LOCATOR_HASHES - 1] + locator[-1:])))

    def request_blocks(self, peer: Peer, hashes: Sequence[bytes]) -> None:
        deadline = self.clock() + REQUEST_TIMEOUT_S
        for block_hash in hashes:
            self.in_flight[block_hash] = InFlight(peer.member_id, deadline)
            peer.in_flight.add(block_hash)
        peer.send(GetBlocks(tuple(hashes)))

    def is_known(self, block_hash: bytes) -> bool:
        return (self.backend.has_block(block_hash) or block_hash in self.received or block_hash in self.in_flight)

    # ------------------------------------------------------------- handlers
    async def on_announce(self, peer: Peer, message: Announce) -> None:
        peer.mark_known(message.block_hash)
        peer.best_height = max(peer.best_height, message.height)
        if self.is_known(message.block_hash) or message.block_hash in self.rejected:
            return
        if message.block_hash in self.tree:
            self.tree.add_source(message.block_hash, peer.member_id)
            self.schedule()
        elif abs(message.height - self.backend.height) <= MAX_DIRECT_FETCH_GAP:
            self.request_blocks(peer, [message.block_hash])
        else:
            self.request_headers(peer)

    async def on_headers(self, peer: Peer, message: Headers) -> None:
        peer.headers_requested_at = None
        if not message.headers:
            return
        headers = [self._decode_header(raw) for raw in message.headers]
        parent_height = self._get_known_height(headers[0].prev_hash)
        if parent_height is None:
            self._on_unconnecting_headers(peer)
            return
        for header in headers:
            self._check_header(header, parent_height)
            parent_height = header.height
            self._add_header(peer, header)
        peer.best_height = max(peer.best_height, headers[-1].height)
        if len(headers) == MAX_HEADERS_PER_MESSAGE and not self.tree.is_full:
            self.request_headers(peer, start=headers[-1].block_hash)
        self.schedule()

    def _decode_header(self, raw: bytes) -> BlockHeader:
        try:
            header = BlockHeader.decode(raw)
            validate_header(header, self.params)
        except ValidationError as error:
            raise ProtocolViolation(f"invalid-header:{error.code}", error.message) from error
        return header

    def _get_known_height(self, block_hash: bytes) -> int | None:
        height = self.backend.get_height_of(block_hash)
        return height if height is not None else self.tree.get_height(block_hash)

    def _check_header(self, header: BlockHeader, parent_height: int) -> None:
        if header.height != parent_height + 1:
            raise ProtocolViolation("invalid-header:bad-height", f"height {header.height} after {parent_height}")
        if header.prev_hash in self.rejected or header.block_hash in self.rejected:
            raise ProtocolViolation("invalid-header:builds-on-invalid", header.block_hash.hex())

    def _add_header(self, peer: Peer, header: BlockHeader) -> None:
        block_hash = header.block_hash
        peer.mark_known(block_hash)
        if self.backend.has_block(block_hash):
            return
        if block_hash in self.tree or not self.tree.is_full:
            self.tree.add(header, peer.member_id)

    def _on_unconnecting_headers(self, peer: Peer) -> None:
        peer.unconnecting_headers += 1
        if peer.unconnecting_headers > MAX_UNCONNECTING_HEADERS:
            raise ProtocolViolation("unconnecting-headers", f"{peer.unconnecting_headers} header messages")
        self.request_headers(peer)

    async def on_blocks(self, peer: Peer, message: Blocks) -> None:
        for raw in message.blocks:
            try:
                block = Block.decode(raw)
            except ValidationError as error:
                raise ProtocolViolation(f"invalid-block:{error.code}", error.message) from error
            self._on_block(peer, block, pushed=len(message.blocks) == 1)
        self.wakeup.set()
        self.schedule()

    def is_pushed_block(self, peer: Peer, block: Block) -> bool:
        """An unrequested block we take: the sender's own new block, near our tip (docs/PROTOCOL.md §4)."""
        return (block.header.miner_id == peer.member_id and block.block_hash not in self.rejected
                and abs(block.height - self.backend.height) <= MAX_DIRECT_FETCH_GAP)

    def _on_block(self, peer: Peer, block: Block, pushed: bool = False) -> None:
        block_hash = block.block_hash
        if block_hash in peer.in_flight:
            peer.in_flight.discard(block_hash)
            self.in_flight.pop(block_hash, None)
        elif not (pushed and self.is_pushed_block(peer, block)):
            return  # unrequested, or a late reply to a request we gave to someone else
        else:
            self.pushed_blocks_received += 1
            peer.best_height = max(peer.best_height, block.height)  # its new tip, as an announcement says
        peer.mark_known(block_hash)
        if self.backend.has_block(block_hash) or block_hash in self.received:
            return
        if block_hash not in self.tree:
            try:
                validate_header(block.header, self.params)
            except ValidationError as error:
                for listener in self.rejection_listeners:
                    listener(error.code)
                raise ProtocolViolation(f"invalid-block:{error.code}", error.message) from error
        self.received[block_hash] = Received(block, peer.member_id)
        self.blocks_received_from[peer.member_id] += 1
        if block_hash not in self.tree and not self._is_parent_coming(block):
            self._on_orphan(peer, block)

    def _is_parent_coming(self, block: Block) -> bool:
        parent = block.header.prev_hash
        return self.backend.has_block(parent) or parent in self.received or parent in self.in_flight or parent in self.tree

    def _on_orphan(self, peer: Peer, block: Block) -> None:
        self.orphans[block.block_hash] = None
        while len(self.orphans) > MAX_ORPHAN_BLOCKS:
            evicted, _ = self.orphans.popitem(last=False)
            self.received.pop(evicted, None)
        if len(self.orphans) <= MAX_DIRECT_FETCH_GAP:
            self.request_blocks(peer, [block.header.prev_hash])
        else:
            self.request_headers(peer)

    async def on_not_found(self, peer: Peer, message: NotFound) -> None:
        for block_hash in message.hashes:
            if block_hash in peer.in_flight:
                peer.in_flight.discard(block_hash)
                self.in_flight.pop(block_hash, None)
                self.tree.remove_source(block_hash, peer.member_id)
                self.tree.requeue([block_hash])
        self.schedule()

    async def on_get_headers(self, peer: Peer, message: GetHeaders) -> None:
        headers = await self.backend.get_headers_after(message.locator, MAX_HEADERS_PER_MESSAGE)
        peer.send(Headers(tuple(headers)))

    async def on_get_blocks(self, peer: Peer, message: GetBlocks) -> None:
        await send_blocks(peer, self.backend, message.hashes)

    # ------------------------------------------------------------- peers
    def on_peer_connected(self, peer: Peer) -> None:
        self.request_headers(peer)

    def on_peer_gone(self, peer: Peer) -> None:
        self._return_in_flight(peer)
        self.tree.forget_peer(peer.member_id)
        for other in self.get_peers():
            if other is not peer and other.best_height > self.backend.height and other.headers_requested_at is None:
                self.request_headers(other)
        self.schedule()

    def _return_in_flight(self, peer: Peer) -> None:
        for block_hash in peer.in_flight:
            self.in_flight.pop(block_hash, None)
        self.tree.requeue(peer.in_flight)
        peer.in_flight.clear()

    def find_stalled_peers(self, now: float) -> list[Peer]:
        stalled = []
        for peer in self.get_peers():
            late_headers = peer.headers_requested_at is not None and now - peer.headers_requested_at > REQUEST_TIMEOUT_S
            late_blocks = any(self.in_flight[h].deadline < now for h in peer.in_flight if h in self.in_flight)
            if late_headers or late_blocks:
                stalled.append(peer)
        return stalled

    # ------------------------------------------------------------- download scheduling
    def schedule(self) -> None:
        max_height = self.backend.height + BLOCK_DOWNLOAD_WINDOW
        for peer in sorted(self.get_peers(), key=lambda p: len(p.in_flight)):
            while peer.closing is None:
                room = min(MAX_BLOCKS_IN_FLIGHT_PER_PEER - len(peer.in_flight), BLOCKS_PER_GET_BLOCKS)
                if room <= 0:
                    break
                hashes = self.tree.take_wanted(room, max_height, functools.partial(self._can_fetch, peer))
                if not hashes:
                    break
                self.request_blocks(peer, hashes)

    def _can_fetch(self, peer: Peer, block_hash: bytes) -> bool | None:
        if block_hash in self.in_flight or block_hash in self.received or self.backend.has_block(block_hash):
            return None
        return peer.member_id in self.tree.sources.get(block_hash, ())

    # ------------------------------------------------------------- connecting
    async def run_connector(self) -> None:
        """Hand runs of received blocks whose parent is connected to the chain, until cancelled."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while batch := self._take_connectable():
                await self._connect(batch)
                self.schedule()

    def _take_connectable(self) -> list[Received]:
        roots = [r for r in self.received.values() if self.backend.has_block(r.block.header.prev_hash)]
        if not roots:
            return []
        batch = [min(roots, key=lambda r: r.block.height)]
        children = self._children_index()
        while len(batch) < CONNECT_BATCH_BLOCKS:
            child = children.get(batch[-1].block.block_hash)
            if child is None:
                break
            batch.append(child)
        for item in batch:
            del self.received[item.block.block_hash]
            self.orphans.pop(item.block.block_hash, None)
        return batch

    def _children_index(self) -> dict[bytes, Received]:
        return {r.block.header.prev_hash: r for r in self.received.values()}

    # ------------------------------------------------------------- progress
    def get_best_known_height(self) -> int:
        """The highest height our peers have told us of (or ours, if higher)."""
        return max([self.backend.height, *(peer.best_height for peer in self.get_peers())])

    def get_progress(self) -> float:
        """Our height / the best height known from peers: 1.0 when in sync."""
        best_known = self.get_best_known_height()
        return 1.0 if best_known <= 0 else self.backend.height / best_known

    def _log_progress(self) -> None:
        """While behind: a line at the first batch, then one every few seconds (blocks, percent, rate)."""
        now = self.clock()
        elapsed = now - self.progress_logged_at
        best_known = self.get_best_known_height()
        first = self.progress_logged_blocks == 0
        if (elapsed < SYNC_LOG_INTERVAL_S and not first) or self.backend.height >= best_known:
            return
        rate = (self.blocks_connected - self.progress_logged_blocks) / elapsed
        log.info("sync: height %d of %d (%.1f%%), %.0f blocks/s", self.backend.height, best_known,
                 100.0 * self.get_progress(), rate)
        self.progress_logged_at, self.progress_logged_blocks = now, self.blocks_connected

    # ------------------------------------------------------------- connecting
    async def _connect(self, batch: list[Received]) -> None:
        result = await self.backend.add_blocks([r.block for r in batch], source="sync")
        for accepted in result.accepted:
            self.tree.remove(accepted.block_hash)
        self.blocks_connected += len(result.accepted)
        self._log_progress()
        if result.failure is None:
            return
        failed_index = len(result.accepted)
        rest = batch[failed_index + 1:]
        if result.failure == "invalid":
            self._on_invalid(batch[failed_index], result, rest)
        else:
            # A duplicate (it arrived another way) is done with; after a missing parent
            # (a reorg raced us) the block itself waits again too.
            waiting = rest if result.failure == "duplicate" else batch[failed_index:]
            if result.failure == "duplicate":
                self.tree.remove(batch[failed_index].block.block_hash)
            for item in waiting:
                self.received[item.block.block_hash] = item
            self.wakeup.set()

    def _on_invalid(self, item: Received, result: ConnectResult, rest: list[Received]) -> None:
        error = result.error
        code = error.code if error is not None else "invalid"
        if code in MUTATED_BLOCK_CODES:
            self._on_mutated(item, code, rest)
            return
        block_hash = item.block.block_hash
        dropped = [block_hash, *(r.block.block_hash for r in rest), *self.tree.remove_descendants(block_hash)]
        self.tree.remove(block_hash)
        for other in dropped:
            self.tree.remove(other)
            self.received.pop(other, None)
        if code in NOT_PEER_FAULT_CODES:
            log.info("block %s from %s refused (%s), not the peer's fault", block_hash.hex()[:16], item.source.hex()[:8], code)
            return
        for other in dropped:
            self.rejected[other] = code
        while len(self.rejected) > MAX_REJECTED_HASHES:
            self.rejected.popitem(last=False)
        self.punish(item.source, f"invalid-block:{code}")

    def _on_mutated(self, item: Received, code: str, rest: list[Received]) -> None:
        """A copy whose body or signature does not match its header: blame the sender, not the hash.

        The header (and its descendants) stay wanted; the genuine block is fetched
        from another peer that has it, and nothing is remembered as invalid.
        """
        block_hash = item.block.block_hash
        for waiting in rest:
            self.received[waiting.block.block_hash] = waiting
        self.tree.remove_source(block_hash, item.source)
        if block_hash in self.tree:
            self.tree.requeue([block_hash])
        log.warning("mutated copy of block %s from %s (%s): fetching it from another peer", block_hash.hex()[:16],
                    item.source.hex()[:8], code)
        self.punish(item.source, f"mutated-block:{code}")
        self._refetch_elsewhere(block_hash, item.source)
        self.schedule()

    def _refetch_elsewhere(self, block_hash: bytes, bad_source: bytes) -> None:
        """Every other peer that announced (or was told of) the hash becomes a source for it."""
        others = [p for p in self.get_peers() if p.member_id != bad_source and p.closing is None and p.knows(block_hash)]
        if block_hash in self.tree:
            for peer in others:
                self.tree.add_source(block_hash, peer.member_id)
        elif others and block_hash not in self.in_flight:
            self.request_blocks(others[0], [block_hash])
