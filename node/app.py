"""The node's aiohttp application factory: wiring of store, miner, network, plug-in and API.

The root of ``node/``: it imports every part at the top and nothing in
``node/`` imports it. State lives in ``web.AppKey``s (``node/keys.py``);
background work lives in ``app.cleanup_ctx`` (started in order, stopped in
reverse); each route module registers its own routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from diagnostics import load_plugin
from node.api import setup_page_routes
from node.api_chain import setup_chain_routes
from node.api_diagnoses import setup_diagnosis_routes
from node.chain import ChainService
from node.config import NodeConfig
from node.federated import setup_federated
from node.api_dicom import setup_dicom
from node.api_events import setup_events
from node.api_worklist import setup_worklist
from node.auth import setup_auth
from node.genesis import load_genesis
from node.hardening import HANDLER_ARGS, setup_hardening
from node.hospital import setup_hospital
from node.http import error_middleware
from node.identity import load_identity
from node.keys import CHAIN, CONFIG, GENESIS, IDENTITY, METRICS, MINER, NETWORK, PLUGIN
from node.metrics import NodeMetrics
from node.miner import Miner
from node.p2p import setup_p2p
from node.results import AddResult
from node.store import ChainStore

__all__ = ["CHAIN", "CONFIG", "GENESIS", "IDENTITY", "METRICS", "MINER", "NETWORK", "PLUGIN", "create_app"]
log = logging.getLogger("lungledger.node")


async def chain_context(app: web.Application) -> AsyncIterator[None]:
    config, genesis, identity = app[CONFIG], app[GENESIS], app[IDENTITY]
    store = await asyncio.to_thread(ChainStore, config.store_path, genesis.params, genesis.block, identity.member_id)
    chain = ChainService(store)
    app[CHAIN] = chain
    metrics = app[METRICS]
    chain.listeners.append(metrics.on_blocks)
    chain.rejection_listeners.append(metrics.on_rejected)
    chain.record_listeners.append(metrics.on_pending)
    metrics.set_sources(height=lambda: chain.view.height, pending=lambda: chain.view.pending_count,
                        equivocations=lambda: len(chain.view.evidence))
    view = chain.view
    log.info("chain opened: height=%d tip=%s pending=%d", view.height, view.tip_hash.hex()[:16], view.pending_count)
    yield
    await chain.close()


async def miner_context(app: web.Application) -> AsyncIterator[None]:
    def get_non_mining() -> frozenset[bytes]:
        network = app.get(NETWORK)
        return frozenset() if network is None else network.get_non_mining_members()

    miner = Miner(app[CHAIN], app[IDENTITY], get_non_mining)
    app[MINER] = miner

    async def wake_on_tip_change(results: Sequence[AddResult], source: Any) -> None:
        miner.on_blocks([(r.meta.miner_id, r.meta.timestamp_ms) for r in results])
        # Any new tip: re-mined records after a reorg, or (signer limit) our turn to sign again.
        if any(r.tip_changed for r in results):
            miner.wake()

    app[CHAIN].listeners.append(wake_on_tip_change)
    app[CHAIN].record_listeners.append(miner.on_pending)
    app[CHAIN].entry_listeners.append(lambda entries: miner.wake())
    if not app[CONFIG].mine:
        log.info("mining disabled (mine: false): pending records are relayed for the other members to mine")
        yield
        miner.close()
        return
    task = asyncio.create_task(miner.run(), name="miner")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    miner.close()


async def plugin_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    plugin = None
    if config.plugin not in (None, "", "none"):
        options = {"models_dir": str(config.models_dir), **config.plugin_options}
        plugin = await asyncio.to_thread(load_plugin, config.plugin, options)
        log.info("diagnostic plug-in %r loaded", config.plugin)
    else:
        log.info("no diagnostic plug-in: relay-only node")
    app[PLUGIN] = plugin
    yield
    if plugin is not None:
        plugin.close()


def create_app(config: NodeConfig) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=48 * 1024 * 1024,
                          handler_args=HANDLER_ARGS)
    app[CONFIG] = config
    app[METRICS] = NodeMetrics()
    app[IDENTITY] = load_identity(config.data_dir)
    app[GENESIS] = load_genesis(config.resolved_genesis_path)
    if app[IDENTITY].member_id not in app[GENESIS].params.members_by_id:
        raise ValueError(f"this node ({app[IDENTITY].member_id.hex()}) is not a member listed in the genesis file")
    setup_hardening(app, config.data_dir, tip_source=lambda: app[CHAIN].view.tip_hash)
    app.cleanup_ctx.append(chain_context)
    app.cleanup_ctx.append(plugin_context)
    app.cleanup_ctx.append(miner_context)
    setup_p2p(app)
    setup_federated(app)
    setup_page_routes(app)
    setup_chain_routes(app)
    setup_diagnosis_routes(app)
    setup_auth(app)
    setup_worklist(app)
    setup_events(app)
    setup_dicom(app)
    setup_hospital(app, config.hospital)
    return app
