"""Headers awaiting their bodies, and which peers can serve each one.

Headers-first sync: a header is validated on its own (proof-of-work, member,
difficulty) and against its parent's height before it enters the tree; bodies
are then fetched lowest height first. The tree is bounded by MAX_HEADER_TREE.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from consensus.types import BlockHeader
from network.constants import MAX_HEADER_TREE

SCAN_LIMIT = 4096  # heap entries looked at per scheduling call


class HeaderTree:
    def __init__(self) -> None:
        self.headers: dict[bytes, BlockHeader] = {}
        self.children: dict[bytes, set[bytes]] = {}
        self.sources: dict[bytes, set[bytes]] = {}
        self.wanted: list[tuple[int, bytes]] = []

    def __contains__(self, block_hash: bytes) -> bool:
        return block_hash in self.headers

    def __len__(self) -> int:
        return len(self.headers)

    @property
    def is_full(self) -> bool:
        return len(self.headers) >= MAX_HEADER_TREE

    def get_height(self, block_hash: bytes) -> int | None:
        header = self.headers.get(block_hash)
        return None if header is None else header.height

    def add(self, header: BlockHeader, source: bytes) -> None:
        block_hash = header.block_hash
        if block_hash not in self.headers:
            self.headers[block_hash] = header
            self.children.setdefault(header.prev_hash, set()).add(block_hash)
            heapq.heappush(self.wanted, (header.height, block_hash))
        self.sources.setdefault(block_hash, set()).add(source)

    def add_source(self, block_hash: bytes, source: bytes) -> None:
        if block_hash in self.headers:
            self.sources.setdefault(block_hash, set()).add(source)

    def remove_source(self, block_hash: bytes, source: bytes) -> None:
        self.sources.get(block_hash, set()).discard(source)

    def forget_peer(self, source: bytes) -> None:
        for members in self.sources.values():
            members.discard(source)

    def requeue(self, block_hashes: Iterable[bytes]) -> None:
        for block_hash in block_hashes:
            header = self.headers.get(block_hash)
            if header is not None:
                heapq.heappush(self.wanted, (header.height, block_hash))

    def remove(self, block_hash: bytes) -> None:
        """The body was connected (or dropped): forget the header."""
        header = self.headers.pop(block_hash, None)
        self.sources.pop(block_hash, None)
        if header is not None:
            siblings = self.children.get(header.prev_hash)
            if siblings is not None:
                siblings.discard(block_hash)
                if not siblings:
                    del self.children[header.prev_hash]

    def remove_descendants(self, block_hash: bytes) -> list[bytes]:
        """Drop every header built on ``block_hash`` (it was invalid); return them."""
        dropped, stack = [], list(self.children.pop(block_hash, ()))
        while stack:
            child = stack.pop()
            stack.extend(self.children.pop(child, ()))
            self.remove(child)
            dropped.append(child)
        return dropped

    def take_wanted(self, count: int, max_height: int, can_fetch: Callable[[bytes], bool | None]) -> list[bytes]:
        """Up to ``count`` lowest wanted hashes (at most max_height) that can_fetch accepts.

        Stale heap entries (connected, dropped, in flight, received) are
        discarded here, lazily; entries skipped for this caller go back.
        """
        chosen: list[bytes] = []
        skipped: list[tuple[int, bytes]] = []
        while self.wanted and len(chosen) < count and len(skipped) < SCAN_LIMIT:
            height, block_hash = self.wanted[0]
            if height > max_height:
                break
            heapq.heappop(self.wanted)
            if block_hash not in self.headers:
                continue
            verdict = can_fetch(block_hash)
            if verdict:
                chosen.append(block_hash)
            elif verdict is None:
                continue
            else:
                skipped.append((height, block_hash))
        for item in skipped:
            heapq.heappush(self.wanted, item)
        return chosen
