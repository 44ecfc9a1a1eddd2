"""A flooding member is throttled, then disconnected with a growing back-off (issue 12, part 4).

Plan:
1. Honest nodes A and B are connected; rogue member R connects to A.
2. R sends 400 pings at once: A answers no more than the ping bucket allows
   (burst 10 plus the refill), drops the rest, and past MAX_THROTTLED_MESSAGES
   drops disconnects R and refuses it for FLOOD_BAN_MIN_S (`flooding:ping`).
3. While refused, R's address gets 403 and R from another address is
   closed at the handshake (the member id is refused: TLS proved it).
4. Once the refusal is over (lifted by the test, as time passing would), R
   floods again: disconnected again, refused for twice as long.
5. B was never throttled and A and B still converge on new records.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import aiohttp

from network.codec import decode_message
from network.constants import FLOOD_BAN_MIN_S, MAX_THROTTLED_MESSAGES
from network.messages import Ping, Pong
from tests.support.builders import MemberKeys, make_member
from tests.support.network import (
    DEFAULT_TIMEOUT_S, FakePeer, TestNetwork, TestNode, connect_nodes, sync_blocks, wait_for_records, wait_until,
)

FLOOD = 400


async def flood_pings(rogue: MemberKeys, network: TestNetwork, node: TestNode) -> int:
    """Connect, send FLOOD pings in one go; return how many pongs came back before the node hung up."""
    assert network.genesis is not None
    fake = FakePeer(rogue, network.genesis, local_host="127.0.0.9")
    assert await fake.open(node) == 101
    await fake.handshake()
    for nonce in range(FLOOD):
        await fake.send(Ping(nonce))
    pongs = 0
    assert fake.ws is not None
    while True:
        frame = await fake.ws.receive(timeout=DEFAULT_TIMEOUT_S)
        if frame.type != aiohttp.WSMsgType.BINARY:
            break
        pongs += isinstance(decode_message(frame.data), Pong)
    await fake.close()
    return pongs


async def test_flooding_member_is_throttled_then_cut_off_for_longer_each_time(tmp_path: Path) -> None:
    rogue = make_member("Rogue")
    network = TestNetwork.create(tmp_path, 2, extra_members=[rogue.member])
    a, b = network.nodes
    await network.start()
    bans = a.network.bans
    try:
        await connect_nodes(a, b)
        started = time.monotonic()
        pongs = await flood_pings(rogue, network, a)
        elapsed = time.monotonic() - started
        assert pongs <= 10 + 2 * elapsed + 1, (pongs, elapsed)  # burst + refill: the rest were dropped
        assert FLOOD - pongs > MAX_THROTTLED_MESSAGES
        first = bans.get_ban(member_id=rogue.member_id)
        assert first is not None and first.reason == "flooding:ping"
        assert abs((first.until - bans.clock()) - FLOOD_BAN_MIN_S) < 10

        # 3. refused while the back-off lasts
        assert network.genesis is not None
        assert await FakePeer(rogue, network.genesis, local_host="127.0.0.9").open(a) == 403  # its address
        again = FakePeer(rogue, network.genesis, local_host="127.0.0.10")  # another address: the member is refused
        assert await again.open(a) == 101
        with contextlib.suppress(ConnectionError, TimeoutError):
            await again.handshake()
        await again.wait_closed()
        await again.close()
        assert rogue.member_id not in a.connected_peer_ids()

        # 4. it repeats: twice as long
        bans.unban_all()
        await flood_pings(rogue, network, a)
        second = bans.get_ban(member_id=rogue.member_id)
        assert second is not None and abs((second.until - bans.clock()) - 2 * FLOOD_BAN_MIN_S) < 10

        # 5. the honest peer was never throttled
        assert a.network.peers[b.identity.member_id].limiter.throttled == 0
        records = [await a.add_record(), await b.add_record()]
        await wait_for_records(network.nodes, [r.record_id for r in records])
        await sync_blocks(network.nodes)
        await wait_until(lambda: b.identity.member_id in a.connected_peer_ids(), 5, "A and B still connected")
    finally:
        await network.stop()
