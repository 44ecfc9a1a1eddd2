"""No single member can rewrite the chain; a final block is never reorged (issue 12).

Plan:
1. Two honest nodes A and B (members) and a third member X, played by a peer
   speaking the wire protocol (N = 3: a member signs at most one of any 2
   consecutive blocks; a block is final once 2 distinct members mined on it).
   A holds an honest history of 6 blocks (A and B taking turns); B syncs it.
2. The one-member rewrite of issue 12 (101 and 103 blocks in ~0.5 s before):
   X announces a private branch of 103 blocks from genesis, all signed by X,
   and serves whatever headers and blocks B asks for. X's first block is
   valid but forks below B's last final block, so it is stored and never
   best; its second breaks the signer limit: B bans X (signer-limit) and
   keeps its tip.
3. A majority branch with more work (X and B's key taking turns: 10 valid
   blocks from genesis) is served to A: every block is valid and stored, none
   becomes best (each forks below A's last final block), X is not banned.
4. The API reports finality next to confirmations: block 1 is final, with
   the distinct members that mined on it and the 2 needed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from consensus.types import Block
from harness.util import OWN_NODE_TLS
from network.messages import Announce, Blocks, GetBlocks, GetHeaders, Headers
from tests.support.builders import build_branch, make_member
from tests.support.network import FakePeer, TestNetwork, TestNode, build_chain, connect_nodes, sync_blocks, wait_until

HONEST_LENGTH = 6
REWRITE_LENGTH = 103


async def serve_branch(fake: FakePeer, node: TestNode, branch: list[Block], timeout: float = 60) -> None:
    """Announce the branch's tip, then answer the node's header and block requests until it hangs up or is done."""
    by_hash = {block.block_hash: block for block in branch}
    await fake.send(Announce(branch[-1].block_hash, branch[-1].height))
    try:
        async with asyncio.timeout(timeout):
            while not node.view.has_block(branch[-1].block_hash):
                request = await fake.receive((GetHeaders, GetBlocks), timeout)
                if isinstance(request, GetHeaders):
                    start = next((by_hash[h].height for h in request.locator if h in by_hash), 0)
                    await fake.send(Headers(tuple(b.header.encoded for b in branch[start:])))
                else:
                    await fake.send(Blocks(tuple(by_hash[h].encoded for h in request.hashes if h in by_hash)))
    except ConnectionError:
        return  # the node hung up (a ban)


async def get_json(node: TestNode, path: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(f"{node.base_url}{path}", ssl=OWN_NODE_TLS) as reply:
        assert reply.status == 200, await reply.text()
        return await reply.json()


async def test_one_member_cannot_rewrite_and_final_blocks_stay(tmp_path: Path) -> None:
    attacker = make_member("X (one member)")
    network = TestNetwork.create(tmp_path, 2, extra_members=[attacker.member])
    genesis = network.genesis
    assert genesis is not None
    node_a, node_b = network.nodes
    honest = build_chain(network, node_a, HONEST_LENGTH)
    network.preload(0, honest)
    await network.start()
    try:
        await connect_nodes(node_a, node_b)
        await sync_blocks(network.nodes)
        honest_tip = honest[-1].block_hash
        assert node_b.tip_hash == honest_tip and node_b.view.final_height == HONEST_LENGTH - 1

        # 2. the one-member rewrite, served to B
        rewrite = build_branch(genesis.block, 0, attacker, REWRITE_LENGTH, difficulty=genesis.params.difficulty)
        fake = FakePeer(attacker, genesis, local_host="127.0.0.30")
        assert await fake.open(node_b) == 101
        await fake.handshake()
        await serve_branch(fake, node_b, rewrite)
        await fake.close()
        bans = node_b.network.bans
        await wait_until(lambda: bans.get_ban(member_id=attacker.member_id) is not None, 30, "B to ban X")
        ban = bans.get_ban(member_id=attacker.member_id)
        assert ban is not None and ban.reason == "invalid-block:signer-limit", ban
        assert node_b.tip_hash == honest_tip
        assert not node_b.view.has_block(rewrite[1].block_hash)
        assert not node_b.view.is_on_best_chain(rewrite[0].block_hash)

        # 3. a valid majority branch with more work, served to A: stored, never best
        rival = build_branch(genesis.block, 0, [attacker, node_b.member], 10, difficulty=genesis.params.difficulty)
        fake = FakePeer(attacker, genesis, local_host="127.0.0.31")
        assert await fake.open(node_a) == 101
        await fake.handshake()
        await serve_branch(fake, node_a, rival)
        await fake.close()
        await wait_until(lambda: node_a.view.has_block(rival[-1].block_hash), 30, "A to store the rival branch")
        rival_meta = node_a.view.get_meta(rival[-1].block_hash)
        assert rival_meta is not None and rival_meta.chain_work > node_a.view.tip.chain_work
        assert node_a.tip_hash == honest_tip and not node_a.network.bans.is_banned(member_id=attacker.member_id)

        # 4. finality in the API
        block = await get_json(node_a, "/api/v1/blocks/1")
        assert block["confirmations"] == HONEST_LENGTH
        assert block["finality"] == {"final": True, "distinct_members": 2, "needed": 2}
        tip = await get_json(node_a, f"/api/v1/blocks/{HONEST_LENGTH}")
        assert tip["finality"] == {"final": False, "distinct_members": 1, "needed": 2}
    finally:
        await network.stop()
