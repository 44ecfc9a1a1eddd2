"""Strangers and idle handshakes cannot keep members apart (issue 12, part 2).

Plan:
1. Nodes A and B keep each other as bootstrap peers; six rogue genesis members
   attack from their own addresses (127.0.0.50-55), and raw TCP sockets that
   never speak TLS come from 127.0.0.60.
2. B stops. The attack starts: every rogue address keeps two WebSockets open
   to each node and never sends `hello` (re-opening each one the node closes),
   filling A's handshake slots for strangers, and 20 raw sockets sit idle.
3. B restarts while the attack goes on: A and B are connected again within
   10 s (B's address is a known member's: reserved slots; our dials never
   wait for inbound slots; bootstrap redials back off at most 4 s).
4. Idle handshakes count against the address: rogue addresses are banned
   for `idle-handshakes`; no member id is banned anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from network.constants import MAX_HANDSHAKES_PER_ADDRESS, MAX_HANDSHAKING
from network.tls import NodeTls, build_node_tls
from tests.support.builders import MemberKeys, make_member
from tests.support.network import FakePeer, TestNetwork, TestNode, wait_until

RECONNECT_LIMIT_S = 10.0
ATTACK_WAIT_S = 120.0  # an attacker waits this long for a slot (B may be down meanwhile)


def may_start_handshake(target: TestNode, host: str) -> bool:
    """Whether ``target`` is up and would let ``host`` start a handshake now (what admission checks, read-only)."""
    if target.app is None:
        return False
    admission = target.network.admission
    return (not target.network.bans.is_banned(host=host) and admission.pending[host] < MAX_HANDSHAKES_PER_ADDRESS
            and admission.handshaking < MAX_HANDSHAKING)


async def hold_idle_handshake(rogue: MemberKeys, tls: NodeTls, network: TestNetwork, target: TestNode,
                              host: str) -> None:
    """Keep one WebSocket to ``target`` in the handshake, never answering; re-open it when closed.

    Re-opens as soon as the target would admit one (up, a slot free, the address not banned), so the
    attack is as fast as the node allows without spinning; ends once the address is banned.
    """
    assert network.genesis is not None
    while True:
        if target.app is not None and target.network.bans.is_banned(host=host):
            return
        await wait_until(lambda: may_start_handshake(target, host), ATTACK_WAIT_S, f"a handshake slot for {host}")
        fake = FakePeer(rogue, network.genesis, local_host=host, tls=tls)
        try:
            if await fake.open(target) == 101:
                with contextlib.suppress(ConnectionError, TimeoutError):
                    await fake.wait_closed(30)
        finally:
            await fake.close()


async def hold_raw_sockets(target: TestNode, host: str, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", target.port, local_addr=(host, 0))
        writers.append(writer)
    return writers


async def test_restarted_member_reconnects_while_attacker_holds_sockets(tmp_path: Path) -> None:
    rogues = [make_member(f"Rogue {i}") for i in range(6)]
    network = TestNetwork.create(tmp_path, 2, extra_members=[r.member for r in rogues])
    a, b = network.nodes
    attack: list[asyncio.Task[None]] = []
    raw: list[asyncio.StreamWriter] = []

    def linked() -> bool:
        return b.identity.member_id in a.connected_peer_ids() and a.identity.member_id in b.connected_peer_ids()

    try:
        # Each names the other as a bootstrap peer; ports are bound at start (port 0), so A restarts once
        # (same port) to learn B's.
        await a.start()
        network.configure(1, peers=(f"127.0.0.1:{a.port}",))
        await b.start()
        await a.stop()
        network.configure(0, peers=(f"127.0.0.1:{b.port}",))
        await a.start()
        await wait_until(linked, 20, "A and B to connect")

        # 2. B goes down; the attack fills A's stranger slots
        await b.stop()
        assert network.genesis is not None
        for number, rogue in enumerate(rogues):
            tls = build_node_tls(rogue.key, rogue.member_id, network.genesis.params.members)
            for target in (a, b):
                for _ in range(2):
                    attack.append(asyncio.ensure_future(
                        hold_idle_handshake(rogue, tls, network, target, f"127.0.0.{50 + number}")))
        raw = await hold_raw_sockets(a, "127.0.0.60", 20)
        await wait_until(lambda: a.network.admission.handshaking >= MAX_HANDSHAKING, 20, "the attack to fill A's slots")

        # 3. B restarts under attack
        started = time.monotonic()
        await b.start()
        await wait_until(linked, RECONNECT_LIMIT_S, "B to reconnect to A under attack")
        reconnect_s = time.monotonic() - started
        assert a.network.admission.handshaking >= MAX_HANDSHAKING - 2  # the attack was still on
        print(f"reconnected under attack in {reconnect_s:.2f} s; A refused {a.network.admission.refused} handshakes")

        # 4. idle handshakes cost the addresses, never a member
        await wait_until(lambda: any(a.network.bans.is_banned(host=f"127.0.0.{50 + n}") for n in range(6)), 30,
                         "an idle-handshake ban on A")
        reasons = {ban.reason for ban in a.network.bans.bans.values()}
        assert reasons == {"idle-handshakes"}, reasons
        for node in (a, b):
            assert not node.network.bans.get_banned_members()
        assert linked()
    finally:
        for task in attack:
            task.cancel()
        await asyncio.gather(*attack, return_exceptions=True)
        for writer in raw:
            writer.close()
        await network.stop()
