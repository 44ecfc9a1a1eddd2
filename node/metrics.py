"""Prometheus metrics for one node (``GET /metrics``, text format).

Each app has its own CollectorRegistry, so several nodes in one process (the
tests) never share counters. Other parts of the node record into
``app[METRICS]``: the chain service (accepted / rejected blocks by reason,
reorgs), the API (diagnosis latency), the network (peers, sync progress).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest

from node.results import AddResult

disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series only add noise here

REORG_DEPTH_BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500)
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.height = Gauge("lungledger_chain_height", "Height of the best chain", registry=registry)
        self.peers = Gauge("lungledger_peers", "Connected peers", registry=registry)
        self.pending = Gauge("lungledger_pending_records", "Records waiting to be mined here (own and relayed by peers)",
                             registry=registry)
        self.records_relayed_in = Counter("lungledger_relayed_records_admitted",
                                          "Peers' relayed records admitted to the pending pool", registry=registry)
        self.equivocations = Gauge("lungledger_equivocations",
                                   "Equivocation evidence held: conflicting blocks signed by one member (/chain/evidence)",
                                   registry=registry)
        self.blocks_accepted = Counter("lungledger_blocks_accepted", "Blocks validated and stored", registry=registry)
        self.blocks_rejected = Counter("lungledger_blocks_rejected", "Blocks refused, by reason code", ["reason"], registry=registry)
        self.peer_bans = Counter("lungledger_peer_bans", "Peers banned, by reason", ["reason"], registry=registry)
        self.blocks_mined = Counter("lungledger_blocks_mined", "Blocks mined by this node", registry=registry)
        self.reorgs = Counter("lungledger_reorgs", "Switches of the best chain to another branch", registry=registry)
        self.reorg_depth = Histogram("lungledger_reorg_depth_blocks", "Blocks disconnected per reorg",
                                     buckets=REORG_DEPTH_BUCKETS, registry=registry)
        self.diagnosis_seconds = Histogram("lungledger_diagnosis_seconds", "POST /diagnoses latency (diagnose + store)",
                                           buckets=LATENCY_BUCKETS, registry=registry)
        self.diagnoses = Counter("lungledger_diagnoses", "Diagnoses recorded, by outcome", ["outcome"], registry=registry)
        self.sync_progress = Gauge("lungledger_sync_progress_ratio", "Best height / best height known from peers (1 = synced)",
                                   registry=registry)
        self.sync_progress.set(1.0)

    async def on_blocks(self, results: Sequence[AddResult], source: Any) -> None:
        for result in results:
            self.blocks_accepted.inc()
            if source == "miner":
                self.blocks_mined.inc()
            if result.reorg is not None:
                self.reorgs.inc()
                self.reorg_depth.observe(result.reorg.depth)
            if result.refused_deep:
                self.blocks_rejected.labels(reason="reorg-too-deep").inc()
            if result.refused_final:
                self.blocks_rejected.labels(reason="below-final").inc()

    def on_pending(self, records: Sequence[Any], source: Any) -> None:
        if source is not None:  # None: this node's own records
            self.records_relayed_in.inc(len(records))

    def on_rejected(self, reason: str) -> None:
        self.blocks_rejected.labels(reason=reason).inc()

    def on_ban(self, reason: str) -> None:
        self.peer_bans.labels(reason=reason).inc()

    def set_sources(self, height: Callable[[], float], pending: Callable[[], float], peers: Callable[[], float] | None = None,
                    equivocations: Callable[[], float] | None = None) -> None:
        """Gauges read at scrape time."""
        self.height.set_function(height)
        self.pending.set_function(pending)
        if equivocations is not None:
            self.equivocations.set_function(equivocations)
        if peers is not None:
            self.peers.set_function(peers)

    def render(self) -> bytes:
        return generate_latest(self.registry)
