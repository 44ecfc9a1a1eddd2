"""Async façade over the chain store: one thread writes, everyone else reads the view.

Every store call runs on one dedicated thread (SQLite connection, validation,
fsync), never on the event loop; only this module calls the store. After each
commit the store publishes a frozen ``ChainView`` with one reference swap;
the API, the network backend and the miner read the chain only through
:attr:`ChainService.view` and the typed queries below. Listeners hear about
every accepted block after its transaction has committed, and record
listeners about every record newly pending (this node's, or a peer's
relayed one) after its commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from consensus.blocktree import ChainView
from consensus.entries import GovernanceEntry
from consensus.merkle import compute_merkle_proof
from consensus.types import Block, ChainParams, DiagnosisRecord
from consensus.validation import BlockMeta
from node.records import RecordEvidence
from node.results import AddResult, BatchResult, RecordBatchResult
from node.governance_pool import EntryBatchResult
from node.store import ChainStore
from node.verify import ChainReport, verify_best_chain

log = logging.getLogger("lungledger.chain")
T = TypeVar("T")
BlockListener = Callable[[Sequence[AddResult], Any], Awaitable[None]]
RecordListener = Callable[[Sequence[DiagnosisRecord], Any], None]  # newly pending records, their source (None: ours)
EntryListener = Callable[[Sequence[GovernanceEntry]], None]  # newly pending governance entries


@dataclass(frozen=True)
class RecordLookup:
    """What the chain thread found about one record id, and the view it was found in."""

    evidence: RecordEvidence
    view: ChainView
    meta: BlockMeta | None = None  # the best-chain block holding it
    position: int | None = None


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class ChainService:
    def __init__(self, store: ChainStore, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self._store = store
        self.params: ChainParams = store.params
        self.genesis: Block = store.genesis
        self.clock_ms = clock_ms
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain-db")
        self.listeners: list[BlockListener] = []
        self.rejection_listeners: list[Callable[[str], None]] = []
        self.record_listeners: list[RecordListener] = []
        self.entry_listeners: list[EntryListener] = []
        self.tip_changed = asyncio.Condition()

    @property
    def view(self) -> ChainView:
        """The best chain as of the last commit (immutable; read it once per decision)."""
        return self._store.view

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, function, *args)

    # ----------------------------------------------------------------- writes
    async def add_blocks(self, blocks: Sequence[Block], source: Any = None) -> BatchResult:
        """Validate and store; the committed prefix is announced, the first failure reported."""
        result = await self._run(self._store.add_blocks, blocks, self.clock_ms())
        if result.accepted:
            await self._announce(result.accepted, source)
        if result.error is not None:
            log.warning("rejected block from %s: %s", source, result.error)
            for reject in self.rejection_listeners:
                reject(result.error.code)
        return result

    async def add_pending_record(self, record: DiagnosisRecord, details: bytes | None = None) -> None:
        """Durably queue one of our records; returns after the commit (safe to acknowledge)."""
        await self._run(self._store.add_pending_record, record, details)
        self._announce_records([record], None)

    async def add_peer_records(self, records: Sequence[DiagnosisRecord], source: Any) -> RecordBatchResult:
        """Offer records a peer relayed to the pending pool (validated on the chain thread); announce the new ones."""
        result = await self._run(self._store.add_peer_records, records)
        if result.accepted:
            self._announce_records(result.accepted, source)
        return result

    async def add_entries(self, entries: Sequence[GovernanceEntry], own: bool = False) -> EntryBatchResult:
        """Governance entries (this node's round actions, or a peer's round and metrics messages) into the pool."""
        store = self._store
        result = await self._run(store.governance.admit, entries, store.params, store.tree, own)
        if result.accepted:
            for listener in list(self.entry_listeners):
                listener(result.accepted)
        return result

    async def get_best_entries(self) -> tuple[ChainView, list[tuple[int, int, bytes, GovernanceEntry]]]:
        """The view and every governance entry on its best chain (height, block time, block hash, entry)."""
        return await self._run(lambda: (self._store.view, self._store.governance.get_best_entries()))

    async def get_pending_entries(self, limit: int) -> list[GovernanceEntry]:
        return await self._run(self._store.governance.pool.get_entries, limit)

    def _announce_records(self, records: Sequence[DiagnosisRecord], source: Any) -> None:
        for listener in list(self.record_listeners):
            listener(records, source)

    # ---------------------------------------------------------------- queries
    async def get_block(self, block_hash: bytes) -> Block | None:
        blocks = await self.get_blocks([block_hash])
        return blocks[0] if blocks else None

    async def get_blocks(self, hashes: Sequence[bytes]) -> list[Block]:
        """Stored blocks, in the order asked (unknown ones skipped)."""
        def read() -> list[Block]:
            return [self._store.get_block(h) for h in hashes if self._store.view.has_block(h)]

        return await self._run(read)

    async def get_blocks_bytes(self, hashes: Sequence[bytes]) -> list[bytes | None]:
        return await self._run(lambda: [self._store.get_block_bytes(h) for h in hashes])

    async def get_headers_after(self, locator: Sequence[bytes], limit: int) -> list[bytes]:
        return await self._run(self._store.get_best_headers_after, locator, limit)

    async def get_pending(self, limit: int) -> list[DiagnosisRecord]:
        return await self._run(self._store.pending.get_records, limit)

    async def get_pending_at_view(self, limit: int) -> tuple[ChainView, list[DiagnosisRecord]]:
        """The published view and the pending records as of that same commit (none of them is on its best chain).

        Read together on the chain thread: a block connecting between two separate
        reads could leave a record pending in one and on the chain of the other.
        """
        return await self._run(lambda: (self._store.view, self._store.pending.get_records(limit)))

    async def get_mining_batch(self, record_limit: int, entry_limit: int) -> tuple[
            ChainView, list[DiagnosisRecord], list[GovernanceEntry]]:
        """As :meth:`get_pending_at_view`, plus the pending governance entries a block on that tip may hold."""
        def read() -> tuple[ChainView, list[DiagnosisRecord], list[GovernanceEntry]]:
            view = self._store.view
            store = self._store
            return view, store.pending.get_records(record_limit), \
                store.governance.get_mineable(store.tree, view.tip, store.params, entry_limit)

        return await self._run(read)

    async def get_details(self, record_id: bytes) -> bytes | None:
        return await self._run(self._store.details.get, record_id)

    async def get_record_locations(self, record_ids: Sequence[bytes]) -> list[tuple[BlockMeta, int] | None]:
        """Where each record sits on the best chain now (block and position), or None if not there."""
        def read() -> list[tuple[BlockMeta, int] | None]:
            view = self._store.view
            return [self._store.get_record_location(record_id, view) for record_id in record_ids]

        return await self._run(read)

    async def is_record_on_best_chain(self, record_id: bytes) -> bool:
        return await self._run(lambda: self._store.get_record_location(record_id) is not None)

    async def get_record_evidence(self, record_id: bytes) -> RecordLookup:
        """The record (best chain or pending), its Merkle proof, its local details; block and position."""
        return await self._run(self._gather_evidence, record_id)

    def _gather_evidence(self, record_id: bytes) -> RecordLookup:
        store = self._store
        view = store.view
        location = store.get_record_location(record_id, view)
        details = store.details.get(record_id)
        if location is None:
            record = store.pending.get_record(record_id)
            creator = self.params.members_by_id.get(record.member_id) if record else None
            return RecordLookup(RecordEvidence(record, False, details=details, creator=creator), view)
        meta, position = location
        block = store.get_block(meta.block_hash)
        record = block.records[position]
        proof = compute_merkle_proof([r.record_hash for r in block.records], position)
        evidence = RecordEvidence(record, True, proof, block.header.merkle_root, details,
                                  self.params.members_by_id.get(record.member_id))
        return RecordLookup(evidence, view, meta, position)

    async def verify_best_chain(self) -> ChainReport:
        """Re-validate the best chain on its own thread and connection (never holds up the chain thread)."""
        return await asyncio.to_thread(verify_best_chain, self._store, self.clock_ms())

    # -------------------------------------------------------------- listeners
    async def _announce(self, results: Sequence[AddResult], source: Any) -> None:
        for result in results:
            self._log_result(result)
        if any(r.tip_changed for r in results):
            async with self.tip_changed:
                self.tip_changed.notify_all()
        for listener in list(self.listeners):
            await listener(results, source)

    @staticmethod
    def _log_result(result: AddResult) -> None:
        meta = result.meta
        log.info(
            "accepted block height=%d hash=%s miner=%s best=%s",
            meta.height, meta.block_hash.hex()[:16], meta.miner_id.hex()[:8], result.on_best_chain,
        )
        if result.reorg is not None:
            reorg = result.reorg
            log.warning(
                "reorg depth=%d fork_height=%d old_tip=%s new_tip=%s",
                reorg.depth, reorg.fork_height, reorg.old_tip.hex()[:16], reorg.new_tip.hex()[:16],
            )

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (bounded) until predicate() holds after a tip change."""
        try:
            async with asyncio.timeout(timeout):
                async with self.tip_changed:
                    await self.tip_changed.wait_for(predicate)
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        await self._run(self._store.close)
        self.executor.shutdown(wait=True)
