"""Functional-test framework: real nodes on loopback ports, in this process.

Nodes are the real aiohttp application from ``node.app.create_app`` served by
``web.AppRunner`` on 127.0.0.1, each with its own SQLite store in a temp dir.
They run in the test's event loop rather than as subprocesses because tests
must reach into a node (add a record through its ChainService, wake its
miner, read its store, inspect its ban list) without an HTTP API for each,
and because in-process nodes start in milliseconds, which keeps the suite
fast on two cores. Everything between nodes still goes over real sockets.

Helpers follow Bitcoin Core's test_framework/util.py: ``wait_until``,
``sync_blocks``, ``connect_nodes``, ``disconnect_nodes``. A ``FakePeer``
speaks the wire protocol directly for misbehaviour tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from consensus.blocktree import ChainView
from consensus.crypto import HANDSHAKE_DOMAIN, sign
from harness.util import wait_until_async
from consensus.types import Block, DiagnosisRecord, Member
from network.codec import decode_message, encode_message
from network.constants import MAX_FRAME_BYTES, P2P_PATH
from network.handshake import UNBOUND, ChannelBinding, LocalIdentity, compute_handshake_message, make_hello
from network.tls import P2P_SERVER_NAME, NodeTls, build_node_tls
from network.messages import Auth, Hello, Message
from network.service import PeerNetwork
from node.app import CHAIN, MINER, NETWORK
from node.chain import ChainService
from node.config import NodeConfig
from node.genesis import Genesis, build_genesis, write_genesis
from node.identity import NodeIdentity, init_identity
from node.launcher import LaunchedNode, launch_node
from node.miner import Miner
from node.store import ChainStore
from tests.support.builders import MemberKeys, make_record

DEFAULT_TIMEOUT_S = 30.0
# Re-exported for the tests: one implementation of each (harness/util.py).
wait_until = wait_until_async
# Genesis three hours back leaves room for pre-built chains with 1 s block spacing.
GENESIS_AGE_MS = 3 * 60 * 60 * 1000


@dataclass
class TestNode:
    __test__ = False  # not a pytest test class

    index: int
    config: NodeConfig
    identity: NodeIdentity
    launched: LaunchedNode | None = None

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def chain(self) -> ChainService:
        return self._app[CHAIN]

    @property
    def view(self) -> ChainView:
        """The node's chain as of its last commit."""
        return self.chain.view

    @property
    def network(self) -> PeerNetwork:
        return self._app[NETWORK]

    @property
    def miner(self) -> Miner:
        return self._app[MINER]

    @property
    def app(self) -> web.Application | None:
        return None if self.launched is None else self.launched.app

    @property
    def _app(self) -> web.Application:
        if self.launched is None:
            raise RuntimeError(f"node {self.index} is not running")
        return self.launched.app

    @property
    def member(self) -> MemberKeys:
        return MemberKeys(self.identity.private_key, self.identity.member)

    @property
    def tip_hash(self) -> bytes:
        return self.view.tip_hash

    @property
    def height(self) -> int:
        return self.view.height

    async def start(self) -> None:
        """Through the node launcher: port 0 on the first start, the same port on a restart."""
        self.launched = await launch_node(self.config)
        self.config = self.launched.config

    @property
    def base_url(self) -> str:
        assert self.launched is not None, "the node is not running"
        return self.launched.url

    async def stop(self) -> None:
        if self.launched is not None:
            await self.launched.stop()
        self.launched = None

    async def add_record(self) -> DiagnosisRecord:
        """Create, sign and durably queue one record of this node, and wake its miner."""
        record = make_record(self.member, created_ms=int(time.time() * 1000), record_id=os.urandom(16))
        await self.chain.add_pending_record(record)
        self.miner.wake()
        return record

    async def has_record_on_best_chain(self, record_id: bytes) -> bool:
        return await self.chain.is_record_on_best_chain(record_id)

    def connected_peer_ids(self) -> set[bytes]:
        return set(self.network.peers) if self.app is not None else set()


