"""Headers-first sync of a long chain: a late joiner, and a node restarted mid-sync.

Plan:
1. Late joiner: nodes 0 and 1 already hold a 2,000-block chain (built with
   tests/support/builders and written to their stores); node 2 starts empty, connects
   to both and reaches the same tip, with bodies fetched from both peers.
2. Restart: node 1 starts empty and syncs 2,000 blocks from node 0; it is
   stopped part-way, restarted from the same data dir, and finishes from the
   height it had stored (nothing fetched twice).
"""

from __future__ import annotations

from pathlib import Path

from tests.support.network import TestNetwork, build_chain, connect_nodes, sync_blocks, wait_until

CHAIN_LENGTH = 2000


async def test_late_joiner_syncs_from_several_peers(tmp_path: Path) -> None:
    network = TestNetwork.create(tmp_path, 3)
    blocks = build_chain(network, network.nodes[0], CHAIN_LENGTH)
    network.preload(0, blocks)
    network.preload(1, blocks)
    await network.start()
    try:
        server_a, server_b, joiner = network.nodes
        assert joiner.height == 0 and server_a.height == CHAIN_LENGTH
        await connect_nodes(joiner, server_a)
        await connect_nodes(joiner, server_b)
        await sync_blocks(network.nodes, timeout=90)
        assert joiner.tip_hash == blocks[-1].block_hash
        sources = joiner.network.sync.blocks_received_from
        assert sum(sources.values()) == CHAIN_LENGTH
        assert sources[server_a.identity.member_id] > 0 and sources[server_b.identity.member_id] > 0
        # Nothing is left behind once the connector has finished its last batch.
        await wait_until(lambda: not joiner.network.sync.received and len(joiner.network.sync.tree) == 0, 10,
                         "the sync buffers to empty")
    finally:
        await network.stop()


async def test_node_restarted_mid_sync_finishes(tmp_path: Path) -> None:
    network = TestNetwork.create(tmp_path, 2)
    blocks = build_chain(network, network.nodes[0], CHAIN_LENGTH)
    network.preload(0, blocks)
    await network.start()
    server, syncer = network.nodes
    try:
        await connect_nodes(syncer, server)
        await wait_until(lambda: syncer.height >= 300, 60, "the syncing node to pass height 300")
        await syncer.stop()
        await syncer.start()
        resumed_from = syncer.height
        assert 300 <= resumed_from < CHAIN_LENGTH
        await connect_nodes(syncer, server)
        await sync_blocks(network.nodes, timeout=90)
        assert syncer.height == CHAIN_LENGTH
        # Only the missing blocks were fetched and connected (counted once the last batch returns).
        sync = syncer.network.sync
        await wait_until(lambda: sync.blocks_connected >= CHAIN_LENGTH - resumed_from, 10, "the last batch to finish")
        assert sync.blocks_connected == CHAIN_LENGTH - resumed_from
        assert sum(sync.blocks_received_from.values()) == CHAIN_LENGTH - resumed_from
    finally:
        await network.stop()
