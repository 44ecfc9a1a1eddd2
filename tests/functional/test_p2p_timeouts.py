"""Silent peers are dropped: no pong within the ping timeout, no blocks within the request timeout.

Plan (time is driven through ``PeerNetwork.tick(now)``, so no test waits 30 s):
1. A member peer completes the handshake, then never answers: after
   PING_INTERVAL_S the node pings it, and PING_TIMEOUT_S later drops it with
   "ping timeout".
2. A member peer announces a block, is asked for it, and never sends it: after
   REQUEST_TIMEOUT_S the node drops it as stalled, and fetches the block from
   an honest peer that has it.
"""

from __future__ import annotations

import time
from pathlib import Path

from network.constants import PING_INTERVAL_S, PING_TIMEOUT_S, REQUEST_TIMEOUT_S
from network.messages import Announce, GetBlocks, GetHeaders, Headers, Ping
from tests.support.builders import make_member
from tests.support.network import FakePeer, TestNetwork, connect_nodes, sync_blocks, wait_until


async def test_peer_that_never_answers_pings_is_dropped(tmp_path: Path) -> None:
    silent = make_member("Silent")
    network = TestNetwork.create(tmp_path, 1, extra_members=[silent.member])
    node = network.nodes[0]
    fakes: list[FakePeer] = []
    await network.start()
    try:
        fake = FakePeer(silent, network.genesis, local_host="127.0.0.5")
        fakes.append(fake)
        await fake.open(node)
        await fake.handshake()
        await fake.receive(GetHeaders)  # every new peer is asked for headers: answer that, then go silent
        await fake.send(Headers(()))
        await wait_until(lambda: node.network.peers.get(silent.member_id) is not None
                         and node.network.peers[silent.member_id].headers_requested_at is None, 10,
                         "the silent peer's (empty) headers to be taken")
        peer = node.network.peers[silent.member_id]
        start = time.monotonic()
        node.network.tick(start + PING_INTERVAL_S + 1)
        await fake.receive(Ping)
        node.network.tick(start + PING_INTERVAL_S + PING_TIMEOUT_S + 2)
        await wait_until(lambda: silent.member_id not in node.network.peers, 10, "the silent peer to be dropped")
        assert peer.closing == "ping timeout"
        assert not node.network.bans.is_banned(member_id=silent.member_id)  # silence is not misbehaviour
    finally:
        for fake in fakes:
            await fake.close()
        await network.stop()


async def test_peer_that_never_sends_a_requested_block_is_dropped(tmp_path: Path) -> None:
    staller = make_member("Staller")
    network = TestNetwork.create(tmp_path, 2, extra_members=[staller.member])
    node, honest = network.nodes
    fakes: list[FakePeer] = []
    await network.start()
    try:
        record = await honest.add_record()
        await wait_until(lambda: honest.has_record_on_best_chain(record.record_id), 30, "the honest block")
        block_hash = honest.tip_hash
        fake = FakePeer(staller, network.genesis, local_host="127.0.0.6")
        fakes.append(fake)
        await fake.open(node)
        await fake.handshake()
        await fake.receive(GetHeaders)
        await fake.send(Headers(()))  # only the block request is left unanswered
        await fake.send(Announce(block_hash, honest.height))
        request = await fake.receive(GetBlocks)
        assert block_hash in request.hashes
        peer = node.network.peers[staller.member_id]
        node.network.tick(time.monotonic() + REQUEST_TIMEOUT_S + 1)
        await wait_until(lambda: staller.member_id not in node.network.peers, 10, "the staller to be dropped")
        assert peer.closing is not None and peer.closing.startswith("stalled")
        await connect_nodes(node, honest)
        await sync_blocks([node, honest])
    finally:
        for fake in fakes:
            await fake.close()
        await network.stop()
