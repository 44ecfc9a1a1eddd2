"""Every ``web.AppKey`` of the node, in one leaf module (imports no other route or wiring module)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from diagnostics.plugin import DiagnosticPlugin
from network.service import PeerNetwork
from network.tls import NodeTls
from node.chain import ChainService
from node.config import NodeConfig
from node.genesis import Genesis
from node.identity import NodeIdentity
from node.metrics import NodeMetrics
from node.miner import Miner
from node.records import RecordKeys

CONFIG = web.AppKey("config", NodeConfig)
IDENTITY = web.AppKey("identity", NodeIdentity)
GENESIS = web.AppKey("genesis", Genesis)
METRICS = web.AppKey("metrics", NodeMetrics)
CHAIN = web.AppKey("chain", ChainService)
MINER = web.AppKey("miner", Miner)
PLUGIN: web.AppKey[DiagnosticPlugin | None] = web.AppKey("plugin")  # None: relay only
NETWORK = web.AppKey("network", PeerNetwork)
TLS: web.AppKey[NodeTls | None] = web.AppKey("tls")  # None: plain HTTP (development only)
RECORD_KEYS = web.AppKey("record_keys", RecordKeys)
DIAGNOSIS_SLOTS = web.AppKey("diagnosis_slots", asyncio.Semaphore)
CHAIN_VERIFY_TASK: web.AppKey[dict[str, asyncio.Future[dict[str, Any]]]] = web.AppKey("chain_verify_task")
