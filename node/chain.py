"""Async façade over the chain store.

Every store call runs on one dedicated thread (SQLite connection, validation,
fsync), never on the event loop. Listeners hear about every accepted block
after its transaction has committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from consensus.errors import ValidationError
from consensus.types import Block, DiagnosisRecord
from node.store import AddResult, ChainStore

log = logging.getLogger("lungledger.chain")
T = TypeVar("T")
BlockListener = Callable[[Sequence[AddResult], Any], Awaitable[None]]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class ChainService:
    def __init__(self, store: ChainStore, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.store = store
        self.clock_ms = clock_ms
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain-db")
        self.listeners: list[BlockListener] = []
        self.rejection_listeners: list[Callable[[str], None]] = []
        self.tip_changed = asyncio.Condition()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, function, *args)

    async def add_blocks(self, blocks: Sequence[Block], source: Any = None) -> list[AddResult]:
        """Validate and store; raises the first block's error after committing the good ones."""
        try:
            results = await self.run(self.store.add_blocks, blocks, self.clock_ms())
        except BaseException as error:
            partial = getattr(error, "partial_results", None)
            if partial:
                await self._announce(partial, source)
            if isinstance(error, ValidationError):
                log.warning("rejected block from %s: %s", source, error)
                for reject in self.rejection_listeners:
                    reject(error.code)
            raise
        await self._announce(results, source)
        return results

    async def add_pending_record(self, record: DiagnosisRecord, details: bytes | None = None) -> None:
        """Durably queue one of our records; returns after the commit (safe to acknowledge)."""
        await self.run(self.store.add_pending_record, record, details)

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
            meta.height, meta.block_hash.hex()[:16], meta.miner_id.hex()[:8], result.became_best,
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
        await self.run(self.store.close)
        self.executor.shutdown(wait=True)
