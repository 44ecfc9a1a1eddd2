"""Block announcements: tell peers about our new best tip, never the ones that told us.

Only the tip is announced (a peer that lacks its ancestors fetches them by
headers); a peer that announced a block, sent it, or sent its header is
marked as knowing it and is never told about it again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from network.backend import AcceptedBlock, ChainBackend
from network.messages import Announce
from network.peer import Peer


class Gossip:
    def __init__(self, backend: ChainBackend, get_peers: Callable[[], Sequence[Peer]]) -> None:
        self.backend = backend
        self.get_peers = get_peers
        self.announcements_sent = 0

    async def on_accepted(self, accepted: Sequence[AcceptedBlock], source: Any) -> None:
        if not any(block.tip_changed for block in accepted):
            return
        self.announce_tip()

    def announce_tip(self) -> None:
        view = self.backend.view
        tip_hash, height = view.tip_hash, view.height
        for peer in self.get_peers():
            if not peer.knows(tip_hash):
                peer.mark_known(tip_hash)
                peer.send(Announce(tip_hash, height))
                self.announcements_sent += 1
