"""A 2|2 partition: both sides keep working, then heal and converge.

Plan:
1. Four nodes in a full mesh agree on a first block.
2. Split into {0, 1} and {2, 3}; each side adds records (side A more blocks
   than side B) and converges internally on its own tip.
3. Heal (0-2, 1-3). All nodes converge on one tip with at least the work of
   either side's tip, and every record from both sides is on it: the losing
   side's records went back to their creators' pending pools and were mined
   again.
4. Deep fork: a site isolated long enough to pass max_reorg_depth on its own
   rejoins; the consortium keeps its branch (refusing the long one without
   banning anyone) and the site's records are re-mined onto it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.network import (
    TestNetwork, connect_all, connect_nodes, disconnect_nodes, sync_blocks, wait_for_records, wait_until,
)


async def test_partition_then_heal_keeps_every_record(tmp_path: Path) -> None:
    network = TestNetwork.create(tmp_path, 4)
    await network.start()
    try:
        nodes = network.nodes
        await connect_all(nodes)
        first = await nodes[0].add_record()
        await wait_for_records(nodes, [first.record_id])
        await sync_blocks(nodes)

        side_a, side_b = nodes[:2], nodes[2:]
        for a in side_a:
            for b in side_b:
                await disconnect_nodes(a, b)
        records_a = []
        for _ in range(3):  # one after another: three blocks on side A
            records_a.append(await side_a[0].add_record())
            await wait_for_records(side_a, [records_a[-1].record_id])
        records_b = list(await asyncio.gather(side_b[0].add_record(), side_b[1].add_record()))
        await wait_for_records(side_b, [r.record_id for r in records_b])
        await sync_blocks(side_a)
        await sync_blocks(side_b)
        assert side_a[0].tip_hash != side_b[0].tip_hash
        work_before = max(side_a[0].view.tip.chain_work, side_b[0].view.tip.chain_work)

        await connect_nodes(nodes[0], nodes[2])
        await connect_nodes(nodes[1], nodes[3])
        every_record = [first, *records_a, *records_b]
        await wait_for_records(nodes, [r.record_id for r in every_record], timeout=60)
        await sync_blocks(nodes)
        assert nodes[0].view.tip.chain_work >= work_before
        await wait_until(lambda: all(n.view.pending_count == 0 for n in nodes), 30, "pending pools to empty")
    finally:
        await network.stop()


async def test_isolated_site_with_a_long_branch_rejoins_the_consortium(tmp_path: Path) -> None:
    """Deep fork (max_reorg_depth 5): node 0 alone mines 8 blocks; nodes 1 and 2 mine 6, alternating.

    Both branches pass the depth limit, so the consortium's branch (2 distinct
    miners) beats node 0's (1 miner) whatever order blocks arrive in: the
    others refuse node 0's branch as `reorg-too-deep` without banning anyone,
    and node 0 follows the consortium and re-mines its 8 records there.
    """
    network = TestNetwork.create(tmp_path, 4, max_reorg_depth=5)
    await network.start()
    try:
        isolated, *consortium = network.nodes
        await connect_all(consortium)
        own_records, others = [], []
        for _ in range(8):
            own_records.append(await isolated.add_record())
            await wait_for_records([isolated], [own_records[-1].record_id])
        for turn in range(6):
            others.append(await consortium[turn % 2].add_record())
            await wait_for_records(consortium, [others[-1].record_id])
        assert isolated.height == 8 and consortium[0].height == 6

        await connect_nodes(isolated, consortium[0])
        await wait_for_records(network.nodes, [r.record_id for r in own_records + others], timeout=60)
        await sync_blocks(network.nodes)
        # The consortium's six blocks stayed; node 0's records were mined again above them.
        view = isolated.view
        consortium_ids = {node.identity.member_id for node in consortium}
        assert all(view.metas[view.best[h]].miner_id in consortium_ids for h in range(1, 7))
        for record in own_records:
            lookup = await isolated.chain.get_record_evidence(record.record_id)
            assert lookup.meta is not None and lookup.meta.height > 6
        assert all(not node.network.bans.bans for node in network.nodes)
    finally:
        await network.stop()