@dataclass
class TestNetwork:
    """N nodes sharing one genesis (plus optional extra members, e.g. for fake peers)."""

    __test__ = False

    root: Path
    nodes: list[TestNode] = field(default_factory=list)
    genesis: Genesis | None = None

    @classmethod
    def create(cls, root: Path, count: int, difficulty: int = 1, extra_members: Sequence[Member] = (),
               max_reorg_depth: int = 100, **config: Any) -> TestNetwork:
        """Keys, data dirs and a shared genesis; nodes are not started (config: NodeConfig fields)."""
        identities = [init_identity(root / f"node{i}", f"Hospital {i}") for i in range(count)]
        members = [identity.member for identity in identities] + list(extra_members)
        genesis = build_genesis("functional-test", members, int(time.time() * 1000) - GENESIS_AGE_MS,
                                difficulty, max_reorg_depth)
        genesis_path = root / "genesis.json"
        write_genesis(genesis_path, genesis)
        settings: dict[str, Any] = {"plugin": "none", "outbound_peers": 0, "log_level": "INFO", **config}
        network = cls(root=root, genesis=genesis)
        for i, identity in enumerate(identities):
            node_config = NodeConfig(data_dir=root / f"node{i}", port=0, genesis_path=genesis_path, **settings)
            network.nodes.append(TestNode(i, node_config, identity))
        return network

    def configure(self, index: int, **changes: Any) -> None:
        node = self.nodes[index]
        node.config = replace(node.config, **changes)

    async def start(self, indexes: Sequence[int] | None = None) -> None:
        for i in range(len(self.nodes)) if indexes is None else indexes:
            await self.nodes[i].start()

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()

    def preload(self, index: int, blocks: Sequence[Block]) -> None:
        """Write blocks straight into a (stopped) node's store, as if it had them already."""
        node = self.nodes[index]
        assert self.genesis is not None
        store = ChainStore(node.config.store_path, self.genesis.params, self.genesis.block, node.identity.member_id)
        try:
            for start in range(0, len(blocks), 500):
                store.add_blocks(blocks[start:start + 500], int(time.time() * 1000))
        finally:
            store.close()


