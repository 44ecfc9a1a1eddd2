"""The miner: only pending records, off the event loop, abandons work when the tip moves.

Plan:
1. A node has one pending record; the miner builds its template on genesis.
   Its worker thread is held by a gate, so the first chunk of nonces cannot run
   before the test is ready (no race with a lucky nonce).
2. While it is mining, another member's block (mined beforehand) arrives and
   becomes the tip; the gate opens: the miner abandons its template and mines
   the record on top of the new tip instead.
3. With nothing pending, the miner mines nothing (no empty blocks).
4. Signer limit (two members: they alternate): after its own block the miner
   leaves a new record pending and waits, without spinning, until another
   member's block becomes the tip; then it mines the record on that block.
"""

from __future__ import annotations

import threading
from pathlib import Path

from consensus.builders import compute_block_meta
from harness.util import wait_until_async
from tests.support.builders import make_member, make_record, mine_block
from tests.support.network import TestNetwork

DIFFICULTY = 3


async def test_miner_abandons_work_when_the_tip_moves(tmp_path: Path) -> None:
    rival = make_member("Rival")
    network = TestNetwork.create(tmp_path, 1, difficulty=DIFFICULTY, extra_members=[rival.member])
    assert network.genesis is not None
    rival_block = mine_block(compute_block_meta(network.genesis.block, 0), rival, difficulty=DIFFICULTY,
                             timestamp_ms=network.genesis.params.timestamp_ms + 1000)
    node = network.nodes[0]
    await network.start()
    try:
        gate = threading.Event()
        node.miner.executor.submit(gate.wait, 60)  # the miner's single worker thread waits behind this
        record = await node.add_record()
        genesis_hash = network.genesis.block.block_hash
        await wait_until_async(lambda: node.miner.mining_on == genesis_hash, 30, "the miner to start on genesis")
        await node.chain.add_blocks([rival_block], source="test")
        gate.set()
        await wait_until_async(lambda: node.has_record_on_best_chain(record.record_id), 120, "the record to be mined")
        assert node.miner.abandoned >= 1
        view = node.view
        block = await node.chain.get_block(view.best[2])
        assert block is not None
        assert view.best[1] == rival_block.block_hash and block.records[0].record_id == record.record_id
        # The record is visible once the chain thread commits; the miner counts its block after add_blocks returns.
        await wait_until_async(lambda: node.miner.blocks_mined >= 1, 30, "the miner to count its block")
        assert node.miner.blocks_mined == 1 and node.view.pending_count == 0
        assert node.miner.mining_on is None and node.height == 2  # nothing pending: no empty block
    finally:
        await network.stop()


async def test_miner_waits_for_its_turn_under_the_signer_limit(tmp_path: Path) -> None:
    rival = make_member("Rival")
    network = TestNetwork.create(tmp_path, 1, difficulty=DIFFICULTY, extra_members=[rival.member])
    node = network.nodes[0]
    await network.start()
    try:
        first = await node.add_record()
        await wait_until_async(lambda: node.has_record_on_best_chain(first.record_id), 60, "the first record to be mined")
        own_tip = node.view.tip_hash
        second = await node.add_record()
        await wait_until_async(lambda: node.miner.waiting_for_turn == own_tip, 30, "the miner to wait for its turn")
        wakes = node.miner.blocks_mined + node.miner.abandoned
        assert node.height == 1 and node.view.pending_count == 1 and node.miner.mining_on is None
        rival_block = mine_block(node.view.tip, rival, [make_record(rival, created_ms=node.view.tip.timestamp_ms)],
                                 difficulty=DIFFICULTY)
        result = await node.chain.add_blocks([rival_block], source="test")
        assert result.failure is None
        await wait_until_async(lambda: node.has_record_on_best_chain(second.record_id), 60, "the second record to be mined")
        view = node.view
        assert view.height == 3 and view.best[2] == rival_block.block_hash
        assert node.miner.blocks_mined + node.miner.abandoned == wakes + 1  # one block, no work while waiting
    finally:
        await network.stop()
