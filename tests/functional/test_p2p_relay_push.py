"""A lone uploading site is mined at once: creator first, relay-only members skipped, own blocks pushed whole.

Plan:
1. Three nodes in a full mesh, node 0 relay-only (``mine: false``): its hello
   says it does not mine, so nodes 1 and 2 list it as non-mining and it lists
   nobody.
2. Node 1 uploads records one at a time: each is mined by node 1 itself
   (its creator, whenever the signer limit lets it sign) or, right after its
   own block, carried by node 2 (node 0 is skipped in the line, never waited
   for); every record reaches every node once. Each block reaches the others
   as a pushed ``blocks`` message (no announce -> get_blocks round trip).
3. Node 0 uploads: every record is carried by node 1 or 2, once.
4. (A second network, all three mining.) Node 0 uploads records one at a
   time: once node 0 has seen another member's recent block (a majority
   signing), every block holding one is node 0's whenever the signer limit
   lets node 0 sign (its parent is not node 0's), whoever is in turn;
   otherwise a member in turn carries it.
5. (A third network: one node and two fake members.) A fake member pushes
   an unrequested block mined by the other fake: ignored, no ban. It pushes
   its own valid block: taken. The other fake pushes its own block with bad
   proof-of-work: banned ``invalid-block:bad-pow``, exactly as for a
   requested block.
6. (A fourth network: one relay-only node and two fake members.) One fake
   member floods records in its own name, past its share of the pending pool
   (1/3 with three members): the rest are refused ``pending-share-full``, it
   is not banned, and the other fake member's records still enter.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from dataclasses import replace
from pathlib import Path

from consensus.crypto import BLOCK_DOMAIN, sign
from consensus.pow import is_pow_valid
from consensus.types import Block
from network.constants import MAX_RECORDS_PER_MESSAGE
from network.messages import Blocks, Ping, Pong, Records
from node.pending import MAX_PENDING_RECORDS, compute_share
from tests.support.builders import MemberKeys, make_member, make_record, mine_block
from tests.support.network import FakePeer, TestNetwork, TestNode, connect_all, sync_blocks, wait_for_records, wait_until

TIMEOUT_S = 60.0  # generous: two shared cores


async def get_miners(node: TestNode) -> tuple[Counter[bytes], dict[bytes, bytes]]:
    """How often each record id sits on the node's best chain, and the miner of the block holding it."""
    blocks = await node.chain.get_blocks(list(node.view.best[1:]))
    counts: Counter[bytes] = Counter(r.record_id for block in blocks for r in block.records)
    miners = {r.record_id: block.header.miner_id for block in blocks for r in block.records}
    return counts, miners


async def test_lone_uploader_mines_first_and_relay_only_members_are_skipped(tmp_path: Path) -> None:
    network = TestNetwork.create(tmp_path, 3)
    network.configure(0, mine=False)
    await network.start()
    relay_only, creator, other = network.nodes
    ids = [node.identity.member_id for node in network.nodes]
    try:
        await connect_all(network.nodes)

        # 1. the hello's mines flag
        assert creator.network.get_non_mining_members() == {ids[0]}
        assert other.network.get_non_mining_members() == {ids[0]}
        assert relay_only.network.get_non_mining_members() == frozenset()

        # 2. a lone uploading member that mines: its own blocks when it may sign, node 2's right after
        own = []
        for _ in range(6):
            own.append(await creator.add_record())
            await wait_for_records(network.nodes, [own[-1].record_id], TIMEOUT_S)
        counts, miners = await get_miners(creator)
        assert all(counts[r.record_id] == 1 for r in own)
        assert {miners[r.record_id] for r in own} <= {ids[1], ids[2]}
        assert sum(miners[r.record_id] == ids[1] for r in own) >= 3  # at least every other block: creator first
        await sync_blocks(network.nodes, TIMEOUT_S)
        assert creator.network.gossip.blocks_pushed >= 2
        assert relay_only.network.sync.pushed_blocks_received >= 3
        assert relay_only.network.peers[ids[1]].best_height >= 1  # a pushed block tells its sender's height

        # 3. the relay-only member's records are carried by the two that mine
        carried = [await relay_only.add_record() for _ in range(4)]
        await wait_for_records(network.nodes, [r.record_id for r in carried], TIMEOUT_S)
        await sync_blocks(network.nodes, TIMEOUT_S)
        counts, miners = await get_miners(other)
        assert all(counts[r.record_id] == 1 for r in [*own, *carried])
        assert {miners[r.record_id] for r in carried} <= {ids[1], ids[2]}
        assert relay_only.miner.blocks_mined == 0
    finally:
        await network.stop()


