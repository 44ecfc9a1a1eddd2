"""Block announcements: tell peers about our new best tip, never the ones that told us.

Only the tip is announced (a peer that lacks its ancestors fetches them by
headers); a peer that announced a block, sent it, or sent its header is
marked as knowing it and is never told about it again. A block this node
mined itself is pushed whole instead (a `blocks` message of that one block):
every peer needs it and nobody else has it yet, so the announce -> get_blocks
round trip would only add a hop's latency. Blocks of others are announced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from network.backend import AcceptedBlock, ChainBackend
from network.messages import Announce, Blocks
from network.peer import Peer


OWN_BLOCK_SOURCE = "miner"  # the source the node's miner adds its blocks with


class Gossip:
    def __init__(self, backend: ChainBackend, get_peers: Callable[[], Sequence[Peer]]) -> None:
        self.backend = backend
        self.get_peers = get_peers
        self.announcements_sent = 0
        self.blocks_pushed = 0

    async def on_accepted(self, accepted: Sequence[AcceptedBlock], source: Any) -> None:
        if not any(block.tip_changed for block in accepted):
            return
        if source == OWN_BLOCK_SOURCE:
            await self.push_own(accepted[-1])
        self.announce_tip()

    async def push_own(self, block: AcceptedBlock) -> None:
        """Send the block we just mined, whole, to every peer not known to have it."""
        targets = [peer for peer in self.get_peers() if not peer.knows(block.block_hash)]
        if not targets:
            return
        raw = (await self.backend.get_blocks([block.block_hash]))[0]
        if raw is None:
            return  # reorged away meanwhile: the announcement of the new tip follows
        for peer in targets:
            if not peer.knows(block.block_hash):
                peer.mark_known(block.block_hash)
                peer.send(Blocks((raw,)))
                self.blocks_pushed += 1

    def announce_tip(self) -> None:
        view = self.backend.view
        tip_hash, height = view.tip_hash, view.height
        for peer in self.get_peers():
            if not peer.knows(tip_hash):
                peer.mark_known(tip_hash)
                peer.send(Announce(tip_hash, height))
                self.announcements_sent += 1
