"""Answering get_blocks: as many frames as needed, each under the frame budget."""

from __future__ import annotations

from collections.abc import Sequence

from network.backend import ChainBackend
from network.constants import MAX_BLOCKS_RESPONSE_BYTES
from network.messages import Blocks, NotFound
from network.peer import Peer


async def send_blocks(peer: Peer, backend: ChainBackend, hashes: Sequence[bytes]) -> None:
    found = await backend.get_blocks(hashes)
    missing = tuple(h for h, raw in zip(hashes, found, strict=False) if raw is None)
    chunk: list[bytes] = []
    size = 0
    for raw in found:
        if raw is None:
            continue
        if chunk and size + len(raw) > MAX_BLOCKS_RESPONSE_BYTES:
            peer.send(Blocks(tuple(chunk)))
            chunk, size = [], 0
        chunk.append(raw)
        size += len(raw)
    if chunk:
        peer.send(Blocks(tuple(chunk)))
    if missing:
        peer.send(NotFound(missing))
