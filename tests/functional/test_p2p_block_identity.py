"""A mutated copy of a valid block never blocks the genuine block nor bans its forwarder.

The block hash covers the header only; the miner's signature and the body are
checked against it. Issue 12 (3): a member sent a copy of a valid block with a
zeroed signature, the node remembered the *hash* as invalid and later banned
the honest member forwarding the genuine block (``builds-on-invalid``).

Plan:
1. Honest node A holds a valid 3-block chain; target node T is at genesis.
2. Rogue member P announces A's first block to T and serves a copy with the
   miner signature zeroed; rogue Q does the same for the second block with
   its records stripped. Each rogue is banned for a mutated block.
3. A connects to T: T syncs A's genuine chain, bans nobody else and stays
   connected to A.
"""

from __future__ import annotations

from pathlib import Path

from consensus.types import Block
from network.messages import Announce, Blocks, GetBlocks
from tests.support.builders import make_member
from tests.support.network import FakePeer, TestNetwork, build_chain, connect_nodes, sync_blocks, wait_until


async def serve_copy(fake: FakePeer, genuine: Block, copy: Block) -> None:
    await fake.send(Announce(genuine.block_hash, genuine.height))
    request = await fake.receive(GetBlocks)
    assert genuine.block_hash in request.hashes
    await fake.send(Blocks((copy.encoded,)))
    await fake.wait_closed()
    await fake.close()


async def test_poisoned_copy_never_blocks_the_genuine_block(tmp_path: Path) -> None:
    rogues = [make_member("Rogue P"), make_member("Rogue Q")]
    network = TestNetwork.create(tmp_path, 2, extra_members=[r.member for r in rogues])
    honest, target = network.nodes
    genesis = network.genesis
    assert genesis is not None
    blocks = build_chain(network, honest, 3, others=rogues)  # four members: three must take turns
    network.preload(0, blocks)
    await network.start()
    bans = target.network.bans
    try:
        # 2. two mutated copies, from two rogue members on their own addresses
        copies = [
            Block(blocks[0].header, bytes(64), blocks[0].records),  # zeroed miner signature
            Block(blocks[0].header, blocks[0].signature, ()),  # records stripped
        ]
        for number, (rogue, copy) in enumerate(zip(rogues, copies, strict=True)):
            fake = FakePeer(rogue, genesis, local_host=f"127.0.0.{20 + number}")
            assert await fake.open(target) == 101
            await fake.handshake()
            await serve_copy(fake, blocks[0], copy)
            ban = bans.get_ban(member_id=rogue.member_id)
            assert ban is not None and ban.reason.startswith("mutated-block:"), ban
        assert bans.get_ban(member_id=rogues[0].member_id).reason == "mutated-block:bad-signature"  # type: ignore[union-attr]
        assert bans.get_ban(member_id=rogues[1].member_id).reason == "mutated-block:empty-block"  # type: ignore[union-attr]
        assert blocks[0].block_hash not in target.network.sync.rejected

        # 3. the honest forwarder of the genuine blocks is served, not banned
        await connect_nodes(target, honest)
        await sync_blocks(network.nodes)
        assert target.tip_hash == blocks[-1].block_hash
        assert not bans.is_banned(member_id=honest.identity.member_id)
        await wait_until(lambda: honest.identity.member_id in target.connected_peer_ids(), 10, "A still connected")
    finally:
        await network.stop()
