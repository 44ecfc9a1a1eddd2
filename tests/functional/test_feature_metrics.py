"""Prometheus metrics and sync progress logs, on real nodes.

Plan:
1. Node 0 holds a 3,000-block chain; node 1 starts empty and syncs it: while
   behind it logs "sync: height H of N (P%), R blocks/s", and afterwards its
   /metrics show height 3000, one peer, sync progress 1 and 3,000 accepted blocks.
2. Both nodes add records: blocks mined and accepted are counted.
3. A fake member peer serves a block with bad proof-of-work: node 0 counts it as
   rejected with reason bad-pow and the peer as banned with that reason.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import aiohttp
import pytest

from node.keys import METRICS
from network.messages import Announce, Blocks, GetBlocks
from tests.support.builders import make_member
from tests.support.network import FakePeer, TestNetwork, build_chain, connect_nodes, sync_blocks, wait_for_records, wait_until
from tests.functional.test_p2p_misbehaving import bad_pow_block

CHAIN_LENGTH = 3000


async def scrape(port: int) -> dict[str, float]:
    # The test's own nodes serve HTTPS with their own certificate: not verified here.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as session, \
            session.get(f"https://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


async def test_metrics_and_sync_progress(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rogue = make_member("Rogue")
    network = TestNetwork.create(tmp_path, 2, extra_members=[rogue.member])
    source, joiner = network.nodes
    network.preload(0, build_chain(network, source, CHAIN_LENGTH))
    await network.start()
    caplog.set_level(logging.INFO, logger="lungledger.net")
    try:
        await connect_nodes(joiner, source)
        await sync_blocks(network.nodes, timeout=180)
        progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sync: height")]
        assert progress, "no sync progress line was logged"
        assert re.match(r"sync: height \d+ of 3000 \(\d+\.\d%\), \d+ blocks/s", progress[0]), progress[0]

        # Listeners hear of a batch just after its commit moved the tip: wait for the count.
        registry = joiner._app[METRICS].registry
        await wait_until(lambda: registry.get_sample_value("lungledger_blocks_accepted_total") == CHAIN_LENGTH, 10,
                         "the last synced batch to be counted")
        samples = await scrape(joiner.port)
        assert samples["lungledger_chain_height"] == CHAIN_LENGTH
        assert samples["lungledger_peers"] == 1
        assert samples["lungledger_sync_progress_ratio"] == 1.0
        assert samples["lungledger_blocks_accepted_total"] == CHAIN_LENGTH

        records = [await source.add_record(), await joiner.add_record()]
        await wait_for_records(network.nodes, [r.record_id for r in records], timeout=60)
        samples = await scrape(joiner.port)
        assert samples["lungledger_blocks_mined_total"] >= 1
        assert samples["lungledger_pending_records"] == 0
        assert samples["lungledger_equivocations"] == 0

        fake = FakePeer(rogue, network.genesis, local_host="127.0.0.7")
        await fake.open(source)
        await fake.handshake()
        block = bad_pow_block(source, rogue)
        await fake.send(Announce(block.block_hash, block.height))
        await fake.receive(GetBlocks)
        await fake.send(Blocks((block.encoded,)))
        await fake.wait_closed()
        await fake.close()

        await wait_until(lambda: source.network.bans.is_banned(member_id=rogue.member_id), 10, "the rogue to be banned")
        samples = await scrape(source.port)
        assert samples['lungledger_blocks_rejected_total{reason="bad-pow"}'] == 1
        assert samples['lungledger_peer_bans_total{reason="invalid-block:bad-pow"}'] == 1
    finally:
        await network.stop()
