"""Governance entries waiting to be mined, and the index of entries in stored blocks (issue 15).

Like the record pool (``node.pending``) it lives on the chain store's SQLite
connection, inside the store's transactions: an entry leaves the pool in the
commit of the best-chain block that holds it and returns in the commit of the
reorg that drops that block.

Entries come from the node's own round actions (its proposals, its signed
round result, its site's metrics) and from the peers' ``model_round`` and
``model_metrics`` messages. The pool holds at most one entry per key (one
proposal per round, one result and one metrics per member and round: the key
a branch may hold once, ``consensus.governance``); a peer's entry must pass
``validate_entry`` and is refused past MAX_PENDING_ENTRIES / MAX_PENDING_ENTRY_BYTES.
Which pending entries fit on a tip is ``consensus.governance.select_valid_entries``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from consensus.blocktree import BlockTree
from consensus.encoding import unpack
from consensus.entries import MAX_ENTRY_BYTES, GovernanceEntry, ModelRound
from consensus.errors import ValidationError
from consensus.governance import select_valid_entries, validate_entry
from consensus.types import ChainParams
from consensus.validation import BlockMeta
from node.database import Transaction

MAX_PENDING_ENTRIES = 4096
MAX_PENDING_ENTRY_BYTES = 4 * 1024 * 1024
Key = tuple[str, bytes, bytes]

SCHEMA = """
CREATE TABLE IF NOT EXISTS governance_pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, round_id BLOB NOT NULL, member_id BLOB NOT NULL,
    raw BLOB NOT NULL, UNIQUE (kind, round_id, member_id));
CREATE TABLE IF NOT EXISTS entries (
    block_hash BLOB NOT NULL, position INTEGER NOT NULL, kind TEXT NOT NULL, round_id BLOB NOT NULL,
    member_id BLOB NOT NULL, raw BLOB NOT NULL, PRIMARY KEY (block_hash, position));
CREATE INDEX IF NOT EXISTS entries_by_key ON entries (kind, round_id, member_id);
"""


def decode_entry(raw: bytes) -> GovernanceEntry:
    return GovernanceEntry.from_fields(unpack(raw, MAX_ENTRY_BYTES))


@dataclass(frozen=True)
class EntryBatchResult:
    accepted: list[GovernanceEntry]
    ignored: int = 0
    refused: int = 0
    error: ValidationError | None = None


class GovernancePool:
    """Pending governance entries, in arrival order, until a best-chain block holds them."""

    def __init__(self, db: sqlite3.Connection, max_entries: int = MAX_PENDING_ENTRIES,
                 max_bytes: int = MAX_PENDING_ENTRY_BYTES) -> None:
        self.db = db
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    def get_entries(self, limit: int) -> list[GovernanceEntry]:
        rows = self.db.execute("SELECT raw FROM governance_pending ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [decode_entry(bytes(r[0])) for r in rows]

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM governance_pending").fetchone()[0])

    def size_bytes(self) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(LENGTH(raw)), 0) FROM governance_pending").fetchone()[0])

    def contains(self, key: Key) -> bool:
        return self.db.execute("SELECT 1 FROM governance_pending WHERE kind=? AND round_id=? AND member_id=?",
                               key).fetchone() is not None

    def _insert(self, entries: Iterable[GovernanceEntry]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO governance_pending (kind, round_id, member_id, raw) "
                            "VALUES (?, ?, ?, ?)", [(*e.key, e.encoded) for e in entries])

    def admit(self, entries: Sequence[GovernanceEntry], params: ChainParams, is_on_best_chain: Callable[[Key], bool],
              own: bool = False) -> EntryBatchResult:
        """Entries into the pool (inside the caller's transaction).

        One whose key is already pending or on the best chain is ignored; each other one must
        pass ``validate_entry``; a peer's (``own`` False) finding the pool full is refused. The
        first invalid entry stops the batch (the ones admitted before it stay).
        """
        accepted: list[GovernanceEntry] = []
        ignored = refused = 0
        count, size = self.count(), self.size_bytes()
        for entry in entries:
            if self.contains(entry.key) or is_on_best_chain(entry.key):
                ignored += 1
                continue
            try:
                validate_entry(entry, params)
            except ValidationError as error:
                return EntryBatchResult(accepted, ignored, refused, error)
            if not own and (count >= self.max_entries or size >= self.max_bytes):
                refused += 1
                continue
            self._insert([entry])
            accepted.append(entry)
            count, size = count + 1, size + len(entry.encoded)
        return EntryBatchResult(accepted, ignored, refused)

    def restore(self, entries: Iterable[GovernanceEntry]) -> None:
        """Put entries back (a reorg dropped the blocks holding them); keys already pending are kept."""
        self._insert(entries)

    def remove_held_by(self, block_hashes: Iterable[bytes]) -> None:
        """Drop the pending entries whose keys these (now best-chain) blocks hold."""
        self.db.executemany(
            "DELETE FROM governance_pending WHERE (kind, round_id, member_id) IN "
            "(SELECT kind, round_id, member_id FROM entries WHERE block_hash=?)", [(h,) for h in block_hashes])


class EntryIndex:
    """Which stored blocks hold which entries (every stored block, best chain or not)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def add_block(self, block_hash: bytes, entries: Sequence[GovernanceEntry]) -> None:
        self.db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                            [(block_hash, i, *e.key, e.encoded) for i, e in enumerate(entries)])

    def get_holders(self, key: Key) -> list[tuple[bytes, bytes]]:
        """(block hash, entry bytes) of every stored block holding an entry with this key."""
        rows = self.db.execute("SELECT block_hash, raw FROM entries WHERE kind=? AND round_id=? AND member_id=?",
                               key).fetchall()
        return [(bytes(r[0]), bytes(r[1])) for r in rows]

    def get_rounds(self, round_id: bytes) -> list[tuple[bytes, bytes]]:
        rows = self.db.execute("SELECT block_hash, raw FROM entries WHERE kind='round' AND round_id=?",
                               (round_id,)).fetchall()
        return [(bytes(r[0]), bytes(r[1])) for r in rows]

    def get_block_entries(self, block_hash: bytes) -> list[GovernanceEntry]:
        rows = self.db.execute("SELECT raw FROM entries WHERE block_hash=? ORDER BY position", (block_hash,))
        return [decode_entry(bytes(r[0])) for r in rows]


