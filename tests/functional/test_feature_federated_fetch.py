"""A node that missed a round fetches the adopted head from its peers (issue 15).

Plan (three real nodes on loopback over TLS, mining off, real stores and the real X-ray
model; the round's blocks are built and signed here with the members' keys, as peers would
send them; two extra genesis members play fake peers):
1. Nodes 0 and 1 run, node 2 is down. Block 1 holds a round proposal; block 2 its result
   (an aggregate's digest) and all three sites' metrics: the chain adopts the aggregate.
   Node 0 holds the aggregate (stored by digest, as after aggregating the round itself) and
   serves it; node 1 (it saw other updates) has the blocks but not the head: ``missing_head``.
2. A fake peer that does not hold the head answers node 1's ``get_head`` with ``head_not_found``:
   it is not banned and stays connected. A second fake peer answers with other bytes under
   the digest asked for: node 1 refuses them (``bad-head-digest``) and bans it.
3. Node 0 connects to node 1: node 1 fetches the head from it, stores it and serves it
   (``missing_head`` clears; the plug-in's served digest and model id are node 0's).
4. Node 2 comes back: it syncs the blocks from its peers, fetches the head, and all three
   nodes serve the same head digest and the same model id (what their records name). No
   honest node was banned.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from consensus.builders import compute_block_meta
from consensus.entries import GovernanceEntry
from diagnostics.federated import Head
from diagnostics.mobilenetv2 import MobileNetV2Plugin
from network.model_messages import GetHead, HeadNotFound, HeadReply
from node.federated_heads import StoredHead
from node.keys import PLUGIN
from tests.functional.test_feature_federated_chain import service, signed_metrics, signed_result, signed_round
from tests.support.api import require_models
from tests.support.builders import make_member, mine_block
from tests.support.network import FakePeer, TestNetwork, TestNode, connect_nodes, wait_until

TIMEOUT_S = 90.0
PLUGIN_OPTIONS = {"modalities": ["xray"], "max_batch": 1, "workers": 1}


def served(node: TestNode) -> tuple[str, str] | None:
    """The digest and model id of the head the node's plug-in serves (None: the built-in head)."""
    found = node.app[PLUGIN] if node.app is not None else None
    assert isinstance(found, MobileNetV2Plugin)
    head = found.get_served_head("xray")
    return None if head is None else (head.digest, head.model_id)


async def get_chain_status(node: TestNode) -> dict[str, object]:
    async with aiohttp.ClientSession() as client, \
            client.get(f"{node.base_url}/api/v1/federated", ssl=False) as response:
        assert response.status == 200
        body = await response.json()
    return dict(body["chain"])


