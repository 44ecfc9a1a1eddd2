"""The peer network of one node: sessions, dispatch, bans and the housekeeping tick.

``PeerNetwork.handle_websocket`` is the aiohttp handler for inbound peers;
``start``/``stop`` run the outbound dialer, the block connector and the tick.
Messages are dispatched through a table {message type: handler}; a handler
raising ProtocolViolation gets the peer banned with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from network.backend import ChainBackend
from network.bans import BanList
from network.constants import (
    CONNECT_TIMEOUT_S,
    DEFAULT_MAX_PEERS,
    DEFAULT_OUTBOUND_PEERS,
    GET_PEERS_INTERVAL_S,
    MAX_FRAME_BYTES,
    P2P_PATH,
    PING_INTERVAL_S,
    PING_TIMEOUT_S,
    SHUTDOWN_GRACE_S,
    TICK_INTERVAL_S,
)
from network.discovery import Address, AddressBook, make_peers_message, parse_address
from network.admission import HandshakeAdmission
from network.errors import HandshakeTimeout, PeerGone, ProtocolViolation
from network.gossip import Gossip
from network.handshake import UNBOUND, ChannelBinding, LocalIdentity, perform_handshake
from network.messages import (
    Announce, Auth, Blocks, GetBlocks, GetHeaders, GetPeers, Headers, Hello, Message, NotFound, Peers, Ping, Pong,
    Records,
)
from network.peer import Direction, FrameChannel, Peer
from network.ratelimit import compute_flood_ban_s
from network.relay import RecordRelay
from network.sync import BlockSync
from network.tls import P2P_SERVER_NAME, NodeTls, TlsIdentityError

log = logging.getLogger("lungledger.net")
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
LOOPBACK_HOSTS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class NetworkSettings:
    listen_host: str
    listen_port: int
    bootstrap: tuple[str, ...] = ()
    max_peers: int = DEFAULT_MAX_PEERS
    outbound_peers: int = DEFAULT_OUTBOUND_PEERS
    tls: NodeTls | None = None  # None: plain WebSockets, sessions not channel-bound (development only)
    mines: bool = True  # told to peers in the hello (False: relay-only, the others do not wait for us to mine)


class PeerNetwork:
    def __init__(self, backend: ChainBackend, private_key: Ed25519PrivateKey, member_id: bytes,
                 settings: NetworkSettings, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock`` (monotonic seconds) drives every timeout, ban and back-off: tests pass their own."""
        self.backend = backend
        self.clock = clock
        self.settings = settings
        self.local = LocalIdentity(private_key, member_id, backend.chain_id, backend.params, settings.listen_port,
                                   settings.mines)
        self.peers: dict[bytes, Peer] = {}
        self.no_sessions = asyncio.Event()
        self.no_sessions.set()
        exempt = LOOPBACK_HOSTS if settings.listen_host in WILDCARD_HOSTS else (settings.listen_host,)
        self.bans = BanList(exempt_hosts=exempt, clock=clock)
        self.ban_listeners: list[Callable[[str], None]] = []  # called with each ban's reason
        self.book = AddressBook(member_id, lambda m: m in backend.params.members_by_id, clock)
        for text in settings.bootstrap:
            self.book.add_bootstrap(parse_address(text))
        self.bootstrap_members: dict[Address, bytes] = {}
        self.dialing: set[Address] = set()
        self.flood_offences: dict[bytes, int] = {}  # member id -> floods so far (the back-off doubles per repeat)
        self.admission = HandshakeAdmission(self.bans, self.book.get_member_hosts)
        self.sync = BlockSync(backend, self.get_peers, self.punish, clock)
        self.gossip = Gossip(backend, self.get_peers)
        self.relay = RecordRelay(backend, self.get_peers, clock)
        self.frames_sent_closed = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.client: aiohttp.ClientSession | None = None
        self.last_get_peers = 0.0
        self.handlers: dict[type, Callable[[Peer, Any], Awaitable[None]]] = {
            Announce: self.sync.on_announce,
            GetHeaders: self.sync.on_get_headers,
            Headers: self.sync.on_headers,
            GetBlocks: self.sync.on_get_blocks,
            Blocks: self.sync.on_blocks,
            NotFound: self.sync.on_not_found,
            Records: self.relay.on_records,
            GetPeers: self._on_get_peers,
            Peers: self._on_peers,
            Ping: self._on_ping,
            Pong: self._on_pong,
            Hello: self._on_handshake_again,
            Auth: self._on_handshake_again,
        }
        backend.subscribe(self.gossip.on_accepted)

    def add_handler(self, message_class: type, handler: Callable[[Peer, Any], Awaitable[None]]) -> None:
        """Route a message type to a handler outside network/ (the node's federated rounds)."""
        if message_class in self.handlers:
            raise ValueError(f"{message_class.__name__} already has a handler")
        self.handlers[message_class] = handler

    def broadcast(self, message: Message, skip: bytes | None = None) -> int:
        """Queue ``message`` to every connected peer but ``skip`` (a member id); returns how many."""
        targets = [peer for peer in self.get_peers() if peer.member_id != skip]
        for peer in targets:
            peer.send(message)
        return len(targets)

    # ------------------------------------------------------------ lifecycle
    def get_peers(self) -> list[Peer]:
        return list(self.peers.values())

    def get_non_mining_members(self) -> frozenset[bytes]:
        """Members connected to us whose hello said they do not mine (the miner skips them in its line)."""
        return frozenset(peer.member_id for peer in self.peers.values() if not peer.mines)

    @property
    def frames_sent(self) -> int:
        return self.frames_sent_closed + sum(p.frames_sent for p in self.peers.values())

    async def start(self) -> None:
        self.client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S))
        self._spawn(self.sync.run_connector(), "p2p-connector")
        self._spawn(self._tick_loop(), "p2p-tick")
        self._spawn(self.relay.run_sender(), "p2p-relay")

    async def stop(self) -> None:
        """Close every session and stop every task (safe to call twice)."""
        for peer in self.get_peers():
            peer.close("shutting down")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SHUTDOWN_GRACE_S):
                await self.no_sessions.wait()
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.close()
            self.client = None

    def _spawn(self, coroutine: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ------------------------------------------------------------ connections
    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        host = request.remote or "?"
        ban = self.bans.get_ban(host=host)
        if ban is not None:
            raise web.HTTPForbidden(text=f"banned: {ban.reason}")
        if len(self.peers) >= self.settings.max_peers:
            raise web.HTTPServiceUnavailable(text="no free peer slots")
        refusal = self.admission.get_refusal(host)
        if refusal is not None:
            raise web.HTTPServiceUnavailable(text=refusal)
        binding = self._get_inbound_binding(request)
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, autoping=True)
        await ws.prepare(request)
        await self._run_connection(FrameChannel(ws), "inbound", host, None, binding)
        return ws

    def _get_inbound_binding(self, request: web.Request) -> ChannelBinding:
        """With TLS on, only links showing a member-certified certificate may become peers."""
        tls = self.settings.tls
        if tls is None:
            return UNBOUND
        transport = request.transport
        try:
            return tls.get_binding(transport.get_extra_info("ssl_object") if transport is not None else None)
        except TlsIdentityError as error:
            raise web.HTTPForbidden(text=str(error)) from error

    async def connect(self, host: str, port: int, persistent: bool = False) -> Peer | None:
        """Dial a peer; return its session once the handshake is done (None on failure)."""
        if persistent:
            self.book.add_bootstrap((host, port))
        return await self._dial((host, port))

    async def _dial(self, address: Address) -> Peer | None:
        if address in self.dialing or self.client is None or self.bans.is_banned(host=address[0]):
            return None
        self.dialing.add(address)
        ready: asyncio.Future[Peer | None] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                ws, binding = await self._open_websocket(self.client, address)
        except (aiohttp.ClientError, OSError, TimeoutError, TlsIdentityError) as error:
            self.dialing.discard(address)
            self.book.on_dial_failed(address)
            log.debug("dial %s:%d failed: %s", address[0], address[1], error)
            return None
        self._spawn(self._run_connection(FrameChannel(ws), "outbound", address[0], address, binding, ready),
                    "p2p-session")
        return await ready

    async def _open_websocket(self, client: aiohttp.ClientSession,
                              address: Address) -> tuple[aiohttp.ClientWebSocketResponse, ChannelBinding]:
        tls = self.settings.tls
        host = f"[{address[0]}]" if ":" in address[0] else address[0]
        if tls is None:
            url = f"ws://{host}:{address[1]}{P2P_PATH}"
            return await client.ws_connect(url, max_msg_size=MAX_FRAME_BYTES, autoping=True), UNBOUND
        ws = await client.ws_connect(f"wss://{host}:{address[1]}{P2P_PATH}", max_msg_size=MAX_FRAME_BYTES,
                                     autoping=True, ssl=tls.client_context, server_hostname=P2P_SERVER_NAME)
        try:
            return ws, tls.get_binding(ws.get_extra_info("ssl_object"))
        except TlsIdentityError:
            await ws.close()
            raise

    async def _run_connection(self, channel: FrameChannel, direction: Direction, host: str, dialed: Address | None,
                              binding: ChannelBinding, ready: asyncio.Future[Peer | None] | None = None) -> None:
        peer = await self._open_session(channel, direction, host, dialed, binding)
        if ready is not None and not ready.done():
            ready.set_result(peer)
        if peer is None:
            await channel.close()
            return
        await self._serve(peer)

    async def _open_session(self, channel: FrameChannel, direction: Direction, host: str,
                            dialed: Address | None, binding: ChannelBinding) -> Peer | None:
        if direction == "inbound":
            self.admission.on_started(host)
        try:
            hello = await perform_handshake(channel, self.local, self.backend.height, binding)
            if dialed is not None:
                self.bootstrap_members[dialed] = hello.member_id
            name = self.backend.params.members_by_id[hello.member_id].name
            peer = Peer(channel, hello, direction, host, name, dialed[1] if dialed else None, self.clock)
            peer.channel_bound = binding.is_bound
            self._register(peer)
        except ProtocolViolation as violation:
            self._ban_unauthenticated(host, violation)
            return None
        except HandshakeTimeout:
            if direction == "inbound":
                self.admission.on_idle(host)
            log.info("peer %s: handshake timed out", host)
            if dialed is not None:
                self.book.on_dial_failed(dialed)
            return None
        except PeerGone as gone:
            log.info("peer %s refused during handshake: %s", host, gone)
            if dialed is not None:
                self.book.on_dial_failed(dialed)
            return None
        finally:
            if direction == "inbound":
                self.admission.on_ended(host)
            if dialed is not None:
                self.dialing.discard(dialed)
        if dialed is not None:
            self.book.on_dial_succeeded(dialed)
        self.admission.on_authenticated(host)
        return peer

    def _register(self, peer: Peer) -> None:
        ban = self.bans.get_ban(member_id=peer.member_id)
        if ban is not None:
            raise PeerGone(f"member is banned: {ban.reason}")
        existing = self.peers.get(peer.member_id)
        if existing is not None:
            # Both ends apply the same rule: keep the connection dialed by the lower member id.
            if self._initiator(peer) < self._initiator(existing):
                existing.close("duplicate connection")
            else:
                raise PeerGone("duplicate connection")
        elif len(self.peers) >= self.settings.max_peers:
            raise PeerGone("no free peer slots")
        self.peers[peer.member_id] = peer
        self.no_sessions.clear()

    def _initiator(self, peer: Peer) -> bytes:
        return self.local.member_id if peer.direction == "outbound" else peer.member_id

    async def _serve(self, peer: Peer) -> None:
        log.info("peer connected: %s %s (%s) %s height=%d", peer.member_id.hex()[:8], peer.name, peer.address,
                 peer.direction, peer.best_height)
        writer = self._spawn(peer.write_loop(), "p2p-writer")
        self.sync.on_peer_connected(peer)
        self._spawn(self.relay.send_pending(peer), "p2p-relay-pending")
        peer.send(GetPeers())
        try:
            while peer.closing is None:
                message = await peer.channel.receive_message()
                if not self._is_within_rate(peer, message):
                    continue
                handler = self.handlers.get(type(message))
                if handler is None:  # a node-level family this node does not run (e.g. federated rounds off)
                    log.debug("ignoring %s from %s: not handled by this node", message.TYPE, peer.member_id.hex()[:8])
                    continue
                await handler(peer, message)
        except ProtocolViolation as violation:
            self.punish(peer.member_id, violation.reason, violation.detail)
        except PeerGone as gone:
            peer.close(str(gone))
        except (aiohttp.ClientError, ConnectionError) as error:
            peer.close(f"connection error: {error}")
        finally:
            await self._end_session(peer, writer)

    async def _end_session(self, peer: Peer, writer: asyncio.Task[Any]) -> None:
        if self.peers.get(peer.member_id) is peer:
            del self.peers[peer.member_id]
        if not self.peers:
            self.no_sessions.set()
        peer.close(peer.closing or "closed")
        with contextlib.suppress(asyncio.TimeoutError, PeerGone, ConnectionError, aiohttp.ClientError):
            await asyncio.wait_for(writer, timeout=SHUTDOWN_GRACE_S)
        writer.cancel()
        await peer.channel.close()
        self.frames_sent_closed += peer.frames_sent
        self.sync.on_peer_gone(peer)
        log.info("peer disconnected: %s %s (%s) reason=%s", peer.member_id.hex()[:8], peer.name, peer.address, peer.closing)

    # ------------------------------------------------------------ bans
    def punish(self, member_id: bytes, reason: str, detail: str = "") -> None:
        """Ban a member (and its address) for misbehaviour, and disconnect it.

        The member id is banned only when the session is proven to be that
        member's end to end (TLS certified by its key); otherwise, as a relay
        could have made it, only the address is.
        """
        peer = self.peers.get(member_id)
        host = peer.host if peer is not None else None
        bound = peer.channel_bound if peer is not None else self.settings.tls is not None
        self.bans.ban(reason, member_id=member_id if bound else None, host=host)
        for listener in self.ban_listeners:
            listener(reason)
        log.warning("banned peer %s (%s) reason=%s %s", member_id.hex()[:8], host or "not connected", reason, detail)
        if peer is not None:
            peer.close(f"banned: {reason}")

    def _is_within_rate(self, peer: Peer, message: Message) -> bool:
        """Drop what is past the peer's rate for its type; a peer that keeps flooding is cut off for a while."""
        if peer.limiter.allow(message.TYPE, self.clock()):
            return True
        if peer.limiter.throttled == 1:
            log.warning("throttling peer %s %s: %s messages past their rate", peer.member_id.hex()[:8], peer.name,
                        message.TYPE)
        if peer.limiter.is_flooding and peer.closing is None:
            self._on_flood(peer, message.TYPE)
        return False

    def _on_flood(self, peer: Peer, message_type: str) -> None:
        offences = self.flood_offences.get(peer.member_id, 0) + 1
        self.flood_offences[peer.member_id] = offences
        duration = compute_flood_ban_s(offences)
        reason = f"flooding:{message_type}"
        self.bans.ban(reason, member_id=peer.member_id if peer.channel_bound else None, host=peer.host,
                      duration_s=duration)
        for listener in self.ban_listeners:
            listener(reason)
        log.warning("disconnected peer %s %s for flooding %s (offence %d): refused for %.0f s",
                    peer.member_id.hex()[:8], peer.name, message_type, offences, duration)
        peer.close(f"flooding {message_type}")

    def _ban_unauthenticated(self, host: str, violation: ProtocolViolation) -> None:
        keys = self.bans.ban(violation.reason, host=host)
        if keys:
            for listener in self.ban_listeners:
                listener(violation.reason)
        scope = "banned" if keys else "disconnected (own host, not banned)"
        log.warning("%s address %s before handshake reason=%s %s", scope, host, violation.reason, violation.detail)

    # ------------------------------------------------------------ small handlers
    async def _on_get_peers(self, peer: Peer, message: GetPeers) -> None:
        peer.send(make_peers_message(self.get_peers(), peer))

    async def _on_peers(self, peer: Peer, message: Peers) -> None:
        for address in message.peers:
            self.book.learn(address)

    async def _on_ping(self, peer: Peer, message: Ping) -> None:
        peer.send(Pong(message.nonce))

    async def _on_pong(self, peer: Peer, message: Pong) -> None:
        if message.nonce == peer.ping_nonce:
            peer.ping_ms = (self.clock() - peer.ping_sent_at) * 1000
            peer.ping_nonce = None

    async def _on_handshake_again(self, peer: Peer, message: Message) -> None:
        raise ProtocolViolation("unexpected-message", f"{message.TYPE} after the handshake")

    # ------------------------------------------------------------ housekeeping
    async def _tick_loop(self) -> None:
        while True:
            self.tick(self.clock())
            await asyncio.sleep(TICK_INTERVAL_S)

    def tick(self, now: float) -> None:
        for peer in self.sync.find_stalled_peers(now):
            peer.close("stalled: request timed out")
        for peer in self.get_peers():
            self._maybe_ping(peer, now)
        if now - self.last_get_peers > GET_PEERS_INTERVAL_S:
            self.last_get_peers = now
            for peer in self.get_peers():
                peer.send(GetPeers())
        for address in self._addresses_to_dial():
            self._spawn(self._dial(address), "p2p-dial")

    def _maybe_ping(self, peer: Peer, now: float) -> None:
        if peer.ping_nonce is not None:
            if now - peer.ping_sent_at > PING_TIMEOUT_S:
                peer.close("ping timeout")
        elif now - peer.ping_sent_at > PING_INTERVAL_S:
            peer.ping_nonce = secrets.randbits(64)
            peer.ping_sent_at = now
            peer.send(Ping(peer.ping_nonce))

    def _addresses_to_dial(self) -> list[Address]:
        if len(self.peers) >= self.settings.max_peers:
            return []
        connected = set(self.peers)
        due = [
            address for address in self.book.bootstrap
            if self.bootstrap_members.get(address) not in connected and address not in self.dialing
            and self.book.is_due(address)
        ]
        outbound = sum(1 for p in self.peers.values() if p.direction == "outbound") + len(self.dialing) + len(due)
        room = max(0, self.settings.outbound_peers - outbound)
        learned = self.book.get_candidates(connected | self.bans.get_banned_members(), self.dialing | set(due))
        return due + learned[:room]

    def get_peer_summaries(self) -> list[dict[str, Any]]:
        return [
            {
                "peer_id": peer.member_id.hex(), "name": peer.name, "address": peer.address,
                "height": peer.best_height, "direction": peer.direction,
                "connected_s": round(self.clock() - peer.connected_at, 1),
                "ping_ms": None if peer.ping_ms is None else round(peer.ping_ms, 2),
                "frames_sent": peer.frames_sent, "frames_received": peer.channel.frames_received,
            }
            for peer in self.get_peers()
        ]
