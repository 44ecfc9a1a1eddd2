"""Four nodes, records added at every node at the same time, all converge.

Plan:
1. Start 4 nodes (difficulty 1) and connect them in a full mesh.
2. Add 3 records at each node concurrently (each node mines its own).
3. All nodes agree on one tip, and every one of the 12 records is on it, and
   each node is still connected to the three others.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.network import TestNetwork, connect_all, sync_blocks, wait_for_records

RECORDS_PER_NODE = 3


async def test_four_nodes_converge_with_concurrent_records(tmp_path: Path) -> None:
    network = TestNetwork.create(tmp_path, 4)
    await network.start()
    try:
        nodes = network.nodes
        await connect_all(nodes)
        records = await asyncio.gather(*(node.add_record() for node in nodes for _ in range(RECORDS_PER_NODE)))
        await wait_for_records(nodes, [r.record_id for r in records], timeout=60)
        await sync_blocks(nodes)
        assert all(node.height >= 1 for node in nodes)
        for node in nodes:
            assert all([await node.has_record_on_best_chain(r.record_id) for r in records])
            assert {p.member_id for p in node.network.get_peers()} == {n.identity.member_id for n in nodes} - {node.identity.member_id}
    finally:
        await network.stop()