async def test_a_node_that_missed_the_round_fetches_the_adopted_head(tmp_path: Path) -> None:
    require_models("xray")
    rogues = [make_member("Rogue 1"), make_member("Rogue 2")]
    network = TestNetwork.create(tmp_path / "nodes", 3, extra_members=[rogue.member for rogue in rogues])
    genesis = network.genesis
    assert genesis is not None
    for index in range(3):
        network.configure(index, mine=False, federated={"modality": "xray"}, plugin="mobilenetv2",
                          plugin_options=PLUGIN_OPTIONS)
    await network.start([0, 1])
    nodes = network.nodes
    try:
        # 1. the chain adopts an aggregate that node 0 holds and node 1 does not
        holder, lacking = service(nodes[0]), service(nodes[1])
        a, b, c = (node.member for node in nodes)
        builtin = holder.builtin
        aggregate = Head.create(builtin.weights * 0.5, builtin.bias + 0.25)
        digest = aggregate.digest()
        proposal = signed_round(a, [a.member_id, b.member_id, c.member_id], holder.model_id,
                                bytes.fromhex(builtin.digest()))
        holder.heads.save(StoredHead("xray", holder.model.card.model_id, aggregate, proposal.round_id.hex(),
                                     int(time.time() * 1000)))
        start = compute_block_meta(genesis.block, 0)
        now = int(time.time() * 1000)
        block1 = mine_block(start, b, [], now - 10_000, genesis.params.difficulty,
                            entries=(GovernanceEntry.of(proposal),))
        entries2 = (GovernanceEntry.of(signed_result(b, proposal, bytes.fromhex(digest))),
                    *(GovernanceEntry.of(signed_metrics(site, proposal, bytes.fromhex(digest))) for site in (a, b, c)))
        block2 = mine_block(compute_block_meta(block1, start.chain_work), c, [], now - 9_000,
                            genesis.params.difficulty, entries=entries2)
        for node in nodes[:2]:
            result = await node.chain.add_blocks([block1, block2])
            assert result.error is None and len(result.accepted) == 2
        await wait_until(lambda: served(nodes[0]) is not None, TIMEOUT_S, "node 0 to serve the aggregate")
        expected = served(nodes[0])
        assert expected is not None and expected[0] == digest
        await wait_until(lambda: lacking.missing_head == digest, TIMEOUT_S, "node 1 to miss the head")
        assert served(nodes[1]) is None

        # 2. a peer without the head is not blamed; one that sends other bytes is banned
        bans = nodes[1].network.bans
        empty = FakePeer(rogues[0], genesis, local_host="127.0.0.21")
        assert await empty.open(nodes[1]) == 101
        await empty.handshake()
        request = await empty.receive(GetHead, TIMEOUT_S)
        assert request.digest.hex() == digest
        await empty.send(HeadNotFound(request.digest))
        await wait_until(lambda: lacking.fetcher.asked >= 1 and rogues[0].member_id not in lacking.fetcher.waiting,
                         TIMEOUT_S, "node 1 to take the not-found answer")
        assert rogues[0].member_id in nodes[1].network.peers
        await empty.close()
        await wait_until(lambda: rogues[0].member_id not in nodes[1].network.peers, TIMEOUT_S, "the fake to leave")
        assert not bans.is_banned(member_id=rogues[0].member_id) and not bans.is_banned(host="127.0.0.21")

        liar = FakePeer(rogues[1], genesis, local_host="127.0.0.22")
        assert await liar.open(nodes[1]) == 101
        await liar.handshake()
        request = await liar.receive(GetHead, TIMEOUT_S)
        forged = Head.create(builtin.weights * 0.5, builtin.bias + 0.5)
        await liar.send(HeadReply(request.digest, forged.to_bytes()))
        await liar.wait_closed(TIMEOUT_S)
        await liar.close()
        ban = bans.get_ban(member_id=rogues[1].member_id)
        assert ban is not None and ban.reason == "bad-head-digest", ban
        assert lacking.fetcher.refused == 1 and lacking.missing_head == digest and served(nodes[1]) is None

        # 3. node 0 holds it: node 1 fetches, stores and serves it
        await connect_nodes(nodes[1], nodes[0])
        await wait_until(lambda: served(nodes[1]) == expected, TIMEOUT_S, "node 1 to serve the fetched head")
        assert lacking.missing_head is None and lacking.head.digest() == digest
        stored = lacking.heads.load(digest)
        assert stored is not None and stored.served_model_id == expected[1]
        status = await get_chain_status(nodes[1])
        assert status["missing_head"] is None and status["head_digest"] == digest
        assert status["head_fetch"] == {"wanted": None, "asked": lacking.fetcher.asked, "fetched": 1, "refused": 1}

        # 4. node 2 was down during the round: it comes back, syncs and fetches the same head
        await nodes[2].start()
        await connect_nodes(nodes[2], nodes[0])
        await connect_nodes(nodes[2], nodes[1])
        await wait_until(lambda: nodes[2].tip_hash == block2.block_hash, TIMEOUT_S, "node 2 to sync the round")
        await wait_until(lambda: served(nodes[2]) == expected, TIMEOUT_S, "node 2 to serve the fetched head")
        assert {served(node) for node in nodes} == {expected}
        assert {service(node).head.digest() for node in nodes} == {digest}
        assert (await get_chain_status(nodes[2]))["missing_head"] is None
        for node in nodes:
            for other in nodes:
                assert not node.network.bans.is_banned(member_id=other.identity.member_id)
    finally:
        await network.stop()
