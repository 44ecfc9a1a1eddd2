"""A 3|2 partition: both sides work as far as the signer limit lets them, then heal and converge.

Plan:
1. Five nodes in a full mesh agree on a first block (signer limit 3: a
   member signs at most one of any 3 consecutive blocks; 3 distinct members
   make a block final).
2. Split into {0, 1, 2} and {3, 4}; the majority side adds records in turn
   (three blocks), the minority side adds two (two blocks: it cannot build a
   third, nor finalize anything of its own); each side converges internally.
3. Heal (0-3, 1-4). All nodes converge on one tip with at least the work of
   either side's tip, and every record from both sides is on it: the
   minority's records went back to their creators' pending pools and were
   mined again.
4. An isolated site mines one block and then waits (its next block would
   break the signer limit; its records stay pending); the other three take
   turns. On rejoining, the consortium keeps its final branch (refusing the
   site's block as below-final without banning anyone) and the site's
   records are mined onto it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.network import (
    TestNetwork, connect_all, connect_nodes, disconnect_nodes, sync_blocks, wait_for_records, wait_until,
)


async def test_partition_then_heal_keeps_every_record(tmp_path: Path) -> None:
    network = TestNetwork.create(tmp_path, 5)
    await network.start()
    try:
        nodes = network.nodes
        await connect_all(nodes)
        first = await nodes[0].add_record()
        await wait_for_records(nodes, [first.record_id])
        await sync_blocks(nodes)

        side_a, side_b = nodes[:3], nodes[3:]
        for a in side_a:
            for b in side_b:
                await disconnect_nodes(a, b)
        records_a = []
        for turn in (1, 2, 0):  # one after another, the members in turn: three blocks on side A
            records_a.append(await side_a[turn].add_record())
            await wait_for_records(side_a, [records_a[-1].record_id])
        records_b = list(await asyncio.gather(side_b[0].add_record(), side_b[1].add_record()))
        await wait_for_records(side_b, [r.record_id for r in records_b])
        await sync_blocks(side_a)
        await sync_blocks(side_b)
        assert side_a[0].tip_hash != side_b[0].tip_hash
        work_before = max(side_a[0].view.tip.chain_work, side_b[0].view.tip.chain_work)

        await connect_nodes(nodes[0], nodes[3])
        await connect_nodes(nodes[1], nodes[4])
        every_record = [first, *records_a, *records_b]
        await wait_for_records(nodes, [r.record_id for r in every_record], timeout=60)
        await sync_blocks(nodes)
        assert nodes[0].view.tip.chain_work >= work_before
        await wait_until(lambda: all(n.view.pending_count == 0 for n in nodes), 30, "pending pools to empty")
    finally:
        await network.stop()


async def test_isolated_site_waits_then_rejoins_the_consortium(tmp_path: Path) -> None:
    """Node 0 alone: one block, then its records wait; nodes 1-3 mine 6 blocks in turn (final).

    On rejoining, node 0 follows the consortium (its own block was not final:
    one member), the others refuse node 0's block as below-final without
    banning anyone, and node 0 mines its waiting records on the consortium's
    branch.
    """
    network = TestNetwork.create(tmp_path, 4)
    await network.start()
    try:
        isolated, *consortium = network.nodes
        await connect_all(consortium)
        own_records, others = [await isolated.add_record()], []
        await wait_for_records([isolated], [own_records[0].record_id])
        own_block = isolated.tip_hash
        for _ in range(2):
            own_records.append(await isolated.add_record())
        await wait_until(lambda: isolated.miner.waiting_for_turn == own_block, 30, "node 0 to wait for its turn")
        for turn in range(6):
            others.append(await consortium[turn % 3].add_record())
            await wait_for_records(consortium, [others[-1].record_id])
        assert isolated.height == 1 and isolated.view.pending_count == 2 and consortium[0].height == 6
        assert consortium[0].view.final_height == 4

        await connect_nodes(isolated, consortium[0])
        await wait_for_records(network.nodes, [r.record_id for r in own_records + others], timeout=60)
        await sync_blocks(network.nodes)
        # The consortium's six blocks stayed; node 0's records were mined again above them.
        view = isolated.view
        consortium_ids = {node.identity.member_id for node in consortium}
        assert all(view.metas[view.best[h]].miner_id in consortium_ids for h in range(1, 7))
        assert consortium[0].view.has_block(own_block) and not consortium[0].view.is_on_best_chain(own_block)
        for record in own_records:
            lookup = await isolated.chain.get_record_evidence(record.record_id)
            assert lookup.meta is not None and lookup.meta.height > 6
        assert all(not node.network.bans.bans for node in network.nodes)
    finally:
        await network.stop()
