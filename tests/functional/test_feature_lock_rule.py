"""The lock rule between real nodes: a race on one parent ends on one final branch; equivocation is evidence.

Plan:
1. Three members, three nodes, no links. Nodes 0 and 1 each mine a block on
   genesis (a race: X and Y). Let W be the one with the lower hash (the tie
   winner) and S the node whose block lost the tie.
2. Node 2 receives S's block only (link, then unlink). S is linked to W's
   miner and sees W as best. A record at S: before the lock S mined it on W
   (W final on two nodes while node 2 extends S's block: the honest-race
   split); now S's miner waits, locked to its own block (``waiting_for_lock``).
3. Node 2 mines a record on S's block and is linked to S: S's block gets its
   second signer (final), S mines its record on that branch, W's miner
   releases its lock (W lies below a final block). All three nodes end on the
   same final chain, W on none; no evidence, no equivocations in /status.
4. The stuck-fork escape: the same race with the third member offline. The
   switcher is locked to its sibling and the winner's miner may not sign
   twice in a row: nobody may extend either sibling. Once the best tip is
   ``LOCK_RELEASE_MS`` old the switcher's lock is released (``released-stuck``),
   it mines on the winner, the winner is final on both nodes, and the release
   is not evidence.
5. Equivocation: an extra member signs two blocks on one parent. Fed to node
   0, both are stored; GET /api/v1/chain/evidence lists the pair with header
   bytes and signatures that verify against the member's key; /status counts
   one equivocation; node 1, given the same blocks, holds the same evidence;
   after a restart node 0 re-derives it from its stored blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import time

import aiohttp

from consensus.crypto import BLOCK_DOMAIN, is_signature_valid
from consensus.locks import LOCK_RELEASE_MS, LOCK_RELEASED_STUCK
from consensus.types import BlockHeader
from harness.util import OWN_NODE_TLS
from tests.support.builders import genesis_meta, make_member, make_record, mine_block
from tests.support.network import (
    TestNetwork, TestNode, connect_all, connect_nodes, disconnect_nodes, sync_blocks, wait_for_records, wait_until,
)


async def get_json(node: TestNode, path: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(f"{node.base_url}{path}", ssl=OWN_NODE_TLS) as reply:
        assert reply.status == 200, await reply.text()
        return await reply.json()


async def test_a_race_on_one_parent_ends_on_one_final_branch(tmp_path: Path) -> None:
    network = TestNetwork.create(tmp_path, 3)
    await network.start()
    try:
        nodes = network.nodes
        racers = nodes[:2]
        records = [await node.add_record() for node in racers]
        for node, record in zip(racers, records, strict=True):
            await wait_for_records([node], [record.record_id])
        blocks = [node.tip_hash for node in racers]
        winner = min(range(2), key=lambda i: blocks[i])
        switcher, other, third = racers[1 - winner], racers[winner], nodes[2]
        lost, won = blocks[1 - winner], blocks[winner]

        # 2. node 2 gets the losing sibling only; the switcher sees the winner as best and holds its record.
        await connect_nodes(third, switcher)
        await wait_until(lambda: third.view.has_block(lost), 30, "node 2 to receive the switcher's block")
        await disconnect_nodes(third, switcher)
        await connect_nodes(switcher, other)
        await wait_until(lambda: switcher.tip_hash == won and other.view.has_block(lost), 30, "the two siblings to meet")
        held = await switcher.add_record()
        await wait_until(lambda: switcher.miner.waiting_for_lock == won, 30, "the switcher to wait on its lock")
        assert switcher.tip_hash == won and switcher.height == 1

        # 3. node 2 extends the switcher's block; the switcher follows it and mines its record there.
        extension = await third.add_record()
        await wait_for_records([third], [extension.record_id])
        await connect_nodes(third, switcher)
        await connect_nodes(third, other)
        every = [*records, held, extension]
        await wait_for_records(nodes, [r.record_id for r in every], timeout=60)
        await sync_blocks(nodes)
        for node in nodes:
            view = node.view
            assert view.best[1] == lost and view.final_height >= 1 and not view.is_on_best_chain(won)
            assert view.best[: view.final_height + 1] == nodes[0].view.best[: view.final_height + 1]
            assert not view.evidence
            assert (await get_json(node, "/api/v1/status"))["equivocations"] == 0
        assert not switcher.miner.lock_releases  # it never had to leave its own branch
    finally:
        await network.stop()


async def test_a_stuck_race_is_released_after_the_lock_delay(tmp_path: Path) -> None:
    network = TestNetwork.create(tmp_path, 3)
    await network.start([0, 1])  # node 2 stays offline: exactly L = 2 members online
    try:
        racers = network.nodes[:2]
        records = [await node.add_record() for node in racers]
        for node, record in zip(racers, records, strict=True):
            await wait_for_records([node], [record.record_id])
        blocks = [node.tip_hash for node in racers]
        winner = min(range(2), key=lambda i: blocks[i])
        switcher, other = racers[1 - winner], racers[winner]
        won = blocks[winner]
        await connect_nodes(switcher, other)
        await wait_until(lambda: switcher.tip_hash == won, 30, "the switcher to see the winning sibling")
        held = [await node.add_record() for node in racers]
        await wait_until(lambda: switcher.miner.waiting_for_lock == won, 30, "the switcher to wait on its lock")
        release_at_s = (switcher.view.tip.timestamp_ms + LOCK_RELEASE_MS) / 1000
        await wait_for_records(racers, [r.record_id for r in held], timeout=LOCK_RELEASE_MS / 1000 + 60)
        assert time.time() >= release_at_s  # nobody could sign before the release
        await sync_blocks(racers)
        assert switcher.miner.lock_releases.get(LOCK_RELEASED_STUCK) == 1
        for node in racers:
            assert node.view.best[1] == won and node.view.final_height >= 1 and not node.view.evidence
    finally:
        await network.stop()


async def test_an_equivocating_member_is_shown_as_evidence(tmp_path: Path) -> None:
    equivocator = make_member("E (equivocates)")
    network = TestNetwork.create(tmp_path, 2, extra_members=[equivocator.member])
    genesis = network.genesis
    assert genesis is not None
    await network.start()
    try:
        first, second = network.nodes
        await connect_all(network.nodes)
        parent = genesis_meta(genesis.block)
        pair = [mine_block(parent, equivocator, [make_record(equivocator)], difficulty=genesis.params.difficulty)
                for _ in range(2)]
        for node in network.nodes:  # (a sibling that does not become best is not announced: feed both nodes)
            for block in pair:
                result = await node.chain.add_blocks([block], source="test")
                assert result.failure in (None, "duplicate"), result.error

        hashes = {block.block_hash.hex() for block in pair}
        for node in network.nodes:
            reply = await get_json(node, "/api/v1/chain/evidence")
            assert reply["count"] == 1
            item = reply["evidence"][0]
            assert item["member_id"] == equivocator.member_id.hex() and item["member_name"] == "E (equivocates)"
            assert {b["hash"] for b in item["blocks"]} == hashes and all(b["height"] == 1 for b in item["blocks"])
            for shown in item["blocks"]:
                header = BlockHeader.decode(bytes.fromhex(shown["header_hex"]))
                assert header.block_hash.hex() == shown["hash"]
                assert is_signature_valid(equivocator.member.public_key, bytes.fromhex(shown["signature"]),
                                          BLOCK_DOMAIN, header.block_hash)
            assert (await get_json(node, "/api/v1/status"))["equivocations"] == 1

        await first.stop()
        await first.start()
        assert [(e.first.block_hash.hex(), e.second.block_hash.hex()) for e in first.view.evidence] == [
            tuple(b["hash"] for b in (await get_json(first, "/api/v1/chain/evidence"))["evidence"][0]["blocks"])]
        assert len(first.view.evidence) == 1
    finally:
        await network.stop()
