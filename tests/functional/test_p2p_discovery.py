"""Discovery by bootstrap peers and peer exchange; reconnect with backoff.

Plan:
1. Nodes 1 and 2 have node 0 as their only bootstrap peer (outbound target 8).
2. Node 2 learns node 1's address from node 0 (`get_peers`) and dials it:
   all three are connected pairwise.
3. Node 0 stops: nodes 1 and 2 keep working together (a record from node 1
   reaches node 2).
4. Node 0 restarts on the same port: both reconnect to it (backoff dialer)
   and node 0 catches up with the record.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.network import TestNetwork, sync_blocks, wait_for_records, wait_until


async def test_peer_exchange_and_reconnect(tmp_path: Path) -> None:
    network = TestNetwork.create(tmp_path, 3, outbound_peers=8)
    hub, first, second = network.nodes
    try:
        await network.start([0])
        for index in (1, 2):
            network.configure(index, peers=(f"127.0.0.1:{hub.port}",))
        await network.start([1])
        await wait_until(lambda: hub.identity.member_id in first.connected_peer_ids(), 30, "node 1 to reach node 0")
        await network.start([2])
        ids = [node.identity.member_id for node in network.nodes]
        await wait_until(lambda: all(node.connected_peer_ids() == set(ids) - {node.identity.member_id}
                                     for node in network.nodes), 30, "a full mesh through peer exchange")
        assert first.network.peers[second.identity.member_id] is not None

        await hub.stop()
        record = await first.add_record()
        await wait_for_records([first, second], [record.record_id])

        await hub.start()
        await wait_until(lambda: hub.connected_peer_ids() == {ids[1], ids[2]}, 30, "nodes 1 and 2 to reconnect to node 0")
        await wait_for_records(network.nodes, [record.record_id])
        await sync_blocks(network.nodes)
    finally:
        await network.stop()
