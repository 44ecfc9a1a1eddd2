"""The node's aiohttp application factory: wiring of store, miner, network, plug-in and API.

State lives in ``web.AppKey``s; background work lives in ``app.cleanup_ctx``
(started in order, stopped in reverse).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from diagnostics.plugin import DiagnosticPlugin
from node.chain import ChainService
from node.config import NodeConfig
from node.genesis import Genesis, load_genesis
from node.hardening import HANDLER_ARGS, setup_hardening
from node.identity import NodeIdentity, load_identity
from node.metrics import METRICS, NodeMetrics, get_metrics
from node.miner import Miner
from node.store import AddResult, ChainStore

log = logging.getLogger("lungledger.node")

CONFIG = web.AppKey("config", NodeConfig)
IDENTITY = web.AppKey("identity", NodeIdentity)
GENESIS = web.AppKey("genesis", Genesis)
CHAIN = web.AppKey("chain", ChainService)
MINER = web.AppKey("miner", Miner)
PLUGIN: web.AppKey[DiagnosticPlugin | None] = web.AppKey("plugin")  # None: relay only


async def chain_context(app: web.Application) -> AsyncIterator[None]:
    config, genesis, identity = app[CONFIG], app[GENESIS], app[IDENTITY]
    store = await asyncio.to_thread(ChainStore, config.store_path, genesis.params, genesis.block, identity.member_id)
    chain = ChainService(store)
    app[CHAIN] = chain
    metrics = app[METRICS]
    chain.listeners.append(metrics.on_blocks)
    chain.rejection_listeners.append(metrics.on_rejected)
    metrics.set_sources(height=lambda: store.height, pending=store.pending_count)
    log.info("chain opened: height=%d tip=%s pending=%d", store.height, store.tip.block_hash.hex()[:16], store.pending_count())
    yield
    await chain.close()


async def miner_context(app: web.Application) -> AsyncIterator[None]:
    miner = Miner(app[CHAIN], app[IDENTITY])
    app[MINER] = miner

    async def wake_on_reorg(results: Sequence[AddResult], source: Any) -> None:
        if any(r.reorg is not None for r in results):
            miner.wake()

    app[CHAIN].listeners.append(wake_on_reorg)
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
        from diagnostics import load_plugin

        options = {"models_dir": str(config.models_dir), **config.plugin_options}
        plugin = await asyncio.to_thread(load_plugin, config.plugin, options)
        log.info("diagnostic plug-in %r loaded", config.plugin)
    else:
        log.info("no diagnostic plug-in: relay-only node")
    app[PLUGIN] = plugin
    yield
    close = getattr(plugin, "close", None)
    if close is not None:
        close()


def create_app(config: NodeConfig) -> web.Application:
    from node.api import error_middleware, setup_api
    from node.hospital import setup_hospital
    from node.p2p import setup_p2p

    app = web.Application(middlewares=[error_middleware], client_max_size=48 * 1024 * 1024,
                          handler_args=HANDLER_ARGS)
    app[CONFIG] = config
    app[METRICS] = NodeMetrics()
    app.router.add_get("/metrics", get_metrics)
    app[IDENTITY] = load_identity(config.data_dir)
    app[GENESIS] = load_genesis(config.resolved_genesis_path)
    if app[IDENTITY].member_id not in app[GENESIS].params.members_by_id:
        raise ValueError(f"this node ({app[IDENTITY].member_id.hex()}) is not a member listed in the genesis file")
    setup_hardening(app, config.data_dir, tip_source=lambda: app[CHAIN].store.tip.block_hash)
    app.cleanup_ctx.append(chain_context)
    app.cleanup_ctx.append(plugin_context)
    app.cleanup_ctx.append(miner_context)
    setup_p2p(app)
    setup_api(app)
    setup_hospital(app, config.hospital)
    return app
