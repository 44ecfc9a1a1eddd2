"""Sites on separate hosts: network namespaces, partitions, kill -9 during sync, soak.

Plan:
1. Partition: 5 hosts (one node each, in its own network namespace), split 3|2;
   diagnoses are submitted through the HTTP API on both sides; heal; every node
   reaches the same tip and every acknowledged record is on it exactly once.
2. Kill during sync: 4 hosts share a chain of 3,000 blocks (built and stored
   before they start); a fifth, empty host starts syncing, is killed with
   SIGKILL mid-sync, restarted, and catches up.
3. Short soak (CI size): diagnoses at several hosts for 30 s under random
   partitions, link cuts and kill -9; nothing acknowledged is lost or duplicated.
4. netem: latency and loss on a link where the kernel supports it; otherwise
   the test says so (skip with the reason).

Needs root (network namespaces); CI runs as root.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.client import best_chain_record_counts, post_diagnosis
from harness.netns import NetnsTestnet, NetnsUnavailable, check_netns_support
from harness.util import wait_until
from harness.soak import run_soak

pytestmark = pytest.mark.slow
CONVERGE_S = 120.0


@pytest.fixture(scope="module", autouse=True)
def needs_namespaces() -> None:
    try:
        check_netns_support()
    except NetnsUnavailable as error:
        pytest.skip(f"network namespaces unavailable here: {error}")


@pytest.fixture(scope="module")
def ct_images(shared_data_dir: Path) -> list[bytes]:
    files = sorted((shared_data_dir / "ct" / "cancer").glob("*.png"))[:2] + sorted((shared_data_dir / "ct" / "normal").glob("*.png"))[:2]
    return [path.read_bytes() for path in files]


def tips(net: NetnsTestnet, indexes: list[int]) -> set[str]:
    return {net.status(i)["tip_hash"] for i in indexes}


def all_mined(net: NetnsTestnet, indexes: list[int], records: set[str]) -> bool:
    if len(tips(net, indexes)) != 1 or any(net.status(i)["pending_records"] for i in indexes):
        return False
    counts, _ = best_chain_record_counts(net.hosts[indexes[0]].url)
    return records <= set(counts)


def submit(net: NetnsTestnet, index: int, image: bytes, count: int) -> set[str]:
    host = net.hosts[index]
    return {post_diagnosis(host.url, host.token, {"ct": image}, patient_ref=f"p-{index}-{n}")["record_id"] for n in range(count)}


def test_partition_three_two_then_heal(tmp_path: Path, ct_images: list[bytes]) -> None:
    with NetnsTestnet(5, tmp_path, diagnostics=True) as net:
        wait_until(lambda: all(net.status(i)["peer_count"] >= 2 for i in range(5)), CONVERGE_S, "peers to connect")
        net.partition([[0, 1, 2], [3, 4]])
        left = submit(net, 0, ct_images[0], 3) | submit(net, 1, ct_images[1], 2)
        right = submit(net, 3, ct_images[2], 3) | submit(net, 4, ct_images[3], 2)
        wait_until(lambda: all_mined(net, [0, 1, 2], left), CONVERGE_S, "the 3-host side to agree")
        wait_until(lambda: all_mined(net, [3, 4], right), CONVERGE_S, "the 2-host side to agree")
        assert tips(net, [0]) != tips(net, [3]), "the partition did not separate the sides"
        net.heal()
        everything = left | right
        wait_until(lambda: all_mined(net, list(range(5)), everything), CONVERGE_S, "all five hosts to converge")
        for index in range(5):
            counts, _ = best_chain_record_counts(net.hosts[index].url)
            assert all(counts[record] == 1 for record in everything), f"host {index} holds a record twice"


def prebuild_chain(net: NetnsTestnet, blocks: int) -> str:
    """Store a chain mined by the first four hosts' keys into their stores (nodes stopped)."""
    from consensus.builders import compute_block_meta
    from node.genesis import load_genesis
    from node.identity import load_identity
    from node.store import ChainStore
    from tests.support.builders import MemberKeys, make_record, mine_block

    genesis = load_genesis(net.work_dir / "genesis.json")
    keys = [MemberKeys(load_identity(h.data_dir).private_key, load_identity(h.data_dir).member) for h in net.hosts[:4]]
    meta = compute_block_meta(genesis.block, 0)
    chain = []
    for height in range(blocks):
        member = keys[height % 4]
        block = mine_block(meta, member, [make_record(member, created_ms=meta.timestamp_ms)], difficulty=genesis.params.difficulty,
                           timestamp_ms=meta.timestamp_ms + 1)
        chain.append(block)
        meta = compute_block_meta(block, meta.chain_work)
    for host in net.hosts[:4]:
        store = ChainStore(host.data_dir / "chain.sqlite3", genesis.params, genesis.block)
        store.add_blocks(chain, meta.timestamp_ms)
        store.close()
    return meta.block_hash.hex()


def test_node_killed_during_sync_catches_up(tmp_path: Path) -> None:
    with NetnsTestnet(5, tmp_path, difficulty=2) as net:
        for index in range(5):
            net.stop_node(index)
        (net.hosts[4].data_dir / "chain.sqlite3").unlink(missing_ok=True)
        tip = prebuild_chain(net, 3000)
        for index in range(4):
            net.start_node(index)
        net.start_node(4)
        wait_until(lambda: net.status(4)["height"] > 0, CONVERGE_S, "host 4 to start syncing", interval=0.02)
        height_at_kill = net.status(4)["height"]
        net.kill_node(4)
        assert 0 < height_at_kill < 3000, f"host 4 was not mid-sync (height {height_at_kill})"
        net.start_node(4)
        restarted_height = net.status(4)["height"]
        assert restarted_height >= height_at_kill, "blocks stored before the kill were lost"
        wait_until(lambda: net.status(4)["tip_hash"] == tip, CONVERGE_S, "host 4 to catch up after the restart")


def test_short_soak_loses_nothing(tmp_path: Path, ct_images: list[bytes]) -> None:
    seconds = float(os.environ.get("LUNGLEDGER_SOAK_SECONDS", "30"))
    report = run_soak(tmp_path, ct_images, hosts=4, duration_s=seconds, submitters=3, seed=7)
    print("soak report:", report.as_dict())
    assert report.acknowledged > 0
    assert report.converge_s is not None, f"no convergence after the last fault: {report.faults}"
    assert report.same_tip and report.lost == 0 and report.duplicated == 0, report.as_dict()


def test_netem_latency_and_loss(tmp_path: Path) -> None:
    with NetnsTestnet(2, tmp_path) as net:
        if not net.netem(0, delay_ms=50, loss_percent=1.0):
            pytest.skip(f"netem is unavailable on this kernel, not pretending: {net.netem_unavailable_reason}")
        wait_until(lambda: net.status(0)["peer_count"] >= 1 and net.status(1)["peer_count"] >= 1, CONVERGE_S, "peers over a slow link")
