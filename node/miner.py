"""The miner: batches pending records (this node's and relayed ones) and governance entries into blocks, off the event loop.

Mines only when records or entries are pending (no empty blocks), in chunks of nonces on
a worker thread, and abandons the work as soon as the best tip changes.
Under the signer limit it builds only on a tip where this member may sign
(``consensus.signers.may_sign``); otherwise it sleeps until the tip changes
(the node wakes it on every tip change, ``node.app.miner_context``). Which
pending records are due is ``node.carry``'s: a record's creator mines it at
once when it may sign, otherwise the member in turn for the next height
(``node.carry.get_turn_line``, members known not to mine skipped) does, the
others only after records have waited their rank, so that two members seldom
mine on the same parent at once (each such race can leave two groups of nodes
with different final blocks: docs/CONSENSUS.md, threat model). The lock rule
(``consensus.locks``) keeps it off any branch that conflicts with the latest
block this member signed, until the lock is released (a final branch elsewhere,
or a best chain stuck for ``LOCK_RELEASE_MS``: a timer wakes it then). Pending governance
entries (``node.governance_pool``) that a block on the tip may hold ride along;
on their own they are due for the member in turn at once and for one ``rank``
places behind after ``rank × CARRY_DELAY_S`` on that tip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor

from consensus.builders import make_header_template, sign_block
from consensus.blocktree import ChainView
from consensus.locks import LOCK_RELEASED_FINAL, LOCK_RELEASED_STUCK, LockDecision, get_lock_decision
from consensus.pow import mine_header
from consensus.signers import signer_limit
from consensus.types import MAX_BLOCK_BYTES, BlockHeader, DiagnosisRecord
from network.gossip import OWN_BLOCK_SOURCE
from node.carry import CARRY_DELAY_S, LIVE_WINDOW_S, CarrySchedule, get_carry_rank, get_turn_line
from node.chain import ChainService
from node.identity import NodeIdentity

log = logging.getLogger("lungledger.miner")

MAX_RECORDS_PER_BLOCK = 200
MAX_ENTRIES_PER_BLOCK = 100  # at most 4 KiB each: well inside the block's half not given to records
MAX_RECORD_BYTES_PER_BLOCK = MAX_BLOCK_BYTES // 2
NONCES_PER_CHUNK = 4096


def select_records(pending: list[DiagnosisRecord]) -> list[DiagnosisRecord]:
    chosen, size = [], 0
    for record in pending[:MAX_RECORDS_PER_BLOCK]:
        size += len(record.encoded)
        if size > MAX_RECORD_BYTES_PER_BLOCK:
            break
        chosen.append(record)
    return chosen


class Miner:
    def __init__(self, chain: ChainService, identity: NodeIdentity,
                 get_non_mining: Callable[[], Collection[bytes]] = frozenset) -> None:
        """``get_non_mining()``: member ids whose sessions said they do not mine (skipped in the line)."""
        self.chain = chain
        self.identity = identity
        self.get_non_mining = get_non_mining
        self.wakeup = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="miner")
        self.blocks_mined = 0
        self.abandoned = 0
        self.mining_on: bytes | None = None  # parent hash of the block being mined, for status and tests
        self.waiting_for_turn: bytes | None = None  # tip this member may not sign after (signer limit)
        self.waiting_for_lock: bytes | None = None  # tip whose branch conflicts with this member's lock
        self.lock_releases: dict[str, int] = {}  # released-final / released-stuck: blocks signed after a release
        self.carry = CarrySchedule()
        self.wake_timer: asyncio.TimerHandle | None = None

    def wake(self) -> None:
        self.wakeup.set()

    def on_blocks(self, blocks: Sequence[tuple[bytes, int]]) -> None:
        """Blocks stored here, ``(miner id, timestamp ms)``, ours or peers': the miners of recent ones are
        signing (``node.carry``); old blocks (a sync of history) say nothing about who is online now."""
        since_ms = self.chain.clock_ms() - int(LIVE_WINDOW_S * 1000)
        for miner_id, timestamp_ms in blocks:
            if timestamp_ms >= since_ms:
                self.carry.on_block(miner_id)

    def on_pending(self, records: Sequence[DiagnosisRecord], source: object) -> None:
        """Records newly pending (ours, or relayed by a peer: their arrival starts their carry delay)."""
        self.carry.on_arrival(records, source)
        self.wake()

    def _wake_in(self, delay_s: float) -> None:
        """Wake when a deferred record is due (one timer: the earliest)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + delay_s
        timer = self.wake_timer
        if timer is None or timer.cancelled() or timer.when() <= loop.time() or due < timer.when():
            if timer is not None:
                timer.cancel()
            self.wake_timer = loop.call_at(due, self.wake)

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
        return self.identity.member_id in self.get_line(view)

    def get_line(self, view: ChainView) -> list[bytes]:
        """The in-turn line for the block after ``view``'s tip (``node.carry.get_turn_line``)."""
        members = [member.member_id for member in self.chain.params.members]
        recent = view.get_recent_miners(view.tip, signer_limit(len(members)) - 1)
        non_mining = set(self.get_non_mining()) - {self.identity.member_id}
        return get_turn_line(recent, members, view.height + 1, non_mining)

    def get_turn_rank(self, view: ChainView) -> int | None:
        """0 when in turn on ``view``'s tip, n when n eligible members come first, None when not eligible."""
        line = self.get_line(view)
        me = self.identity.member_id
        return line.index(me) if me in line else None

    def get_lock_decision(self, view: ChainView, now_ms: int) -> LockDecision:
        """May this member sign on ``view``'s tip under the lock rule (``consensus.locks``)?"""
        lock = view.latest_signed.get(self.identity.member_id)
        return get_lock_decision(view.metas, lock, view.tip, view.final, now_ms)

    async def _mine_once(self) -> bool:
        """Mine one block from due pending records; False when none is due or we may not sign."""
        view, pending, entries = await self.chain.get_mining_batch(MAX_RECORDS_PER_BLOCK, MAX_ENTRIES_PER_BLOCK)
        now_ms = self.chain.clock_ms()
        lock = self.get_lock_decision(view, now_ms)
        if not lock.allowed:
            self.waiting_for_lock = view.tip_hash if pending or entries else None
            self.waiting_for_turn = None
            if (pending or entries) and lock.release_at_ms is not None:
                self._wake_in(max(0.0, (lock.release_at_ms - now_ms) / 1000))
            return False  # the next tip change (or the release timer) wakes us
        self.waiting_for_lock = None
        line = self.get_line(view)
        me = self.identity.member_id
        if me not in line:
            self.waiting_for_turn = view.tip_hash if pending or entries else None
            return False  # the signer limit: the next tip change wakes us
        self.waiting_for_turn = None
        # Creator first, unless another eligible creator's record is pending here too (two uploading at
        # once): then our own records wait in the line as well, so the two creators do not race. Nobody
        # goes first without recent blocks of a majority (node.carry: a minority must batch).
        majority = 1 + self.carry.count_live_signers(me) >= signer_limit(len(self.chain.params.members))
        rival = any(r.member_id != me and r.member_id in line for r in pending)

        def rank_of(record: DiagnosisRecord) -> int:
            creator_first = majority and (record.member_id != me or not rival)
            rank = get_carry_rank(me, record.member_id, line, creator_first)
            return 0 if rank is None else rank  # never None: ``me`` is in the line

        due, wait_s = self.carry.get_due(pending, rank_of, view.tip_hash)
        if entries and not due:
            entries_wait = self.carry.tip_seen + line.index(me) * CARRY_DELAY_S - self.carry.clock()
            if entries_wait > 0:
                entries = []
                wait_s = entries_wait if wait_s is None else min(wait_s, entries_wait)
        if wait_s is not None:
            self._wake_in(wait_s)
        records = select_records(due)
        if not records and not entries:
            return False
        parent = view.tip
        # Never before now_ms: a block signed after a lock release must show the release (consensus.locks).
        timestamp = max(self.chain.clock_ms(), now_ms, view.get_median_time_past(parent) + 1)
        header = make_header_template(parent, records, timestamp, self.chain.params.difficulty, self.identity.member_id,
                                      entries)
        solved = await self._solve(header, parent.block_hash)
        if solved is None:
            self.abandoned += 1
            return True  # tip moved: rebuild the template on the new tip
        block = sign_block(solved, records, self.identity.private_key, entries)
        result = await self.chain.add_blocks([block], source=OWN_BLOCK_SOURCE)
        if result.failure is not None:
            log.warning("mined block refused: %s", result.error or result.failure)
            return False
        self.blocks_mined += 1
        if lock.reason in (LOCK_RELEASED_FINAL, LOCK_RELEASED_STUCK):
            self.lock_releases[lock.reason] = self.lock_releases.get(lock.reason, 0) + 1
            log.info("lock released (%s): signed %s", lock.reason, block.block_hash.hex()[:16])
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
        if self.wake_timer is not None:
            self.wake_timer.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