class StoredBranch:
    """The governance entries of the branch ending at one block (a ``GovernanceContext`` over the index)."""

    def __init__(self, index: EntryIndex, is_in_branch: Callable[[bytes], bool]) -> None:
        self.index = index
        self.is_in_branch = is_in_branch

    def get_round(self, round_id: bytes) -> ModelRound | None:
        for block_hash, raw in self.index.get_rounds(round_id):
            if self.is_in_branch(block_hash):
                body = decode_entry(raw).body
                return body if isinstance(body, ModelRound) else None
        return None

    def has_entry(self, key: Key) -> bool:
        return any(self.is_in_branch(block_hash) for block_hash, _ in self.index.get_holders(key))


class GovernanceLedger:
    """The pool and the index together, as the chain store uses them (inside its transactions)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(SCHEMA)
        self.pool = GovernancePool(db)
        self.index = EntryIndex(db)

    def is_on_best_chain(self, tree: BlockTree, key: Key) -> bool:
        return any(tree.is_on_best_chain(h) for h, _ in self.index.get_holders(key))

    def get_branch(self, tree: BlockTree, meta: BlockMeta) -> StoredBranch:
        """The governance entries of the branch ending at ``meta`` (a ``GovernanceContext``)."""
        return StoredBranch(self.index, lambda block_hash: tree.is_in_ancestry(block_hash, meta))

    def admit(self, entries: Sequence[GovernanceEntry], params: ChainParams, tree: BlockTree,
              own: bool) -> EntryBatchResult:
        """Entries into the pool, in one commit of their own (on the chain thread)."""
        with Transaction(self.db):
            return self.pool.admit(entries, params, lambda key: self.is_on_best_chain(tree, key), own)

    def get_mineable(self, tree: BlockTree, meta: BlockMeta, params: ChainParams, limit: int) -> list[GovernanceEntry]:
        """Pending entries a block on ``meta`` may hold (valid there, rounds first), at most ``limit``."""
        pending = self.pool.get_entries(self.pool.max_entries)
        return select_valid_entries(pending, params, self.get_branch(tree, meta), limit) if pending else []

    def apply_head_change(self, tree: BlockTree, connect: Sequence[bytes], disconnect: Sequence[bytes]) -> None:
        """Entries of newly connected blocks leave the pool; those of disconnected ones return to it."""
        self.pool.remove_held_by(connect)
        self.pool.restore([entry for block_hash in disconnect for entry in self.index.get_block_entries(block_hash)
                           if not self.is_on_best_chain(tree, entry.key)])

    def get_best_entries(self) -> list[tuple[int, int, bytes, GovernanceEntry]]:
        """Every governance entry on the best chain, in chain order: (height, block timestamp, block hash, entry)."""
        rows = self.db.execute(
            "SELECT b.height, k.timestamp_ms, e.block_hash, e.raw FROM entries e JOIN best_chain b ON b.hash = "
            "e.block_hash JOIN blocks k ON k.hash = e.block_hash ORDER BY b.height, e.position").fetchall()
        return [(int(r[0]), int(r[1]), bytes(r[2]), decode_entry(bytes(r[3]))) for r in rows]
