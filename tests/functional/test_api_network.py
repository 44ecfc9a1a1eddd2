"""The API on a two-node network: peers, and records seen from the hospital that did not create them.

Plan:
1. Two nodes (network framework), node 0 with the real plug-in when a CT
   model is exported, both connected.
2. GET /peers and /status on each show the other hospital with its height.
3. A diagnosis posted to node 0 with ?wait=mined reaches node 1's best chain;
   node 1's /records/{id} gives the same block and Merkle proof, and names
   node 0's hospital as creator.
4. /records/{id}/verify: intact on node 0 (which holds the off-chain details),
   no-local-details on node 1 (signature and Merkle proof still checked);
   node 1 refuses GET /diagnoses/{id} with its token (404: not its record)
   and node 0's token is not valid on node 1.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.support.network import TestNetwork, connect_nodes, sync_blocks
from tests.support.network import wait_until as wait_until_sync
from tests.support.api import require_models, sample_image

API = "/api/v1"


async def get_json(session: aiohttp.ClientSession, url: str, **kwargs: object) -> tuple[int, dict]:
    async with session.get(url, **kwargs) as response:
        return response.status, await response.json()


async def test_peers_and_foreign_records(tmp_path: Path) -> None:
    folder = require_models("ct")
    network = TestNetwork.create(tmp_path, 2, difficulty=2, models_dir=folder)
    network.configure(0, plugin="mobilenetv2")
    await network.start()
    node0, node1 = network.nodes
    url0, url1 = (node.base_url for node in network.nodes)
    token0 = (node0.config.data_dir / "api_token").read_text().strip()
    token1 = (node1.config.data_dir / "api_token").read_text().strip()
    try:
        await connect_nodes(node0, node1)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session:  # own nodes' HTTPS
            for url, other in ((url0, "Hospital 1"), (url1, "Hospital 0")):
                status, peers = await get_json(session, f"{url}{API}/peers")
                assert status == 200 and peers["count"] == 1
                assert peers["peers"][0]["name"] == other and peers["peers"][0]["height"] == 0
                _, node_status = await get_json(session, f"{url}{API}/status")
                assert node_status["peer_count"] == 1

            form = aiohttp.FormData()
            form.add_field("ct", sample_image("ct").read_bytes(), filename="ct.png", content_type="image/png")
            form.add_field("smoking", "never")
            async with session.post(f"{url0}{API}/diagnoses?wait=mined", data=form,
                                    headers={"Authorization": f"Bearer {token0}"}) as response:
                assert response.status == 202
                reply = await response.json()
            record_id = reply["record_id"]
            await sync_blocks(network.nodes)
            await wait_until_sync(lambda: node1.has_record_on_best_chain(bytes.fromhex(record_id)), 30,
                                  "the record on node 1")

            _, here = await get_json(session, f"{url0}{API}/records/{record_id}")
            _, there = await get_json(session, f"{url1}{API}/records/{record_id}")
            assert here == there and there["record"]["member_name"] == "Hospital 0"
            # Node 1 may also have mined the relayed record (any member carries any member's records): the
            # block ?wait=mined answered with can lose that race; the record is then in node 1's block.
            if there["block_hash"] != reply["block_hash"]:
                view = node0.view
                assert not view.is_on_best_chain(bytes.fromhex(reply["block_hash"]))
                final = view.get_meta(bytes.fromhex(there["block_hash"]))
                assert final is not None and final.miner_id == node1.identity.member_id

            _, verdict0 = await get_json(session, f"{url0}{API}/records/{record_id}/verify")
            _, verdict1 = await get_json(session, f"{url1}{API}/records/{record_id}/verify")
            assert verdict0["status"] == "intact"
            assert verdict1["status"] == "no-local-details"
            assert verdict1["checks"] == {"signature": True, "merkle_proof": True}

            status, body = await get_json(session, f"{url1}{API}/diagnoses/{record_id}",
                                          headers={"Authorization": f"Bearer {token1}"})
            assert (status, body["error"]) == (404, "diagnosis-not-found")
            status, body = await get_json(session, f"{url1}{API}/diagnoses/{record_id}",
                                          headers={"Authorization": f"Bearer {token0}"})
            assert (status, body["error"]) == (401, "bad-token")

            # The node that did not mine the block learns its miner's new height from the announcement
            # (with two members, node 1 is in turn at height 1 and usually carries node 0's record).
            holder = node0.view.get_meta(bytes.fromhex(there["block_hash"]))
            assert holder is not None
            learner, learner_url = (node1, url1) if holder.miner_id == node0.identity.member_id else (node0, url0)
            await wait_until_sync(lambda: learner.network.get_peer_summaries()[0]["height"] >= 1, 30,
                                  "the other node to learn the miner's new height")
            _, peers = await get_json(session, f"{learner_url}{API}/peers")
            assert peers["peers"][0]["height"] == there["block_height"]
    finally:
        await network.stop()


