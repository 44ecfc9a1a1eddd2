"""Peer links are encrypted and bound to the member at each end (issue 12, part 1).

Plan:
1. Wire capture: node A dials node B through a TCP proxy that records every
   byte. With TLS (the default) B's block reaches A and the capture holds no
   plaintext of the protocol (no chain id, member id, user agent, record id,
   msgpack message type). The same run with ``tls: false`` shows them all, so
   the check can fail. (The checked bytes are B's, the server end: WebSocket
   frames from a client are XOR-masked, which hides nothing but defeats a
   substring search.)
2. Relay attack (the one of issue 12): a relay opens a link to A and one to B
   and forwards A's and B's `hello` and `auth` to each other, then sends junk.
   - With TLS, a relay that is not a member cannot open a link at all, and a
     relay that is a member (rogue C) is refused at B's and A's hello
     (`identity-mismatch`): its address is banned, no member is.
   - Without TLS (development mode) the forwarded handshake succeeds, but the
     sessions are not channel-bound, so the junk bans only the relay's
     address, never member A or B.
   Afterwards A and B still connect to each other.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from consensus.encoding import pack
from network.constants import USER_AGENT
from network.tls import build_node_tls
from tests.support.builders import make_member
from tests.support.network import FakePeer, TestNetwork, TestNode, connect_nodes, sync_blocks, wait_until


class RecordingProxy:
    """A TCP proxy to ``target`` that keeps every byte it forwards (both directions)."""

    def __init__(self, target: TestNode) -> None:
        self.target = target
        self.captured = bytearray()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target.port)
        await asyncio.gather(self._pump(reader, upstream_writer), self._pump(upstream_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                self.captured += data
                writer.write(data)
                await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
async def test_peer_traffic_is_unreadable_on_the_wire(tmp_path: Path, tls: bool) -> None:
    network = TestNetwork.create(tmp_path, 2, tls=tls)
    a, b = network.nodes
    await network.start()
    proxy = RecordingProxy(b)
    await proxy.start()
    try:
        await a.network.connect("127.0.0.1", proxy.port)
        await wait_until(lambda: b.identity.member_id in a.connected_peer_ids(), 20, "A to reach B through the proxy")
        record = await b.add_record()  # B (the server end) sends it: server frames are not masked
        await wait_until(lambda: a.has_record_on_best_chain(record.record_id), 30, "B's record to reach A")
        await sync_blocks(network.nodes)
        assert network.genesis is not None
        plaintext = {
            "chain id": network.genesis.chain_id, "B's member id": b.identity.member_id, "user agent": USER_AGENT.encode(),
            "record id": record.record_id, "hello type": pack("hello"), "block type": pack("blocks"),
        }
        visible = [name for name, needle in plaintext.items() if needle in proxy.captured]
        assert len(proxy.captured) > 1000  # the handshake and a block went through
        if tls:
            assert proxy.captured[:2] == b"\x16\x03"  # a TLS handshake record opens the stream
            assert visible == []
        else:
            assert set(visible) == set(plaintext)  # the same check catches a plain link
    finally:
        await proxy.stop()
        await network.stop()


async def relay_handshake(node_a: TestNode, node_b: TestNode, relay_a: FakePeer, relay_b: FakePeer) -> None:
    """Forward each node's hello and auth to the other node, then send each one junk."""
    assert relay_a.ws is not None and relay_b.ws is not None
    with contextlib.suppress(ConnectionError, TimeoutError, RuntimeError):
        async with asyncio.timeout(10):
            for _ in range(2):  # hello, then auth
                from_a, from_b = await asyncio.gather(relay_a.ws.receive(), relay_b.ws.receive())
                if from_a.type.name != "BINARY" or from_b.type.name != "BINARY":
                    break
                await relay_b.send_raw(from_a.data)
                await relay_a.send_raw(from_b.data)
            await relay_a.send_raw(b"\xc1 junk")
            await relay_b.send_raw(b"\xc1 junk")
    for relay in (relay_a, relay_b):
        with contextlib.suppress(ConnectionError, TimeoutError):
            await relay.wait_closed(10)
        await relay.close()


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plain"])
async def test_relay_cannot_make_members_ban_each_other(tmp_path: Path, tls: bool) -> None:
    rogue = make_member("Rogue relay")
    outsider = make_member("Outsider")
    network = TestNetwork.create(tmp_path, 2, extra_members=[rogue.member], tls=tls)
    a, b = network.nodes
    genesis = network.genesis
    assert genesis is not None
    await network.start()
    relay_host = "127.0.0.7"
    try:
        if tls:
            # An outsider's certificate (not certified by a member key) gets no link at all.
            stranger = FakePeer(outsider, genesis, local_host=relay_host,
                                tls=build_node_tls(outsider.key, outsider.member_id, [*genesis.params.members, outsider.member]))
            assert await stranger.open(a) == 0
        relay_a = FakePeer(rogue, genesis, local_host=relay_host)
        relay_b = FakePeer(rogue, genesis, local_host=relay_host)
        assert await relay_a.open(a) == 101 and await relay_b.open(b) == 101
        await relay_handshake(a, b, relay_a, relay_b)

        for node in (a, b):
            await wait_until(lambda node=node: node.network.bans.is_banned(host=relay_host), 10,  # type: ignore[misc]
                             f"node {node.index} to ban the relay's address")
        expected = "identity-mismatch" if tls else "malformed-frame"
        assert {node.network.bans.get_ban(host=relay_host).reason for node in (a, b)} == {expected}  # type: ignore[union-attr]
        assert not a.network.bans.is_banned(member_id=b.identity.member_id)
        assert not b.network.bans.is_banned(member_id=a.identity.member_id)
        await connect_nodes(a, b)
    finally:
        await network.stop()


