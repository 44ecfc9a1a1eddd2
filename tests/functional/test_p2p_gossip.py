"""Gossip never sends a block back to the peer that announced it.

Plan:
1. Node 0 and node 1 are connected; a peer speaking the wire protocol (a
   genesis member, "the announcer") connects to node 0.
2. The announcer announces a valid block it mined and serves it when asked.
3. Node 0 accepts it and announces it to node 1, which fetches it.
4. Node 0 never announced that block to the announcer (checked after a
   ping/pong round trip, since frames on a connection arrive in order).
5. Orphans: an announced block three heights ahead is fetched, then each
   missing parent from the same peer, and all connect.
"""

from __future__ import annotations

from pathlib import Path

from network.messages import Announce, Blocks, GetBlocks, Ping, Pong
from tests.support.builders import build_branch, make_member, mine_block
from tests.support.network import FakePeer, TestNetwork, connect_nodes, sync_blocks, wait_until


async def test_block_is_not_announced_back_to_its_announcer(tmp_path: Path) -> None:
    announcer = make_member("Announcer")
    network = TestNetwork.create(tmp_path, 2, extra_members=[announcer.member])
    await network.start()
    node, other = network.nodes
    assert network.genesis is not None
    fake = FakePeer(announcer, network.genesis)
    try:
        await connect_nodes(node, other)
        await fake.open(node)
        await fake.handshake()
        block = mine_block(node.view.tip, announcer, difficulty=network.genesis.params.difficulty)
        await fake.send(Announce(block.block_hash, block.height))
        assert (await fake.receive(GetBlocks)).hashes == (block.block_hash,)
        await fake.send(Blocks((block.encoded,)))
        await wait_until(lambda: other.tip_hash == block.block_hash, 30, "node 1 to get the block from node 0")
        await sync_blocks(network.nodes)

        await fake.send(Ping(42))
        assert (await fake.receive(Pong)).nonce == 42
        echoed = [m for m in fake.received if isinstance(m, Announce) and m.block_hash == block.block_hash]
        assert echoed == []
        peer_of_other = other.network.peers[node.identity.member_id]
        assert peer_of_other.knows(block.block_hash)  # node 1 heard of it from node 0
    finally:
        await fake.close()
        await network.stop()


async def test_orphan_block_parents_are_fetched_not_dropped(tmp_path: Path) -> None:
    announcer = make_member("Announcer")
    network = TestNetwork.create(tmp_path, 1, extra_members=[announcer.member])
    await network.start()
    node = network.nodes[0]
    assert network.genesis is not None
    fake = FakePeer(announcer, network.genesis)
    try:
        await fake.open(node)
        await fake.handshake()
        difficulty = network.genesis.params.difficulty
        # Two members: the announcer and the node's member take turns (signer limit).
        blocks = build_branch(network.genesis.block, 0, [announcer, node.member], 3, difficulty=difficulty)
        await fake.send(Announce(blocks[-1].block_hash, blocks[-1].height))
        for block in reversed(blocks):  # the node asks for the tip, then each missing parent
            assert (await fake.receive(GetBlocks)).hashes == (block.block_hash,)
            await fake.send(Blocks((block.encoded,)))
        await wait_until(lambda: node.tip_hash == blocks[-1].block_hash, 30, "the orphans to connect")
        assert not node.network.sync.orphans and not node.network.sync.received
    finally:
        await fake.close()
        await network.stop()
