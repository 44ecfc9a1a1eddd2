"""Durable chain store on SQLite (standard library).

Tables: raw canonical block bytes with their index (hash, parent, height,
cumulative work, status), the best chain by height, the record index
(record id -> blocks holding it), this node's pending records, and meta.
WAL mode with ``synchronous=FULL``; every state change is one transaction, and
callers acknowledge a record only after :meth:`ChainStore.add_pending_record`
has returned (the commit is durable then).

The store is synchronous and guarded by one lock; the node runs it on a
single dedicated thread so validation and fsyncs never block the event loop.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from consensus.builders import compute_block_meta
from consensus.encoding import unpack
from consensus.errors import ValidationError
from consensus.forkchoice import ForkDecision, ForkSide, on_candidate_tip
from consensus.types import MAX_RECORD_BYTES, Block, ChainParams, DiagnosisRecord
from consensus.validation import (
    MEDIAN_TIME_SPAN,
    BlockMeta,
    compute_median_time_past,
    validate_block,
    validate_genesis,
    validate_header,
)

log = logging.getLogger("lungledger.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    hash BLOB PRIMARY KEY, parent BLOB NOT NULL, height INTEGER NOT NULL,
    chain_work INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL, miner BLOB NOT NULL,
    status INTEGER NOT NULL, header BLOB NOT NULL, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS best_chain (height INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    record_id BLOB NOT NULL, block_hash BLOB NOT NULL, position INTEGER NOT NULL,
    PRIMARY KEY (record_id, block_hash));
CREATE INDEX IF NOT EXISTS records_by_block ON records (block_hash);
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id BLOB UNIQUE NOT NULL, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS details (record_id BLOB PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""
STATUS_VALID = 1


class MissingParent(Exception):
    """The block's parent is unknown: fetch it, do not drop the block."""

    def __init__(self, block: Block) -> None:
        super().__init__(f"parent {block.header.prev_hash.hex()} of block {block.block_hash.hex()} is unknown")
        self.block = block


class DuplicateBlock(Exception):
    """The block is already stored (ignorable)."""


class StoreCorrupt(RuntimeError):
    """The store on disk does not match its genesis or its own index."""


@dataclass(frozen=True)
class Reorg:
    depth: int
    old_tip: bytes
    new_tip: bytes
    fork_height: int


@dataclass(frozen=True)
class AddResult:
    meta: BlockMeta
    became_best: bool
    reorg: Reorg | None = None
    refused_deep: bool = False

    @property
    def tip_changed(self) -> bool:
        """The best tip moved: to this block, or (its arrival made another branch win) elsewhere."""
        return self.became_best or self.reorg is not None


