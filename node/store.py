"""Durable chain store on SQLite (standard library): storage only.

Tables: raw canonical block bytes with their index (hash, parent, height, cumulative
work, status), the best chain by height, the record index (record id -> blocks holding
it) and meta; the pending pool and off-chain details (``node.pending``) and the
governance entries' pool and index (``node.governance_pool``) share the connection and
its transactions. WAL mode with ``synchronous=FULL``; every state change is one
transaction; callers acknowledge a record only after ``add_pending_record`` returned.

Which branch is best is decided by ``consensus.blocktree.BlockTree``; the store validates
each block, asks the tree for the :class:`HeadChange`, writes the block and that plan in
one transaction, then publishes a frozen :class:`ChainView`. Synchronous: it runs on one thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from consensus.blocktree import BlockTree, ChainView, HeadChange, TreeInconsistent
from consensus.builders import compute_block_meta
from consensus.errors import ValidationError
from consensus.types import Block, ChainParams, DiagnosisRecord
from consensus.validation import BlockMeta, validate_block, validate_genesis, validate_header
from node.database import BlockReader, Transaction, open_database
from node.governance_pool import GovernanceLedger
from node.pending import SCHEMA as POOL_SCHEMA
from node.pending import DetailsStore, PendingPool
from node.results import AddResult, BatchResult, DuplicateBlock, MissingParent, RecordBatchResult

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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""
STATUS_VALID = 1
class StoreCorrupt(RuntimeError):
    """The store on disk does not match its genesis or its own index."""


class ChainStore:
    def __init__(self, path: Path | str, params: ChainParams, genesis: Block, own_member_id: bytes | None = None) -> None:
        validate_genesis(genesis, params)
        self.params = params
        self.genesis = genesis
        self.path = str(path)
        self.db = open_database(path, SCHEMA + POOL_SCHEMA)
        self.pending = PendingPool(self.db)
        self.governance = GovernanceLedger(self.db)
        self.details = DetailsStore(self.db)
        stored = self.db.execute("SELECT value FROM meta WHERE key='genesis'").fetchone()
        if stored is None:
            self._write_genesis()
        elif stored[0] != genesis.block_hash:
            raise StoreCorrupt(f"store belongs to chain {stored[0].hex()}, not {genesis.block_hash.hex()}")
        self.tree = self._load_tree()
        self.view = self.tree.get_view(self.pending.count())

    def _write_genesis(self) -> None:
        meta = compute_block_meta(self.genesis, 0)
        with self._transaction():
            self._insert_block_row(self.genesis, meta)
            self.db.execute("INSERT INTO best_chain VALUES (0, ?)", (meta.block_hash,))
            self.db.execute("INSERT INTO meta VALUES ('genesis', ?)", (meta.block_hash,))

    def _load_tree(self) -> BlockTree:
        rows = self.db.execute("SELECT hash, parent, height, chain_work, timestamp_ms, miner FROM blocks WHERE status=?",
                               (STATUS_VALID,))
        best = [bytes(row[0]) for row in self.db.execute("SELECT hash FROM best_chain ORDER BY height")]
        try:
            tree = BlockTree.from_index((BlockMeta(*r) for r in rows), best, self.params.max_reorg_depth, len(self.params.members))
        except TreeInconsistent as error:
            raise StoreCorrupt(str(error)) from error
        if self.get_block(tree.best[-1]).block_hash != tree.best[-1]:
            raise StoreCorrupt("tip block bytes do not hash to the tip")
        return tree

    def _publish(self) -> None:
        """After a commit: one reference swap makes the new state visible to other threads."""
        self.view = self.tree.get_view(self.pending.count())

    # ----------------------------------------------------------------- reading
    @property
    def tip(self) -> BlockMeta:
        return self.tree.tip

    @property
    def height(self) -> int:
        return self.tree.height

    def get_block_bytes(self, block_hash: bytes) -> bytes | None:
        row = self.db.execute("SELECT raw FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        return None if row is None else bytes(row[0])

    def get_block(self, block_hash: bytes) -> Block:
        raw = self.get_block_bytes(block_hash)
        if raw is None:
            raise KeyError(block_hash.hex())
        return self.genesis if block_hash == self.genesis.block_hash else Block.decode(raw)

    def get_header_bytes(self, block_hashes: Sequence[bytes]) -> list[bytes]:
        """Canonical header bytes of known blocks, in the order asked (unknown ones skipped)."""
        found = {bytes(row[0]): bytes(row[1]) for block_hash in block_hashes
                 for row in self.db.execute("SELECT hash, header FROM blocks WHERE hash=?", (block_hash,))}
        return [found[h] for h in block_hashes if h in found]

    def get_best_headers_after(self, locator: Sequence[bytes], limit: int) -> list[bytes]:
        """Headers of best-chain blocks after the locator's fork point (headers-first sync)."""
        view = self.view
        start = view.find_fork_height(locator) + 1
        return self.get_header_bytes(view.best[start : start + limit])

    def get_record_blocks(self, record_id: bytes) -> list[tuple[bytes, int]]:
        rows = self.db.execute("SELECT block_hash, position FROM records WHERE record_id=?", (record_id,)).fetchall()
        return [(bytes(r[0]), r[1]) for r in rows]

    def get_record_location(self, record_id: bytes, view: ChainView | None = None) -> tuple[BlockMeta, int] | None:
        """(block meta, position) of the record on the best chain (of ``view``, default the latest), or None."""
        view = view or self.view
        for block_hash, position in self.get_record_blocks(record_id):
            meta = view.get_meta(block_hash)
            if meta is not None and view.is_on_best_chain(block_hash):
                return meta, position
        return None

    def _is_record_in_ancestry(self, record_id: bytes, meta: BlockMeta) -> bool:
        return any(self.tree.is_in_ancestry(h, meta) for h, _ in self.get_record_blocks(record_id))

    # ----------------------------------------------------------------- writing
    def add_pending_record(self, record: DiagnosisRecord, details: bytes | None = None) -> None:
        """Durably queue a record this node created (and its off-chain details), in one commit.

        Returns only after the commit: acknowledge the record to the user after this.
        """
        with self._transaction():
            if self.get_record_blocks(record.record_id) or self.pending.contains(record.record_id):
                raise ValidationError("duplicate-record", f"record {record.record_id.hex()} is already known")
            self.pending.add(record)
            if details is not None:
                self.details.add(record.record_id, details)
        self._publish()

    def add_peer_records(self, records: Sequence[DiagnosisRecord]) -> RecordBatchResult:
        """Admit records relayed by a peer into the pending pool, in one commit (``PendingPool.admit``)."""
        with self._transaction():
            result = self.pending.admit(records, self.params, self._is_on_best_chain)
        self._publish()
        return result

    def _is_on_best_chain(self, record_id: bytes) -> bool:
        return any(self.tree.is_on_best_chain(h) for h, _ in self.get_record_blocks(record_id))

    def add_block(self, block: Block, now_ms: int) -> AddResult:
        """One block; raises its failure (ValidationError, MissingParent, DuplicateBlock)."""
        result = self.add_blocks([block], now_ms)
        if result.error is not None:
            raise result.error
        if result.failure == "missing-parent":
            raise MissingParent(block)
        if result.failure == "duplicate":
            raise DuplicateBlock(block.block_hash.hex())
        return result.accepted[0]

    def add_blocks(self, blocks: Iterable[Block], now_ms: int) -> BatchResult:
        """Validate and store blocks in one transaction; the first failure stops the batch.

        The valid blocks before the failure are committed and returned as accepted.
        """
        accepted: list[AddResult] = []
        failure: BatchResult | None = None
        try:
            with self._transaction():
                for block in blocks:
                    failure = self._check_connectable(block)
                    if failure is not None:
                        break
                    try:
                        accepted.append(self._connect(block, now_ms))
                    except ValidationError as error:
                        failure = BatchResult(failed=block, failure="invalid", error=error)
                        break
        except BaseException:
            self.tree = self._load_tree()
            raise
        self._publish()
        if failure is None:
            return BatchResult(accepted)
        return BatchResult(accepted, failure.failed, failure.failure, failure.error)

    def _check_connectable(self, block: Block) -> BatchResult | None:
        if block.block_hash in self.tree.index:
            return BatchResult(failed=block, failure="duplicate")
        if block.header.prev_hash not in self.tree.index:
            if block.height > 0:
                try:
                    validate_header(block.header, self.params)
                except ValidationError as error:
                    return BatchResult(failed=block, failure="invalid", error=error)
            return BatchResult(failed=block, failure="missing-parent")
        return None

    def _connect(self, block: Block, now_ms: int) -> AddResult:
        parent = self.tree.index[block.header.prev_hash]
        validate_block(block, self.params, parent, self.tree.get_median_time_past(parent), now_ms,
                       lambda record_id: self._is_record_in_ancestry(record_id, parent), self.tree.get_signer_window(parent),
                       self.governance.get_branch(self.tree, parent))
        meta = compute_block_meta(block, parent.chain_work)
        self._insert_block_row(block, meta)
        self.governance.index.add_block(meta.block_hash, block.entries)
        self.db.executemany("INSERT INTO records VALUES (?, ?, ?)",
                            [(r.record_id, meta.block_hash, i) for i, r in enumerate(block.records)])
        change = self.tree.on_block(meta)
        if change.tip_changed:
            self._write_head_change(change)
        return AddResult.from_change(change)

    def _write_head_change(self, change: HeadChange) -> None:
        """The best-chain table, the tree and the pending pool follow the plan (inside the transaction)."""
        self.db.execute("DELETE FROM best_chain WHERE height > ?", (change.fork.height,))
        self.db.executemany("INSERT INTO best_chain VALUES (?, ?)", [(m.height, m.block_hash) for m in change.connect])
        self.tree.apply_head_change(change)
        self.pending.remove_held_by(m.block_hash for m in change.connect)
        if change.disconnect:  # records (any member's: any member mines them) that left the best chain return
            self.pending.restore([record for block_hash in change.disconnect for record in self.get_block(block_hash).records
                                  if not self._is_on_best_chain(record.record_id)])
        self.governance.apply_head_change(self.tree, [m.block_hash for m in change.connect], change.disconnect)

    def _insert_block_row(self, block: Block, meta: BlockMeta) -> None:
        self.db.execute(
            "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (meta.block_hash, meta.prev_hash, meta.height, meta.chain_work, meta.timestamp_ms, meta.miner_id,
             STATUS_VALID, block.header.encoded, block.encoded),
        )

    def open_reader(self) -> BlockReader:
        """A second, read-only connection, for another thread (WAL readers see committed data only)."""
        return BlockReader(self.path, self.genesis)

    def _transaction(self) -> Transaction:
        return Transaction(self.db)

    def close(self) -> None:
        self.db.close()
