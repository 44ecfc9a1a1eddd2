"""Federated rounds over the peer network (issue 15): three real nodes on loopback, real images, real LiteRT.

Plan:
1. Three nodes, each with its own small labelled folder of real radiographs (node 0 and
   node 2: NIH, node 1: JSRT), connected over TLS; each loads the shipped X-ray model
   and its site's pooled features.
2. An administrator of node 0 proposes a round over HTTPS (``POST /api/v1/federated/rounds``
   with the node's API token; without it: 401); every node trains, sends a signed ``model_update``, and
   every node aggregates the same three updates to the same head digest; every site
   signs its held-out AUC (``model_metrics``), the rule holds (quorum 2, margin 1.0)
   and every node adopts that head: all three now use the same head digest. The proposal, the
   nodes' round results and the three sites' metrics are on the best chain (``GET
   /api/v1/federated`` gives each one's block height) and every node read the adoption from
   it (``chain.head_digest``, same on all nodes). Before the round
   each node's diagnosis names the shipped model; after it, a diagnosis (over the API, a
   real record) on every node uses the adopted head: its probability is the head applied to
   the model's features, its record names SHA-256(tflite SHA-256 || head digest), and all
   nodes agree; the head can be fetched by digest (``GET /api/v1/federated/heads/{digest}``).
3. Node 2 sends a poisoned update (its head scaled x100): every node excludes it as
   ``norm-outlier``, agrees on the aggregate of the two honest updates and adopts it.
   Then a round with a 0.02 margin in which node 1 reports its held-out AUC 0.5 lower
   for the aggregate: the chain's verdict is ``auc-drop`` on every node, and every node
   keeps serving the head of the round before (an unadopted head is never served).
4. Node 2 is killed mid-round (after it received the proposal, before it sent): at the
   deadline nodes 0 and 1 complete the round without it (``no-update``), same digest.
   The round asked for a quorum of 3 sites: only 2 report, so the head is not
   adopted and both nodes keep the head of step 3: their diagnoses are byte-identical in
   probability and model id to before the round (an unadopted head is never served).
5. Node 2 restarts: it serves the last adopted head (step 3) again, read from its data dir.
6. Node 2 is down during a whole round (quorum 2) that nodes 0 and 1 adopt. It comes back,
   syncs the blocks, lacks the aggregate (``missing_head``), fetches it from its peers
   (``get_head``) and serves the same head digest as the others; its diagnosis names the
   same model id with the same probability.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from consensus.governance import validate_round_result
from diagnostics.federated import Head, ServedHead, compute_served_model_id
from diagnostics.mobilenetv2 import MobileNetV2Plugin
from node.federated import FEDERATED, FederatedService
from node.keys import PLUGIN
from tests.support.api import require_models, sample_image
from tests.support.network import TestNetwork, TestNode, connect_all, wait_until

IMAGES_PER_CLASS = 4
TIMEOUT_S = 120.0
PLUGIN_OPTIONS = {"modalities": ["xray"], "max_batch": 1, "workers": 1}


def make_site(shared_data_dir: Path, target: Path, source: str, skip: int) -> Path:
    """IMAGES_PER_CLASS images of each class of one source, with their labels.csv rows."""
    folder = shared_data_dir / "xray"
    lines = (folder / "labels.csv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    column = header.split(",").index("source_dataset")
    kept = [header]
    for class_name in ("cancer", "normal"):
        chosen = [row for row in rows if row.startswith(f"{class_name}/") and row.split(",")[column] == source]
        for row in chosen[skip:skip + IMAGES_PER_CLASS]:
            relative = row.split(",")[0]
            (target / class_name).mkdir(parents=True, exist_ok=True)
            shutil.copy(folder / relative, target / relative)
            kept.append(row)
    (target / "labels.csv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return target


def service(node: TestNode) -> FederatedService:
    found = node.app[FEDERATED] if node.app is not None else None
    assert found is not None, f"node {node.index} runs no federated service"
    return found


def round_status(node: TestNode, round_id: bytes) -> str:
    state = service(node).rounds.get(round_id)
    return "unknown" if state is None else state.status


def adoption(node: TestNode, round_id: bytes) -> str | None:
    state = service(node).rounds.get(round_id)
    return None if state is None else state.adoption


async def wait_adoption(nodes: list[TestNode], round_id: bytes) -> set[str | None]:
    await wait_until(lambda: all(adoption(node, round_id) is not None for node in nodes), TIMEOUT_S,
                     "every node to decide on adoption")
    return {adoption(node, round_id) for node in nodes}


def plugin(node: TestNode) -> MobileNetV2Plugin:
    found = node.app[PLUGIN] if node.app is not None else None
    assert isinstance(found, MobileNetV2Plugin), f"node {node.index} runs no mobilenetv2 plug-in"
    return found


def served_digest(node: TestNode) -> str | None:
    served = plugin(node).get_served_head("xray")
    return None if served is None else served.digest


async def diagnose(node: TestNode, image: bytes) -> tuple[float, str]:
    """One X-ray diagnosis over the API: (probability, the model id its signed record names)."""
    form = aiohttp.FormData()
    form.add_field("xray", image, filename="xray.png", content_type="image/png")
    headers = {"Authorization": f"Bearer {node.identity.api_token}"}
    async with aiohttp.ClientSession() as client, \
            client.post(f"{node.base_url}/api/v1/diagnoses", data=form, headers=headers, ssl=False) as response:
        reply = await response.json()
        assert response.status == 202, reply
    entry = reply["result"]["modalities"]["xray"]
    assert reply["record"]["probabilities_ppm"] == [round(entry["probability"] * 1_000_000)]
    [model_id] = reply["record"]["model_ids"]
    assert model_id == entry["model"]["sha256"]
    return entry["probability"], model_id


def features_of(node: TestNode, image: bytes) -> np.ndarray:
    serving = plugin(node)
    prepared = serving.prepare("xray", image)
    features: np.ndarray = serving.models["xray"].predict(prepared.tensor[None])[1][0]
    return features


async def check_serves(nodes: list[TestNode], head: Head, image: bytes) -> tuple[float, str]:
    """Every node diagnoses with ``head``: the head on the features, the combined id, one answer."""
    await wait_until(lambda: all(served_digest(node) == head.digest() for node in nodes), TIMEOUT_S,
                     "every node to serve the adopted head")
    base_id = plugin(nodes[0]).models["xray"].card.model_id
    answers = {await diagnose(node, image) for node in nodes}
    assert len(answers) == 1, answers
    [(probability, model_id)] = answers
    assert model_id == compute_served_model_id(base_id, head.digest())
    expected = ServedHead(base_id, head).compute_probability(features_of(nodes[0], image))
    assert probability == pytest.approx(expected, abs=1e-12)
    return probability, model_id


async def fetch_head(node: TestNode, digest: str) -> Head:
    async with aiohttp.ClientSession() as client, \
            client.get(f"{node.base_url}/api/v1/federated/heads/{digest}", ssl=False) as response:
        assert response.status == 200, await response.text()
        described = await response.json()
    fetched = Head.create(described["weights"], described["bias"])
    assert fetched.digest() == digest == described["digest"]
    assert described["served_model_id"] == compute_served_model_id(described["base_model_id"], digest)
    return fetched


async def get_round(node: TestNode, round_id: bytes) -> dict[str, object]:
    async with aiohttp.ClientSession() as client, \
            client.get(f"{node.base_url}/api/v1/federated", ssl=False) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    [found] = [entry for entry in body["rounds"] if entry["round_id"] == round_id.hex()]
    chain_rounds = [entry for entry in body["chain"]["rounds"] if entry["round_id"] == round_id.hex()]
    assert chain_rounds == [found["chain"]]
    return dict(found)


async def wait_aggregated(nodes: list[TestNode], round_id: bytes) -> list[str]:
    await wait_until(lambda: all(round_status(node, round_id) == "aggregated" for node in nodes), TIMEOUT_S,
                     "every node to aggregate the round")
    digests = []
    for node in nodes:
        head = service(node).rounds[round_id].head
        assert head is not None
        digests.append(head.digest())
    return digests


async def test_three_nodes_complete_rounds_despite_a_poisoner_and_a_dead_node(tmp_path: Path,
                                                                              shared_data_dir: Path) -> None:
    sites = [make_site(shared_data_dir, tmp_path / "site0", "NIH ChestX-ray14", 0),
             make_site(shared_data_dir, tmp_path / "site1", "JSRT", 0),
             make_site(shared_data_dir, tmp_path / "site2", "NIH ChestX-ray14", IMAGES_PER_CLASS)]
    network = TestNetwork.create(tmp_path / "nodes", 3)
    assert network.genesis is not None
    for index, site in enumerate(sites):
        network.configure(index, federated={"data_dir": str(site), "modality": "xray", "epochs": 5, "quorum": 2,
                                            "max_auc_drop": 1.0},
                          plugin="mobilenetv2", plugin_options=PLUGIN_OPTIONS)
    require_models("xray")
    image = sample_image("xray", "cancer", 1).read_bytes()
    await network.start()
    nodes = network.nodes
    try:
        await connect_all(nodes)
        assert all(service(node).site is not None for node in nodes)
        members = [node.identity.member_id.hex() for node in nodes]
        shipped_id = plugin(nodes[0]).models["xray"].card.model_id
        shipped = {await diagnose(node, image) for node in nodes}
        assert len(shipped) == 1 and next(iter(shipped))[1] == shipped_id  # the built-in head: today's id

        # 2. a round with everyone, proposed through the API
        url = f"{nodes[0].base_url}/api/v1/federated/rounds"
        async with aiohttp.ClientSession() as client:
            async with client.post(url, json={"duration_s": TIMEOUT_S}, ssl=False) as refused:
                assert refused.status == 401
            headers = {"Authorization": f"Bearer {nodes[0].identity.api_token}"}
            async with client.post(url, json={"duration_s": TIMEOUT_S}, headers=headers, ssl=False) as response:
                assert response.status == 202, await response.text()
                round_id = bytes.fromhex((await response.json())["round_id"])
        proposal = service(nodes[0]).rounds[round_id].proposal
        digests = await wait_aggregated(nodes, proposal.round_id)
        assert len(set(digests)) == 1
        results = []
        for node in nodes:
            state = service(node).rounds[proposal.round_id]
            assert sorted(state.contributors) == sorted(members) and state.excluded == {}
            assert state.local_report is not None
            # each node's signed model-update record is valid and names the same aggregate and update digests
            assert state.result is not None
            validate_round_result(state.result, proposal.participants, network.genesis.params.members_by_id)
            results.append((state.result.head_digest, state.result.contributors))
        assert len(set(results)) == 1
        first = digests[0]
        base = bytes(proposal.head_digest).hex()
        assert first != base  # training moved the head
        assert await wait_adoption(nodes, proposal.round_id) == {"adopted"}
        assert {service(node).head.digest() for node in nodes} == {first}
        for node in nodes:  # on chain: the round, the results and every site's metrics, at block heights
            described = await get_round(node, proposal.round_id)
            on_chain = described["chain"]
            assert on_chain["verdict"] == "adopted" and on_chain["head_digest"] == first
            assert on_chain["proposal_height"] >= 1 and on_chain["result_height"] >= on_chain["proposal_height"]
            assert sorted(on_chain["metrics_heights"]) == sorted(members)
            assert all(height >= on_chain["proposal_height"] for height in on_chain["metrics_heights"].values())
            assert on_chain["result_creator"] in members
        assert {service(node).governance.head_digest.hex() for node in nodes} == {first}  # type: ignore[union-attr]
        assert all(len(service(node).rounds[proposal.round_id].reports) == 3 for node in nodes)
        first_head = await fetch_head(nodes[1], first)
        first_answer = await check_serves(nodes, first_head, image)
        assert first_answer[0] != next(iter(shipped))[0]

        # 3. a poisoned update (x100) is excluded by every node
        service(nodes[2]).faults.scale = 100.0
        proposal = await service(nodes[0]).propose_round(duration_s=TIMEOUT_S)
        digests = await wait_aggregated(nodes, proposal.round_id)
        assert len(set(digests)) == 1
        for node in nodes:
            state = service(node).rounds[proposal.round_id]
            assert state.excluded == {members[2]: "norm-outlier"}
            assert sorted(state.contributors) == sorted(members[:2])
        assert digests[0] != first
        assert await wait_adoption(nodes, proposal.round_id) == {"adopted"}
        second = digests[0]
        assert {service(node).head.digest() for node in nodes} == {second}
        second_head = await fetch_head(nodes[0], second)
        second_answer = await check_serves(nodes, second_head, image)

        # 3b. a site reports an AUC drop beyond the margin: the chain never adopts the aggregate
        service(nodes[2]).faults.scale = 1.0
        service(nodes[1]).faults.auc_drop = 0.5
        proposal = await service(nodes[0]).propose_round(duration_s=TIMEOUT_S, max_auc_drop=0.02)
        vetoed = await wait_aggregated(nodes, proposal.round_id)
        assert len(set(vetoed)) == 1 and vetoed[0] != second
        verdicts = await wait_adoption(nodes, proposal.round_id)
        assert len(verdicts) == 1 and next(iter(verdicts)).startswith(f"auc-drop: {members[1]}"), verdicts
        assert {service(node).head.digest() for node in nodes} == {second}
        assert {served_digest(node) for node in nodes} == {second}
        assert {await diagnose(node, image) for node in nodes} == {second_answer}
        service(nodes[1]).faults.auc_drop = 0.0

        # 4. node 2 dies after receiving the proposal, before sending its update
        service(nodes[2]).faults.scale, service(nodes[2]).faults.delay_s = 1.0, 3600.0
        proposal = await service(nodes[0]).propose_round(duration_s=15.0, quorum=3)
        await wait_until(lambda: round_status(nodes[2], proposal.round_id) == "collecting", TIMEOUT_S,
                         "node 2 to receive the proposal")
        await nodes[2].stop()
        digests = await wait_aggregated(nodes[:2], proposal.round_id)
        assert len(set(digests)) == 1
        for node in nodes[:2]:
            state = service(node).rounds[proposal.round_id]
            assert state.excluded == {members[2]: "no-update"}
            assert sorted(state.contributors) == sorted(members[:2])
        verdicts = await wait_adoption(nodes[:2], proposal.round_id)
        assert verdicts == {"no-quorum: 2 of 3 sites reported"}
        assert {service(node).head.digest() for node in nodes[:2]} == {second}  # the unadopted head is not used
        assert digests[0] != second
        assert {await diagnose(node, image) for node in nodes[:2]} == {second_answer}
        assert {served_digest(node) for node in nodes[:2]} == {second}

        # 5. node 2 restarts and serves the last adopted head from its data dir
        await nodes[2].start()
        assert served_digest(nodes[2]) == second and service(nodes[2]).head.digest() == second
        assert await diagnose(nodes[2], image) == second_answer

        # 6. node 2 misses a whole adopted round, comes back and fetches the aggregate from its peers
        await nodes[2].stop()
        proposal = await service(nodes[0]).propose_round(duration_s=15.0, quorum=2)
        digests = await wait_aggregated(nodes[:2], proposal.round_id)
        assert len(set(digests)) == 1 and digests[0] != second
        assert await wait_adoption(nodes[:2], proposal.round_id) == {"adopted"}
        third = digests[0]
        await wait_until(lambda: {served_digest(node) for node in nodes[:2]} == {third}, TIMEOUT_S,
                         "nodes 0 and 1 to serve the adopted head")
        await nodes[2].start()
        await connect_all(nodes)
        await wait_until(lambda: served_digest(nodes[2]) == third, TIMEOUT_S, "node 2 to fetch and serve the head")
        assert service(nodes[2]).missing_head is None and service(nodes[2]).fetcher.fetched >= 1
        assert proposal.round_id not in service(nodes[2]).rounds  # it never saw the round: the head came by get_head
        third_answers = {await diagnose(node, image) for node in nodes}
        assert len(third_answers) == 1 and next(iter(third_answers))[1] == compute_served_model_id(shipped_id, third)
    finally:
        await network.stop()
