"""The miner: batches this node's pending records into blocks, off the event loop.

Mines only when records are pending (no empty blocks), in chunks of nonces on
a worker thread, and abandons the work as soon as the best tip changes.
Under the signer limit it builds only on a tip where this member may sign
(``consensus.signers.may_sign``); otherwise it sleeps until the tip changes
(the node wakes it on every tip change, ``node.app.miner_context``). A member
out of turn (``consensus.signers.compute_turn_rank``) first waits
``rank * OUT_OF_TURN_DELAY_S`` for the in-turn member's block, so that two
members seldom mine on the same parent at once (each such race can leave two
groups of nodes with different final blocks: docs/CONSENSUS.md, threat model).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from consensus.builders import make_header_template, sign_block
from consensus.blocktree import ChainView
from consensus.pow import mine_header
from consensus.signers import compute_turn_rank, signer_limit
from consensus.types import MAX_BLOCK_BYTES, BlockHeader, DiagnosisRecord
from node.chain import ChainService
from node.identity import NodeIdentity

log = logging.getLogger("lungledger.miner")

MAX_RECORDS_PER_BLOCK = 200
MAX_RECORD_BYTES_PER_BLOCK = MAX_BLOCK_BYTES // 2
NONCES_PER_CHUNK = 4096
OUT_OF_TURN_DELAY_S = 0.25  # per place in line behind the in-turn member


def select_records(pending: list[DiagnosisRecord]) -> list[DiagnosisRecord]:
    chosen, size = [], 0
    for record in pending[:MAX_RECORDS_PER_BLOCK]:
        size += len(record.encoded)
        if size > MAX_RECORD_BYTES_PER_BLOCK:
            break
        chosen.append(record)
    return chosen


class Miner:
    def __init__(self, chain: ChainService, identity: NodeIdentity) -> None:
        self.chain = chain
        self.identity = identity
        self.wakeup = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miner")
        self.blocks_mined = 0
        self.abandoned = 0
        self.mining_on: bytes | None = None  # parent hash of the block being mined, for status and tests
        self.waiting_for_turn: bytes | None = None  # tip this member may not sign after (signer limit)
        self.out_of_turn_delay_s = OUT_OF_TURN_DELAY_S
        self.yielded = 0  # times another member's block came while we waited our place in line

    def wake(self) -> None:
        self.wakeup.set()

    async def run(self) -> None:
        """Mine until cancelled. Wakes on new pending records and on tip changes."""
        self.wakeup.set()
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while await self._mine_once():
                pass

    def is_eligible(self, view: ChainView) -> bool:
        """May this member sign the block after ``view``'s tip (the signer limit)?"""
        return self.get_turn_rank(view) is not None

    def get_turn_rank(self, view: ChainView) -> int | None:
        """0 when in turn on ``view``'s tip, n when n eligible members come first, None when not eligible."""
        members = [member.member_id for member in self.chain.params.members]
        recent = view.get_recent_miners(view.tip, signer_limit(len(members)) - 1)
        return compute_turn_rank(self.identity.member_id, recent, members, view.height + 1)

    async def _wait_for_turn(self, view: ChainView, rank: int) -> bool:
        """Out of turn: wait ``rank`` delays; False if the tip moved meanwhile (start again on the new tip)."""
        deadline = asyncio.get_running_loop().time() + rank * self.out_of_turn_delay_s
        while self.chain.view.tip_hash == view.tip_hash:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return True
            self.wakeup.clear()  # set by tip changes (and new records: harmless, we look again)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), left)
        self.yielded += 1
        return False

    async def _mine_once(self) -> bool:
        """Mine one block from pending records; False when nothing is pending or it is not our turn."""
        records = select_records(await self.chain.get_pending(MAX_RECORDS_PER_BLOCK))
        if not records:
            return False
        view = self.chain.view
        rank = self.get_turn_rank(view)
        if rank is None:
            self.waiting_for_turn = view.tip_hash
            return False  # wait: the next tip change wakes us
        self.waiting_for_turn = None
        if rank and not await self._wait_for_turn(view, rank):
            return True  # another member's block came first: look again on the new tip
        parent = view.tip
        timestamp = max(self.chain.clock_ms(), view.get_median_time_past(parent) + 1)
        header = make_header_template(parent, records, timestamp, self.chain.params.difficulty, self.identity.member_id)
        solved = await self._solve(header, parent.block_hash)
        if solved is None:
            self.abandoned += 1
            return True  # tip moved: rebuild the template on the new tip
        block = sign_block(solved, records, self.identity.private_key)
        result = await self.chain.add_blocks([block], source="miner")
        if result.failure is not None:
            log.warning("mined block refused: %s", result.error or result.failure)
            return False
        self.blocks_mined += 1
        return True

    async def _solve(self, header: BlockHeader, parent_hash: bytes) -> BlockHeader | None:
        """Search nonces chunk by chunk on the worker thread; None once the tip has moved."""
        loop = asyncio.get_running_loop()
        start = 0
        self.mining_on = parent_hash
        try:
            while True:
                solved = await loop.run_in_executor(self.executor, mine_header, header, start, NONCES_PER_CHUNK)
                if self.chain.view.tip_hash != parent_hash:
                    return None
                if solved is not None:
                    return solved
                start += NONCES_PER_CHUNK
        finally:
            self.mining_on = None

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
