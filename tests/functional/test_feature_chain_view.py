"""Readers never see a chain that was not committed, however hard the best chain is switched under them.

1. One node (deep-fork depth 1000, so nothing is refused) and 62 other
   members (63 in all: a block is final once 32 distinct members mined on it,
   so reorgs up to 31 blocks deep can happen); two disjoint groups of 31
   pre-mine two branches from genesis, each member one block (signer limit).
2. The branches are handed to the node's chain service in alternating slices,
   each slice making the other branch win: ROUNDS deep reorgs (3 to ~28
   blocks disconnected). After each commit the driver notes the committed
   (height, tip).
3. Meanwhile HTTP clients hammer GET /api/v1/status and a reader task reads
   the network backend (the view, tip hash, height, locator) in a loop.
4. Every (height, tip) any reader saw is one the driver noted as committed,
   each status reply is internally consistent, and the readers did run during
   the reorgs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from consensus.builders import compute_block_meta
from consensus.types import Block
from tests.support.builders import make_member, mine_block
from harness.util import OWN_NODE_TLS
from tests.support.network import TestNetwork

ROUNDS = 26
FIRST_SLICE = 3
BRANCH_LENGTH = 31  # below the 32 distinct miners that make a block final
HTTP_CLIENTS = 4
X = [make_member(f"Branch X {i}", 7100 + i) for i in range(BRANCH_LENGTH)]
Y = [make_member(f"Branch Y {i}", 7200 + i) for i in range(BRANCH_LENGTH)]


def mine_branch(genesis: Block, member_keys: list, count: int) -> list[Block]:
    blocks, meta = [], compute_block_meta(genesis, 0)
    for i in range(count):
        block = mine_block(meta, member_keys[i % len(member_keys)])
        blocks.append(block)
        meta = compute_block_meta(block, meta.chain_work)
    return blocks


async def test_readers_see_only_committed_best_chains(tmp_path: Path) -> None:
    # The node's miner is off: each reorg returns the losing branch's records to its pending pool (any
    # member may mine them), and blocks it mined would be commits the driver did not note.
    network = TestNetwork.create(tmp_path, 1, extra_members=[m.member for m in X + Y], max_reorg_depth=1000, mine=False)
    assert network.genesis is not None
    branches = [mine_branch(network.genesis.block, X, BRANCH_LENGTH), mine_branch(network.genesis.block, Y, BRANCH_LENGTH)]
    await network.start()
    node = network.nodes[0]
    committed = {(0, network.genesis.block.block_hash)}
    seen: set[tuple[int, bytes]] = set()
    seen_tips: set[bytes] = set()
    reads = {"status": 0, "backend": 0}
    problems: list[str] = []
    done = asyncio.Event()

    async def drive() -> int:
        delivered, side, reorgs = [0, 0], 0, 0
        delivered[0] = FIRST_SLICE
        await node.chain.add_blocks(branches[0][:FIRST_SLICE], source="test")
        committed.add((node.view.height, node.view.tip_hash))
        for _ in range(ROUNDS):
            side = 1 - side
            target = delivered[1 - side] + 1
            result = await node.chain.add_blocks(branches[side][delivered[side]:target], source="test")
            assert result.failure is None, result
            assert all(not r.refused_final for r in result.accepted)
            delivered[side] = target
            reorgs += sum(1 for r in result.accepted if r.reorg is not None)
            view = node.view
            committed.add((view.height, view.tip_hash))
            assert view.tip_hash == branches[side][target - 1].block_hash
        return reorgs

    async def hammer_status(session: aiohttp.ClientSession) -> None:
        url = f"{node.base_url}/api/v1/status"  # HTTPS with the node's own certificate (not verified here)
        while not done.is_set():
            async with session.get(url, ssl=OWN_NODE_TLS) as response:
                status = await response.json()
            reads["status"] += 1
            seen.add((status["height"], bytes.fromhex(status["tip_hash"])))

    async def read_backend() -> None:
        backend = node.network.backend
        while not done.is_set():
            view = backend.view
            seen.add((view.height, view.tip_hash))
            if view.get_locator()[0] != view.tip_hash or view.get_height_of(view.tip_hash) != view.height:
                problems.append(f"view at {view.height} is not consistent with itself")
            tip_hash, height, locator = backend.tip_hash, backend.height, backend.get_locator()
            seen_tips.update((tip_hash, locator[0]))
            if not backend.has_block(tip_hash) or height < 0:
                problems.append(f"tip {tip_hash.hex()} is not a known block")
            reads["backend"] += 1
            await asyncio.sleep(0)

    try:
        async with aiohttp.ClientSession() as session:
            readers = [asyncio.create_task(hammer_status(session)) for _ in range(HTTP_CLIENTS)]
            readers.append(asyncio.create_task(read_backend()))
            try:
                reorgs = await drive()
            finally:
                done.set()
                await asyncio.gather(*readers)
    finally:
        await network.stop()
    assert reorgs == ROUNDS
    assert not problems, problems[:5]
    uncommitted = seen - committed
    assert not uncommitted, sorted((h, t.hex()[:16]) for h, t in uncommitted)[:5]
    assert not seen_tips - {tip for _, tip in committed}
    assert reads["status"] >= ROUNDS and reads["backend"] >= ROUNDS, reads
