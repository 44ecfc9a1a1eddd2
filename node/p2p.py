"""Wiring of the peer network into the node.

- ``ChainServiceBackend`` adapts the ChainService to network.backend.ChainBackend
  (network/ never imports node/).
- ``p2p_context`` (a cleanup context) starts the network after the chain is
  open and stops it before the chain closes.
- ``app[NETWORK]`` holds the running PeerNetwork; ``get_peer_summaries(app)``
  is what the HTTP API shows about peers.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from consensus.blocktree import ChainView
from consensus.types import Block, ChainParams, DiagnosisRecord
from network.backend import AcceptedBlock, AcceptListener, ConnectResult, RecordsListener, RecordsResult
from network.constants import P2P_PATH
from network.service import NetworkSettings, PeerNetwork
from network.tls import build_node_tls, compute_fingerprint
from node.chain import ChainService
from node.keys import CHAIN, CONFIG, GENESIS, IDENTITY, METRICS, NETWORK, TLS
from node.results import AddResult

log = logging.getLogger("lungledger.net")


class ChainServiceBackend:
    """The ChainBackend the network sees: reads the chain's published view, writes via the chain thread."""

    def __init__(self, chain: ChainService, chain_id: bytes) -> None:
        self.chain = chain
        self._chain_id = chain_id

    @property
    def chain_id(self) -> bytes:
        return self._chain_id

    @property
    def params(self) -> ChainParams:
        return self.chain.params

    @property
    def view(self) -> ChainView:
        return self.chain.view

    @property
    def tip_hash(self) -> bytes:
        return self.chain.view.tip_hash

    @property
    def height(self) -> int:
        return self.chain.view.height

    def has_block(self, block_hash: bytes) -> bool:
        return self.chain.view.has_block(block_hash)

    def get_height_of(self, block_hash: bytes) -> int | None:
        return self.chain.view.get_height_of(block_hash)

    def get_locator(self) -> list[bytes]:
        return self.chain.view.get_locator()

    async def get_headers_after(self, locator: Sequence[bytes], limit: int) -> list[bytes]:
        return await self.chain.get_headers_after(locator, limit)

    async def get_blocks(self, hashes: Sequence[bytes]) -> list[bytes | None]:
        return await self.chain.get_blocks_bytes(hashes)

    async def add_blocks(self, blocks: Sequence[Block], source: Any) -> ConnectResult:
        result = await self.chain.add_blocks(blocks, source)
        failed = None if result.failed is None else result.failed.block_hash
        return ConnectResult(_to_accepted(result.accepted), failed, result.failure, result.error)

    def subscribe(self, listener: AcceptListener) -> None:
        async def on_results(results: Sequence[AddResult], source: Any) -> None:
            await listener(_to_accepted(results), source)

        self.chain.listeners.append(on_results)

    async def add_records(self, records: Sequence[DiagnosisRecord], source: Any) -> RecordsResult:
        result = await self.chain.add_peer_records(records, source)
        return RecordsResult(result.accepted, result.ignored, result.refused, result.error, result.refused_by)

    async def get_pending_records(self, limit: int) -> list[DiagnosisRecord]:
        return await self.chain.get_pending(limit)

    def subscribe_records(self, listener: RecordsListener) -> None:
        self.chain.record_listeners.append(listener)


def _to_accepted(results: Sequence[AddResult]) -> list[AcceptedBlock]:
    return [AcceptedBlock(r.meta.block_hash, r.meta.height, r.tip_changed) for r in results]


BANS_FILE = "bans.json"


def save_bans(network: PeerNetwork, path: Path) -> None:
    """Write live bans atomically (temporary file, then rename), with the wall-clock time."""
    data = {"saved_at": time.time(), "bans": network.bans.to_records()}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=1))
    os.replace(temporary, path)


def load_bans(network: PeerNetwork, path: Path) -> None:
    """Restore bans saved at the last shutdown; a missing or damaged file only means none."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable ban list %s: %s", path, error)
        return
    if not isinstance(data, dict) or not isinstance(data.get("saved_at"), (int, float)):
        log.warning("ignoring malformed ban list %s", path)
        return
    elapsed = max(0.0, time.time() - float(data["saved_at"]))
    loaded = network.bans.load_records(data.get("bans"), elapsed)
    if loaded:
        log.info("restored %d bans from %s", loaded, path)


async def p2p_context(app: web.Application) -> AsyncIterator[None]:
    config, identity = app[CONFIG], app[IDENTITY]
    settings = NetworkSettings(config.host, config.port, tuple(config.peers), config.max_peers, config.outbound_peers,
                               app[TLS], mines=config.mine)
    backend = ChainServiceBackend(app[CHAIN], app[GENESIS].chain_id)
    network = PeerNetwork(backend, identity.private_key, identity.member_id, settings)
    app[NETWORK] = network
    metrics = app[METRICS]
    metrics.peers.set_function(lambda: len(network.peers))
    metrics.sync_progress.set_function(network.sync.get_progress)
    network.sync.rejection_listeners.append(metrics.on_rejected)
    network.ban_listeners.append(metrics.on_ban)
    bans_path = config.data_dir / BANS_FILE
    await asyncio.to_thread(load_bans, network, bans_path)
    await network.start()
    yield
    await network.stop()
    await asyncio.to_thread(save_bans, network, bans_path)


async def handle_p2p(request: web.Request) -> web.StreamResponse:
    return await request.app[NETWORK].handle_websocket(request)


def get_peer_summaries(app: web.Application) -> list[dict[str, Any]]:
    """Connected peers: peer_id, name, address, height, direction, connected_s, ping_ms, frames."""
    network = app.get(NETWORK)
    return [] if network is None else network.get_peer_summaries()


def get_server_ssl_context(app: web.Application) -> ssl.SSLContext | None:
    """What the listening socket must be served with (``web.TCPSite(..., ssl_context=...)``); None: plain HTTP."""
    tls = app.get(TLS)
    return None if tls is None else tls.server_context


def setup_tls(app: web.Application) -> None:
    """A fresh TLS key and a certificate certified by the member key, when the config asks for TLS."""
    config, identity = app[CONFIG], app[IDENTITY]
    if not config.tls:
        log.warning("TLS is off: plain HTTP and unencrypted peer links (development only)")
        app[TLS] = None
        return
    tls = build_node_tls(identity.private_key, identity.member_id, app[GENESIS].params.members, config.tls_cert,
                         config.tls_key)
    log.info("TLS certificate (certified by member %s) SHA-256 %s", identity.member_id.hex()[:8],
             compute_fingerprint(tls.certificate_der))
    app[TLS] = tls


def setup_p2p(app: web.Application) -> None:
    """Attach the peer network: TLS, the /p2p WebSocket route and its cleanup context."""
    setup_tls(app)
    app.router.add_get(P2P_PATH, handle_p2p)
    app.cleanup_ctx.append(p2p_context)
    app.on_shutdown.append(close_peers)


async def close_peers(app: web.Application) -> None:
    """On shutdown, before aiohttp waits for open handlers: end the peer sessions (the WebSocket handlers)."""
    network = app.get(NETWORK)
    if network is not None:
        await network.stop()