async def test_creator_mines_its_own_record_whenever_it_may_sign(tmp_path: Path) -> None:
    network = TestNetwork.create(tmp_path, 3)
    await network.start()
    creator = network.nodes[0]
    me = creator.identity.member_id
    try:
        await connect_all(network.nodes)
        own = []
        for _ in range(8):
            own.append(await creator.add_record())
            await wait_for_records(network.nodes, [own[-1].record_id], TIMEOUT_S)
        await sync_blocks(network.nodes, TIMEOUT_S)
        blocks = await creator.chain.get_blocks(list(creator.view.best[1:]))
        # From height 3 on: by then node 0 has seen another member's recent block (creator-first needs
        # evidence that a majority is signing; until then its records wait in the line).
        for parent, block in pairwise(blocks[1:]):
            assert (block.header.miner_id == me) == (parent.header.miner_id != me), f"height {block.height}"
        counts, _ = await get_miners(creator)
        assert all(counts[r.record_id] == 1 for r in own)
    finally:
        await network.stop()


def with_bad_pow(block: Block, member: MemberKeys, difficulty: int) -> Block:
    header = block.header
    nonce = header.nonce + 1
    while is_pow_valid(replace(header, nonce=nonce).block_hash, difficulty):
        nonce += 1
    header = replace(header, nonce=nonce)
    return Block(header, sign(member.key, BLOCK_DOMAIN, header.block_hash), block.records)


async def open_fake(node: TestNode, network: TestNetwork, member: MemberKeys, host: str) -> FakePeer:
    assert network.genesis is not None
    fake = FakePeer(member, network.genesis, local_host=host)
    assert await fake.open(node) == 101
    await fake.handshake()
    return fake


async def round_trip(fake: FakePeer, nonce: int) -> None:
    """Wait until the node has handled everything the fake sent before (it answers in order)."""
    await fake.send(Ping(nonce))
    assert (await fake.receive(Pong, TIMEOUT_S)).nonce == nonce


async def test_pushed_blocks_only_from_their_miner_and_invalid_ones_still_ban(tmp_path: Path) -> None:
    rogues = [make_member(f"Rogue {i}") for i in range(2)]
    network = TestNetwork.create(tmp_path, 1, extra_members=[r.member for r in rogues])
    await network.start()
    node = network.nodes[0]
    difficulty = node.chain.params.difficulty
    try:
        pusher = await open_fake(node, network, rogues[0], "127.0.0.2")
        others_block = mine_block(node.view.tip, rogues[1], difficulty=difficulty)
        await pusher.send(Blocks((others_block.encoded,)))
        await round_trip(pusher, 1)
        assert not node.view.has_block(others_block.block_hash)  # not its own block, not asked for: ignored
        assert not node.network.bans.is_banned(member_id=rogues[0].member_id)

        own_block = mine_block(node.view.tip, rogues[0], difficulty=difficulty)
        await pusher.send(Blocks((own_block.encoded,)))
        await wait_until(lambda: node.view.has_block(own_block.block_hash), TIMEOUT_S, "the pushed block to be taken")
        assert node.network.sync.pushed_blocks_received == 1
        await pusher.close()

        cheat = await open_fake(node, network, rogues[1], "127.0.0.3")
        bad = with_bad_pow(mine_block(node.view.tip, rogues[1], difficulty=difficulty), rogues[1], difficulty)
        await cheat.send(Blocks((bad.encoded,)))
        await cheat.wait_closed()
        await cheat.close()
        ban = node.network.bans.get_ban(member_id=rogues[1].member_id)
        assert ban is not None and ban.reason == "invalid-block:bad-pow"
        assert not node.view.has_block(bad.block_hash)
    finally:
        await network.stop()


async def test_a_flooding_member_fills_only_its_share_of_the_pool(tmp_path: Path) -> None:
    rogues = [make_member(f"Rogue {i}") for i in range(2)]
    network = TestNetwork.create(tmp_path, 1, extra_members=[r.member for r in rogues])
    network.configure(0, mine=False)  # the pool only fills: nothing leaves it in a block
    await network.start()
    node = network.nodes[0]
    share = compute_share(MAX_PENDING_RECORDS, 3)
    try:
        flooder = await open_fake(node, network, rogues[0], "127.0.0.2")
        flood = [make_record(rogues[0]).encoded for _ in range(share + 150)]
        for start in range(0, len(flood), MAX_RECORDS_PER_MESSAGE):
            await flooder.send(Records(tuple(flood[start:start + MAX_RECORDS_PER_MESSAGE])))
        await round_trip(flooder, 1)
        relay = node.network.relay
        assert relay.records_refused == {"pending-share-full": 150}
        assert node.view.pending_count == share
        assert not node.network.bans.is_banned(member_id=rogues[0].member_id)
        assert rogues[0].member_id in node.network.peers

        other = await open_fake(node, network, rogues[1], "127.0.0.3")
        await other.send(Records(tuple(make_record(rogues[1]).encoded for _ in range(10))))
        await round_trip(other, 2)
        await wait_until(lambda: node.view.pending_count == share + 10, TIMEOUT_S, "the other member's records")
        await flooder.close()
        await other.close()
    finally:
        await network.stop()
