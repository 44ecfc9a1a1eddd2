"""Adoption follows the best chain (issue 15): a reorg that removes a round's result reverts the served head.

Plan (one real node, mining off, a real store and the real X-ray model; the blocks are built
and signed here with the three members' keys, as peers would send them):
1. Block 1 holds a round proposal; block 2 the round result (an aggregate's digest) and
   all three sites' metrics (no drop). The chain adopts the round, but the node does not
   hold that aggregate: it keeps serving the built-in head and reports ``missing_head``.
2. The node gets the aggregate (stored by digest, as after aggregating the round itself)
   and reads the chain again: it serves the aggregate (the plug-in's served digest), and
   ``GET /api/v1/federated`` gives the heights of the proposal (1), the result (2) and each
   site's metrics (2).
3. A competing branch from block 1 (two blocks of records, more work) reorganises block 2
   away: the round is undecided on the new best chain, the node serves the built-in head
   again, and the result and the three metrics entries are back in its governance pool.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np

from consensus.builders import compute_block_meta
from consensus.crypto import sign
from consensus.entries import (METRICS_DOMAIN, RESULT_DOMAIN, ROUND_DOMAIN, GovernanceEntry, ModelMetrics, ModelRound,
                               RoundResult)
from diagnostics.federated import Head
from diagnostics.mobilenetv2 import MobileNetV2Plugin
from node.federated import FEDERATED, FederatedService
from node.federated_heads import StoredHead
from node.keys import PLUGIN
from tests.support.api import require_models
from tests.support.builders import MemberKeys, make_record, mine_block
from tests.support.network import TestNetwork, TestNode, wait_until

TIMEOUT_S = 60.0


def service(node: TestNode) -> FederatedService:
    found = node.app[FEDERATED] if node.app is not None else None
    assert found is not None
    return found


def served_digest(node: TestNode) -> str | None:
    found = node.app[PLUGIN] if node.app is not None else None
    assert isinstance(found, MobileNetV2Plugin)
    served = found.get_served_head("xray")
    return None if served is None else served.digest


def signed_round(proposer: MemberKeys, participants: list[bytes], model_id: bytes, head_digest: bytes) -> ModelRound:
    unsigned = ModelRound(proposer.member_id, 1, "xray", model_id, head_digest, 20, 1_000_000, 30_000,
                          int(time.time() * 1000) + 60_000, tuple(sorted(participants)), 2, 20_000)
    return replace(unsigned, signature=sign(proposer.key, ROUND_DOMAIN, unsigned.signed_bytes()))


def signed_result(creator: MemberKeys, proposal: ModelRound, head_digest: bytes) -> RoundResult:
    unsigned = RoundResult(proposal.round_id, creator.member_id, head_digest,
                           tuple((member, bytes([i + 1]) * 32) for i, member in enumerate(proposal.participants)), ())
    return replace(unsigned, signature=sign(creator.key, RESULT_DOMAIN, unsigned.signed_bytes()))


def signed_metrics(site: MemberKeys, proposal: ModelRound, head_digest: bytes) -> ModelMetrics:
    unsigned = ModelMetrics(proposal.round_id, site.member_id, head_digest, 700_000, 710_000)
    return replace(unsigned, signature=sign(site.key, METRICS_DOMAIN, unsigned.signed_bytes()))


async def get_chain_round(node: TestNode, round_id: bytes) -> dict[str, object]:
    async with aiohttp.ClientSession() as client, \
            client.get(f"{node.base_url}/api/v1/federated", ssl=False) as response:
        assert response.status == 200
        body = await response.json()
    found = [entry for entry in body["chain"]["rounds"] if entry["round_id"] == round_id.hex()]
    assert len(found) == 1, body["chain"]
    return dict(found[0])


async def test_a_reorg_that_removes_the_result_reverts_the_served_head(tmp_path: Path) -> None:
    require_models("xray")
    network = TestNetwork.create(tmp_path / "nodes", 3)
    assert network.genesis is not None
    network.configure(0, mine=False, federated={"modality": "xray"}, plugin="mobilenetv2",
                      plugin_options={"modalities": ["xray"], "max_batch": 1, "workers": 1})
    await network.start([0])
    node = network.nodes[0]
    try:
        federated = service(node)
        a, b, c = (n.member for n in network.nodes)
        builtin = federated.builtin
        # 1. round, result and metrics on chain: adopted, but this node does not hold the head: not served
        aggregate = Head.create(builtin.weights * 0.5, builtin.bias + 0.25)
        digest = bytes.fromhex(aggregate.digest())
        proposal = signed_round(a, [a.member_id, b.member_id, c.member_id], federated.model_id,
                                bytes.fromhex(builtin.digest()))
        genesis = compute_block_meta(network.genesis.block, 0)
        now = int(time.time() * 1000)
        difficulty = network.genesis.params.difficulty
        block1 = mine_block(genesis, b, [], now - 10_000, difficulty, entries=(GovernanceEntry.of(proposal),))
        meta1 = compute_block_meta(block1, genesis.chain_work)
        entries2 = (GovernanceEntry.of(signed_result(b, proposal, digest)),
                    *(GovernanceEntry.of(signed_metrics(site, proposal, digest)) for site in (a, b, c)))
        block2 = mine_block(meta1, c, [], now - 9_000, difficulty, entries=entries2)
        result = await node.chain.add_blocks([block1, block2])
        assert result.error is None and len(result.accepted) == 2
        await wait_until(lambda: federated.missing_head == aggregate.digest(), TIMEOUT_S, "the missing head")
        assert served_digest(node) is None and federated.head.digest() == builtin.digest()

        # 2. with the aggregate in its store, the node serves what the chain adopted
        federated.heads.save(StoredHead("xray", federated.model.card.model_id, aggregate, proposal.round_id.hex(),
                                        int(time.time() * 1000)))
        await federated.sync_with_chain()
        await wait_until(lambda: served_digest(node) == aggregate.digest(), TIMEOUT_S, "the adopted head to be served")
        assert federated.head.digest() == aggregate.digest()
        on_chain = await get_chain_round(node, proposal.round_id)
        assert on_chain["verdict"] == "adopted" and on_chain["proposal_height"] == 1 and on_chain["result_height"] == 2
        assert on_chain["metrics_heights"] == {site.member_id.hex(): 2 for site in (a, b, c)}
        assert await node.chain.get_pending_entries(100) == []

        # 3. a heavier branch without block 2: the adoption is gone, the built-in head is served again
        fork2 = mine_block(meta1, a, [make_record(a, now - 8_000)], now - 8_000, difficulty)
        fork3 = mine_block(compute_block_meta(fork2, meta1.chain_work), c, [make_record(c, now - 7_000)],
                           now - 7_000, difficulty)
        result = await node.chain.add_blocks([fork2, fork3])
        assert result.error is None and node.view.tip_hash == fork3.block_hash
        await wait_until(lambda: served_digest(node) is None, TIMEOUT_S, "the built-in head to be served again")
        assert federated.head.digest() == builtin.digest()
        on_chain = await get_chain_round(node, proposal.round_id)
        assert on_chain["verdict"] is None and on_chain["result_height"] is None and on_chain["metrics_heights"] == {}
        pending = await node.chain.get_pending_entries(100)
        assert sorted(entry.entry_hash for entry in pending) == sorted(entry.entry_hash for entry in entries2)
        np.testing.assert_array_equal(federated.head.weights, builtin.weights)
    finally:
        await network.stop()