async def connect_nodes(a: TestNode, b: TestNode, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Dial b from a (one-shot, not persistent) and wait until both see the session."""
    await a.network.connect(b.config.host, b.port)
    await wait_until(lambda: b.identity.member_id in a.connected_peer_ids() and a.identity.member_id in b.connected_peer_ids(),
                     timeout, f"node {a.index} and node {b.index} to connect")


async def connect_all(nodes: Sequence[TestNode]) -> None:
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            await connect_nodes(a, b)


async def disconnect_nodes(a: TestNode, b: TestNode, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    peer = a.network.peers.get(b.identity.member_id)
    if peer is not None:
        peer.close("disconnected by the test")
    await wait_until(lambda: b.identity.member_id not in a.connected_peer_ids() and a.identity.member_id not in b.connected_peer_ids(),
                     timeout, f"node {a.index} and node {b.index} to disconnect")


async def sync_blocks(nodes: Sequence[TestNode], timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Wait until every node has the same best tip."""
    await wait_until(lambda: len({node.tip_hash for node in nodes}) == 1, timeout,
                     "tips to agree: " + ", ".join(f"node{n.index}@{n.height}" for n in nodes))


async def wait_for_records(nodes: Sequence[TestNode], record_ids: Sequence[bytes], timeout: float = DEFAULT_TIMEOUT_S) -> None:
    async def all_on_best_chain() -> bool:
        return all([await n.has_record_on_best_chain(r) for n in nodes for r in record_ids])

    await wait_until(all_on_best_chain, timeout, f"{len(record_ids)} records on every node's best chain")


class FakePeer:
    """A hand-driven peer speaking the wire protocol, for misbehaviour tests.

    ``local_host`` picks the loopback source address (127.0.0.0/8), so that an
    address ban of the fake peer does not hit the honest nodes on 127.0.0.1.
    """

    def __init__(self, member: MemberKeys, genesis: Genesis, local_host: str = "127.0.0.1",
                 tls: NodeTls | None = None) -> None:
        """``tls``: the client side of the link (default: a certificate certified by ``member``'s key)."""
        self.member = member
        self.genesis = genesis
        self.local_host = local_host
        self.tls = tls or build_node_tls(member.key, member.member_id, genesis.params.members)
        self.binding: ChannelBinding = UNBOUND
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.received: list[Message] = []

    async def open(self, node: TestNode) -> int:
        """Open the WebSocket (over TLS when the node serves it).

        Returns the HTTP status (101 when upgraded), or 0 when TLS refused the link.
        """
        connector = aiohttp.TCPConnector(local_addr=(self.local_host, 0))
        self.session = aiohttp.ClientSession(connector=connector)
        scheme = "wss" if node.config.tls else "ws"
        try:
            self.ws = await self.session.ws_connect(f"{scheme}://{node.config.host}:{node.port}{P2P_PATH}",
                                                    max_msg_size=4 * MAX_FRAME_BYTES, ssl=self.tls.client_context,
                                                    server_hostname=P2P_SERVER_NAME if node.config.tls else None)
        except aiohttp.WSServerHandshakeError as error:
            await self.session.close()
            return error.status
        except (aiohttp.ClientError, OSError):
            await self.session.close()
            return 0  # refused below HTTP: TLS did not accept our certificate
        if node.config.tls:
            self.binding = self.tls.get_binding(self.ws.get_extra_info("ssl_object"))
        return 101

    async def handshake(self) -> Hello:
        local = LocalIdentity(self.member.key, self.member.member_id, self.genesis.chain_id, self.genesis.params, 0)
        nonce = os.urandom(32)
        await self.send(make_hello(local, nonce, 0))
        hello = await self.receive(Hello)
        signed = compute_handshake_message(local.chain_id, local.member_id, hello.member_id, nonce, hello.nonce,
                                           self.binding.own_certificate_hash, self.binding.peer_certificate_hash)
        await self.send(Auth(sign(self.member.key, HANDSHAKE_DOMAIN, signed)))
        await self.receive(Auth)
        return hello

    async def send(self, message: Message) -> None:
        await self.send_raw(encode_message(message))

    async def send_raw(self, frame: bytes) -> None:
        """Send bytes as one binary frame (the node may hang up while a big one is still going out)."""
        assert self.ws is not None
        with contextlib.suppress(ConnectionError):
            await self.ws.send_bytes(frame)

    async def receive(self, wanted: type, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
        """The next message of type ``wanted`` (others are kept in ``received``)."""
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.ws.receive()
                if frame.type != aiohttp.WSMsgType.BINARY:
                    raise ConnectionError(f"connection ended: {frame.type.name}")
                message = decode_message(frame.data)
                if isinstance(message, wanted):
                    return message
                self.received.append(message)

    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            while (await self.ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                                          aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                pass

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()


def build_chain(network: TestNetwork, miner: TestNode, count: int, others: Sequence[MemberKeys] = ()) -> list[Block]:
    """``count`` valid blocks on the network's genesis, 1 s apart: ``miner``'s key first, then the other
    nodes' keys and ``others`` (extra members' keys) in turn. The signer limit needs at least
    ``N // 2 + 1`` of them when ``count`` is more than their number."""
    from consensus.signers import signer_limit
    from tests.support.builders import build_branch

    assert network.genesis is not None
    rotation = [miner.member] + [node.member for node in network.nodes if node is not miner] + list(others)
    if count > len(rotation) and len(rotation) < signer_limit(len(network.genesis.params.members)):
        raise ValueError(f"{len(rotation)} miners cannot take turns under the signer limit of "
                         f"{len(network.genesis.params.members)} members: pass more keys in others")
    return build_branch(network.genesis.block, 0, rotation, count, difficulty=network.genesis.params.difficulty)
