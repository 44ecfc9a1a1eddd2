"""Sync decisions with a fake chain: who gets punished for a refused block, and what is dropped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from consensus.errors import ValidationError
from consensus.types import Block
from network.backend import AcceptedBlock, ConnectResult
from network.sync import BlockSync, Received
from tests.support.builders import build_branch, make_chain, make_member

MINER = make_member("Miner", 11)
PARAMS, GENESIS = make_chain([MINER])
BLOCKS = build_branch(GENESIS, 0, MINER, 3)
SENDER = b"s" * 16


class RefusingBackend:
    """Accepts the first block of a batch and refuses the second with ``code``."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.known = {GENESIS.block_hash}
        self.params = PARAMS
        self.chain_id = GENESIS.block_hash

    @property
    def height(self) -> int:
        return len(self.known) - 1

    def has_block(self, block_hash: bytes) -> bool:
        return block_hash in self.known

    async def add_blocks(self, blocks: Sequence[Block], source: Any) -> ConnectResult:
        self.known.add(blocks[0].block_hash)
        accepted = [AcceptedBlock(blocks[0].block_hash, blocks[0].height, True)]
        return ConnectResult(accepted, blocks[1].block_hash, "invalid", ValidationError(self.code))


@pytest.mark.parametrize("code, punished", [("time-too-old", True), ("time-too-new", False)])
async def test_refused_block_punishes_only_when_it_is_the_peers_fault(code: str, punished: bool) -> None:
    punishments: list[tuple[bytes, str]] = []
    sync = BlockSync(RefusingBackend(code), lambda: [], lambda member, reason: punishments.append((member, reason)))  # type: ignore[arg-type]
    for block in BLOCKS:
        sync.tree.add(block.header, SENDER)
    await sync._connect([Received(block, SENDER) for block in BLOCKS])
    assert punishments == ([(SENDER, f"invalid-block:{code}")] if punished else [])
    # The refused block and everything built on it are gone, never left waiting.
    assert len(sync.tree) == 0 and not sync.received
    assert (BLOCKS[1].block_hash in sync.rejected) is punished
    assert (BLOCKS[2].block_hash in sync.rejected) is punished


@pytest.mark.parametrize("code", ["bad-signature", "bad-merkle", "empty-block", "block-too-large"])
async def test_mutated_copy_punishes_the_sender_but_never_marks_the_hash(code: str) -> None:
    punishments: list[tuple[bytes, str]] = []
    sync = BlockSync(RefusingBackend(code), lambda: [], lambda member, reason: punishments.append((member, reason)))  # type: ignore[arg-type]
    for block in BLOCKS:
        sync.tree.add(block.header, SENDER)
    await sync._connect([Received(block, SENDER) for block in BLOCKS])
    assert punishments == [(SENDER, f"mutated-block:{code}")]
    # The header stays wanted (from someone else), its child waits for it, nothing is remembered as invalid.
    assert BLOCKS[1].block_hash in sync.tree and SENDER not in sync.tree.sources[BLOCKS[1].block_hash]
    assert set(sync.received) == {BLOCKS[2].block_hash}
    assert not sync.rejected


class NullPeer:
    member_id = SENDER
    closing = None

    def __init__(self) -> None:
        self.in_flight: set[bytes] = set()
        self.sent: list[object] = []
        self.headers_requested_at = None

    def send(self, message: object) -> None:
        self.sent.append(message)


def test_orphan_pool_is_bounded_and_evicts_the_oldest() -> None:
    from network.constants import MAX_ORPHAN_BLOCKS

    backend = RefusingBackend("bad-signature")
    backend.get_locator = lambda: [GENESIS.block_hash]  # type: ignore[attr-defined]
    sync = BlockSync(backend, lambda: [], lambda member, reason: None)  # type: ignore[arg-type]
    peer = NullPeer()
    orphans = build_branch(BLOCKS[-1], 0, MINER, 2 * (MAX_ORPHAN_BLOCKS + 5))[1::2]  # every parent missing
    for block in orphans:
        sync.received[block.block_hash] = Received(block, SENDER)
        sync._on_orphan(peer, block)  # type: ignore[arg-type]
    assert len(sync.orphans) <= MAX_ORPHAN_BLOCKS
    assert orphans[0].block_hash not in sync.received  # the oldest went first
    assert orphans[-1].block_hash in sync.received