class ChainStore:
    """The chain on disk plus an in-memory block index (as Bitcoin Core keeps one)."""

    def __init__(self, path: Path | str, params: ChainParams, genesis: Block, own_member_id: bytes | None = None) -> None:
        validate_genesis(genesis, params)
        self.params = params
        self.genesis = genesis
        self.own_member_id = own_member_id
        self.lock = threading.RLock()
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.index: dict[bytes, BlockMeta] = {}
        self.tips: set[bytes] = set()  # candidate heads: valid blocks without children
        self.best: list[bytes] = []
        with self.lock:
            self._open()

    # ---------------------------------------------------------------- opening
    def _open(self) -> None:
        stored = self.db.execute("SELECT value FROM meta WHERE key='genesis'").fetchone()
        if stored is None:
            self._write_genesis()
        elif stored[0] != self.genesis.block_hash:
            raise StoreCorrupt(f"store belongs to chain {stored[0].hex()}, not {self.genesis.block_hash.hex()}")
        self._load_index()

    def _write_genesis(self) -> None:
        meta = compute_block_meta(self.genesis, 0)
        with self._transaction():
            self._insert_block_row(self.genesis, meta)
            self.db.execute("INSERT INTO best_chain VALUES (0, ?)", (meta.block_hash,))
            self.db.execute("INSERT INTO meta VALUES ('genesis', ?)", (meta.block_hash,))

    def _load_index(self) -> None:
        rows = self.db.execute("SELECT hash, parent, height, chain_work, timestamp_ms, miner FROM blocks WHERE status=?", (STATUS_VALID,))
        self.index = {row[0]: BlockMeta(*row) for row in rows}
        self.tips = set(self.index) - {meta.prev_hash for meta in self.index.values()}
        self.best = [row[0] for row in self.db.execute("SELECT hash FROM best_chain ORDER BY height")]
        for height, block_hash in enumerate(self.best):
            meta = self.index.get(block_hash)
            if meta is None or meta.height != height:
                raise StoreCorrupt(f"best chain entry at height {height} is not an indexed block")
        tip = self.get_block(self.best[-1])
        if tip.block_hash != self.best[-1]:
            raise StoreCorrupt("tip block bytes do not hash to the tip")

    # ----------------------------------------------------------------- reading
    @property
    def tip(self) -> BlockMeta:
        return self.index[self.best[-1]]

    @property
    def height(self) -> int:
        return len(self.best) - 1

    def get_meta(self, block_hash: bytes) -> BlockMeta | None:
        return self.index.get(block_hash)

    def get_block_bytes(self, block_hash: bytes) -> bytes | None:
        with self.lock:
            row = self.db.execute("SELECT raw FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        return None if row is None else bytes(row[0])

    def get_header_bytes(self, block_hashes: Sequence[bytes]) -> list[bytes]:
        """Canonical header bytes of known blocks, in the order asked (unknown ones skipped)."""
        with self.lock:
            found = {
                bytes(row[0]): bytes(row[1])
                for block_hash in block_hashes
                for row in self.db.execute("SELECT hash, header FROM blocks WHERE hash=?", (block_hash,))
            }
        return [found[h] for h in block_hashes if h in found]

    def get_best_headers_after(self, locator: Sequence[bytes], limit: int) -> list[bytes]:
        """Headers of best-chain blocks after the locator's fork point (headers-first sync)."""
        start = self.find_fork_height(locator) + 1
        return self.get_header_bytes(self.best[start : start + limit])

    def get_details(self, record_id: bytes) -> bytes | None:
        """Off-chain details this node stored with one of its own records."""
        with self.lock:
            row = self.db.execute("SELECT data FROM details WHERE record_id=?", (record_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def get_block(self, block_hash: bytes) -> Block:
        raw = self.get_block_bytes(block_hash)
        if raw is None:
            raise KeyError(block_hash.hex())
        return self.genesis if block_hash == self.genesis.block_hash else Block.decode(raw)

    def get_best_hash(self, height: int) -> bytes | None:
        return self.best[height] if 0 <= height < len(self.best) else None

    def is_on_best_chain(self, block_hash: bytes) -> bool:
        meta = self.index.get(block_hash)
        return meta is not None and self.get_best_hash(meta.height) == block_hash

    def get_ancestor(self, meta: BlockMeta, height: int) -> BlockMeta | None:
        """The ancestor of ``meta`` at ``height`` (walks back to the best chain, then jumps)."""
        if height > meta.height or height < 0:
            return None
        node: BlockMeta | None = meta
        while node is not None and node.height > height and not self.is_on_best_chain(node.block_hash):
            node = self.index.get(node.prev_hash)
        if node is None:
            return None
        if node.height == height:
            return node
        return self.index[self.best[height]]

    def get_locator(self) -> list[bytes]:
        """Best-chain hashes: the last 10, then exponentially sparser, then genesis.

        Safe from any thread: it works on a snapshot of the best chain, which
        the chain thread may be switching while we read.
        """
        best = list(self.best)
        heights, step, height = [], 1, len(best) - 1
        while height > 0:
            heights.append(height)
            if len(heights) >= 10:
                step *= 2
            height -= step
        heights.append(0)
        return [best[h] for h in heights]

    def find_fork_height(self, locator: Sequence[bytes]) -> int:
        """Height of the first locator hash that is on our best chain (0 if none)."""
        for block_hash in locator:
            if self.is_on_best_chain(block_hash):
                return self.index[block_hash].height
        return 0

    def get_record_blocks(self, record_id: bytes) -> list[tuple[bytes, int]]:
        with self.lock:
            rows = self.db.execute("SELECT block_hash, position FROM records WHERE record_id=?", (record_id,)).fetchall()
        return [(bytes(r[0]), r[1]) for r in rows]

    def get_record_location(self, record_id: bytes) -> tuple[BlockMeta, int] | None:
        """(block meta, position) of the record on the best chain, or None."""
        for block_hash, position in self.get_record_blocks(record_id):
            if self.is_on_best_chain(block_hash):
                return self.index[block_hash], position
        return None

    def get_pending(self, limit: int) -> list[DiagnosisRecord]:
        with self.lock:
            rows = self.db.execute("SELECT raw FROM pending ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [DiagnosisRecord.from_fields(unpack(bytes(r[0]), MAX_RECORD_BYTES)) for r in rows]

    def get_pending_record(self, record_id: bytes) -> DiagnosisRecord | None:
        with self.lock:
            row = self.db.execute("SELECT raw FROM pending WHERE record_id=?", (record_id,)).fetchone()
        return None if row is None else DiagnosisRecord.from_fields(unpack(bytes(row[0]), MAX_RECORD_BYTES))

    def pending_count(self) -> int:
        with self.lock:
            return int(self.db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    def median_time_past(self, meta: BlockMeta) -> int:
        timestamps, node = [], meta
        for _ in range(MEDIAN_TIME_SPAN):
            timestamps.append(node.timestamp_ms)
            parent = self.index.get(node.prev_hash)
            if parent is None:
                break
            node = parent
        return compute_median_time_past(timestamps)

    def is_record_in_ancestry(self, record_id: bytes, meta: BlockMeta) -> bool:
        for block_hash, _ in self.get_record_blocks(record_id):
            holder = self.index.get(block_hash)
            if holder is not None and holder.height <= meta.height:
                ancestor = self.get_ancestor(meta, holder.height)
                if ancestor is not None and ancestor.block_hash == block_hash:
                    return True
        return False

    # ----------------------------------------------------------------- writing
    def add_pending_record(self, record: DiagnosisRecord, details: bytes | None = None) -> None:
        """Durably queue a record this node created (and its off-chain details), in one commit.

        Returns only after the commit: acknowledge the record to the user after this.
        """
        with self.lock, self._transaction():
            known = self.db.execute("SELECT 1 FROM records WHERE record_id=? UNION SELECT 1 FROM pending WHERE record_id=?",
                                    (record.record_id, record.record_id)).fetchone()
            if known:
                raise ValidationError("duplicate-record", f"record {record.record_id.hex()} is already known")
            self.db.execute("INSERT INTO pending (record_id, raw) VALUES (?, ?)", (record.record_id, record.encoded))
            if details is not None:
                self.db.execute("INSERT INTO details VALUES (?, ?)", (record.record_id, details))

    def add_block(self, block: Block, now_ms: int) -> AddResult:
        return self.add_blocks([block], now_ms)[0]

    def add_blocks(self, blocks: Iterable[Block], now_ms: int) -> list[AddResult]:
        """Validate and store blocks in one transaction.

        Blocks are validated one by one before being written; the first invalid
        one (or one with an unknown parent, or a duplicate) stops the batch and
        raises *after* the valid ones before it are committed.
        """
        results: list[AddResult] = []
        with self.lock:
            error: BaseException | None = None
            try:
                with self._transaction():
                    for block in blocks:
                        try:
                            results.append(self._connect(block, now_ms))
                        except (ValidationError, MissingParent, DuplicateBlock) as failure:
                            error = failure
                            break
            except BaseException:
                self._load_index()
                raise
            if error is not None:
                # The good blocks before the failure are committed; callers announce them.
                error.partial_results = results  # type: ignore[attr-defined]
                raise error
        return results

    def _connect(self, block: Block, now_ms: int) -> AddResult:
        block_hash = block.block_hash
        if block_hash in self.index:
            raise DuplicateBlock(block_hash.hex())
        parent = self.index.get(block.header.prev_hash)
        if parent is None:
            if block.height > 0:
                validate_header(block.header, self.params)
            raise MissingParent(block)
        validate_block(
            block,
            self.params,
            parent,
            self.median_time_past(parent),
            now_ms,
            lambda record_id: self.is_record_in_ancestry(record_id, parent),
        )
        meta = compute_block_meta(block, parent.chain_work)
        self._insert_block_row(block, meta)
        self.db.executemany(
            "INSERT INTO records VALUES (?, ?, ?)",
            [(r.record_id, block_hash, i) for i, r in enumerate(block.records)],
        )
        self.index[block_hash] = meta
        return self._apply_fork_choice(meta)

    def _insert_block_row(self, block: Block, meta: BlockMeta) -> None:
        self.db.execute(
            "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (meta.block_hash, meta.prev_hash, meta.height, meta.chain_work, meta.timestamp_ms, meta.miner_id,
             STATUS_VALID, block.header.encoded, block.encoded),
        )

    # ------------------------------------------------------------ fork choice
    def _find_fork(self, meta: BlockMeta) -> BlockMeta:
        """The last block ``meta``'s branch shares with the best chain."""
        node = meta
        while not self.is_on_best_chain(node.block_hash):
            node = self.index[node.prev_hash]
        return node

    def _find_common_ancestor(self, first: BlockMeta, second: BlockMeta) -> BlockMeta:
        low = min(first.height, second.height)
        a, b = self.get_ancestor(first, low), self.get_ancestor(second, low)
        while a is not None and b is not None and a.block_hash != b.block_hash:
            a, b = self.index.get(a.prev_hash), self.index.get(b.prev_hash)
        if a is None or b is None:
            raise StoreCorrupt("two indexed blocks share no ancestor")
        return a

    def _fork_side(self, tip: BlockMeta, fork: BlockMeta, enough: int | None = None) -> ForkSide:
        """Distinct miners after the fork; counting may stop once ``enough`` are seen."""
        miners: set[bytes] = set()
        node = tip
        while node.block_hash != fork.block_hash and (enough is None or len(miners) < enough):
            miners.add(node.miner_id)
            node = self.index[node.prev_hash]
        return ForkSide(tip=tip, blocks_after_fork=tip.height - fork.height, distinct_miners=len(miners))

    def _compare_tips(self, best: BlockMeta, candidate: BlockMeta) -> ForkDecision:
        fork = self._find_common_ancestor(best, candidate)
        candidate_side = self._fork_side(candidate, fork)
        # Only "more distinct miners than the candidate" matters for the best side: stop counting there.
        best_side = self._fork_side(best, fork, enough=candidate_side.distinct_miners + 1)
        return on_candidate_tip(best_side, candidate_side, self.params.max_reorg_depth)

    def _choose_head(self, new_block: BlockMeta) -> tuple[BlockMeta, bool]:
        """Tournament over all candidate tips, starting from the current best.

        Re-run after every block so the result does not depend on arrival order:
        a branch that wins while the fork is shallow is dropped again once the
        fork becomes deep and the other branch has more distinct miners. A tip
        that loses a deep comparison can only fall further behind, so it
        leaves the candidate set (its blocks stay stored; a block extending it
        becomes a candidate again).
        """
        best, refused_new = self.tip, False
        for tip_hash in sorted(self.tips - {best.block_hash}):
            candidate = self.index[tip_hash]
            decision = self._compare_tips(best, candidate)
            loser = best if decision.switch else candidate
            if decision.switch:
                best = candidate
            if decision.deep:
                self.tips.discard(loser.block_hash)
                refused_new |= loser.block_hash == new_block.block_hash
                log.warning("reorg-too-deep: branch tip %s not followed", loser.block_hash.hex()[:16])
        return best, refused_new

    def _apply_fork_choice(self, meta: BlockMeta) -> AddResult:
        self.tips.discard(meta.prev_hash)
        self.tips.add(meta.block_hash)
        if meta.prev_hash == self.tip.block_hash:
            self._extend_best(meta)
        winner, refused = self._choose_head(meta)
        reorg = None
        if winner.block_hash != self.tip.block_hash:
            reorg = self._switch_branch(winner, self._find_fork(winner))
        return AddResult(meta=meta, became_best=self.is_on_best_chain(meta.block_hash), reorg=reorg, refused_deep=refused)

    def _extend_best(self, meta: BlockMeta) -> None:
        self.db.execute("INSERT INTO best_chain VALUES (?, ?)", (meta.height, meta.block_hash))
        self.best.append(meta.block_hash)
        self.db.execute("DELETE FROM pending WHERE record_id IN (SELECT record_id FROM records WHERE block_hash=?)", (meta.block_hash,))

    def _switch_branch(self, new_tip: BlockMeta, fork: BlockMeta) -> Reorg:
        old_tip = self.tip
        disconnected = self.best[fork.height + 1 :]
        path, node = [], new_tip
        while node.block_hash != fork.block_hash:
            path.append(node)
            node = self.index[node.prev_hash]
        path.reverse()
        self.db.execute("DELETE FROM best_chain WHERE height > ?", (fork.height,))
        del self.best[fork.height + 1 :]
        for meta in path:
            self._extend_best(meta)
        self._return_orphaned_records(disconnected)
        return Reorg(depth=len(disconnected), old_tip=old_tip.block_hash, new_tip=new_tip.block_hash, fork_height=fork.height)

    def _return_orphaned_records(self, disconnected: Sequence[bytes]) -> None:
        """Our own records from blocks that left the best chain go back to pending."""
        if self.own_member_id is None:
            return
        for block_hash in disconnected:
            for record in self.get_block(block_hash).records:
                if record.member_id == self.own_member_id and self.get_record_location(record.record_id) is None:
                    self.db.execute("INSERT OR IGNORE INTO pending (record_id, raw) VALUES (?, ?)", (record.record_id, record.encoded))

    # ------------------------------------------------------------ transactions
    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def close(self) -> None:
        with self.lock:
            self.db.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
