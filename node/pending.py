"""Records waiting to be mined (this node's and relayed ones), and the off-chain details of its own records.

Two small stores on the chain store's SQLite connection: the chain store
opens the transaction, so a record leaves the pool in the same commit as the
block that mines it, and returns in the same commit as the reorg that drops it.

The pool holds any member's records: the node's own (always accepted: they
are acknowledged to a user) and peers' relayed records, which are admitted
only while the pool holds fewer than MAX_PENDING_RECORDS records and
MAX_PENDING_BYTES bytes (refused: ``pending-full``), so a peer cannot grow it
without bound, and only while their creator's records fill less than its
share of that, 1/N of either limit with N members (refused:
``pending-share-full``), so one member flooding the consortium with records in
its own name cannot crowd the others' records out. Neither refusal is the
sender's fault: an honest burst is refused, never banned, and the creator
keeps its records until they are mined.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from consensus.encoding import unpack
from consensus.errors import ValidationError
from consensus.types import MAX_RECORD_BYTES, ChainParams, DiagnosisRecord
from consensus.validation import validate_record
from node.results import RecordBatchResult

MAX_PENDING_RECORDS = 20_000  # peers' records are refused past this many pending records...
MAX_PENDING_BYTES = 16 * 1024 * 1024  # ...or past this many bytes of them (records are at most 1 KiB)

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id BLOB UNIQUE NOT NULL, raw BLOB NOT NULL,
    member_id BLOB NOT NULL DEFAULT x'');
CREATE TABLE IF NOT EXISTS details (record_id BLOB PRIMARY KEY, data BLOB NOT NULL);
"""


POOL_FULL = "pending-full"
SHARE_FULL = "pending-share-full"


def _decode_record(raw: bytes) -> DiagnosisRecord:
    return DiagnosisRecord.from_fields(unpack(raw, MAX_RECORD_BYTES))


def compute_share(limit: int, member_count: int) -> int:
    """One member's share of a pool limit: 1/N of it (at least 1)."""
    return max(1, limit // max(1, member_count))


class PendingPool:
    """Records of any member, in arrival order, until a best-chain block holds them."""

    def __init__(self, db: sqlite3.Connection, max_records: int = MAX_PENDING_RECORDS,
                 max_bytes: int = MAX_PENDING_BYTES) -> None:
        self.db = db
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._add_creator_column()

    def _add_creator_column(self) -> None:
        """Pools written before the per-member shares lack the creator column: add and fill it once."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(pending)")}
        if "member_id" not in columns:
            self.db.execute("ALTER TABLE pending ADD COLUMN member_id BLOB NOT NULL DEFAULT x''")
        rows = self.db.execute("SELECT seq, raw FROM pending WHERE member_id=x''").fetchall()
        if rows:
            self.db.executemany("UPDATE pending SET member_id=? WHERE seq=?",
                                [(_decode_record(bytes(raw)).member_id, seq) for seq, raw in rows])
        self.db.execute("CREATE INDEX IF NOT EXISTS pending_by_member ON pending(member_id)")

    def get_records(self, limit: int) -> list[DiagnosisRecord]:
        rows = self.db.execute("SELECT raw FROM pending ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [_decode_record(bytes(r[0])) for r in rows]

    def get_record(self, record_id: bytes) -> DiagnosisRecord | None:
        row = self.db.execute("SELECT raw FROM pending WHERE record_id=?", (record_id,)).fetchone()
        return None if row is None else _decode_record(bytes(row[0]))

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    def size_bytes(self) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(LENGTH(raw)), 0) FROM pending").fetchone()[0])

    def get_member_usage(self, member_id: bytes) -> tuple[int, int]:
        """(records, bytes) of ``member_id``'s records in the pool."""
        row = self.db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(raw)), 0) FROM pending WHERE member_id=?",
                              (member_id,)).fetchone()
        return int(row[0]), int(row[1])

    def has_room(self, count: int, size_bytes: int) -> bool:
        """Room for a relayed record, given the pool's current ``count`` and ``size_bytes``."""
        return count < self.max_records and size_bytes < self.max_bytes

    def contains(self, record_id: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM pending WHERE record_id=?", (record_id,)).fetchone() is not None

    def add(self, record: DiagnosisRecord) -> None:
        self.db.execute("INSERT INTO pending (record_id, raw, member_id) VALUES (?, ?, ?)",
                        (record.record_id, record.encoded, record.member_id))

    def admit(self, records: Sequence[DiagnosisRecord], params: ChainParams,
              is_on_best_chain: Callable[[bytes], bool]) -> RecordBatchResult:
        """Peers' relayed records into the pool (inside the caller's transaction).

        One already pending or on the best chain is ignored (before any signature
        check); each other one must pass the consensus record rule; one that finds
        the pool full (``pending-full``) or its creator's share of it full
        (``pending-share-full``) is refused. The first invalid record stops the
        batch (the ones admitted before it stay).
        """
        accepted: list[DiagnosisRecord] = []
        ignored = 0
        refused: Counter[str] = Counter()
        count, size = self.count(), self.size_bytes()
        share_records = compute_share(self.max_records, len(params.members))
        share_bytes = compute_share(self.max_bytes, len(params.members))
        usage: dict[bytes, tuple[int, int]] = {}
        for record in records:
            if self.contains(record.record_id) or is_on_best_chain(record.record_id):
                ignored += 1
                continue
            try:
                validate_record(record, params)
            except ValidationError as error:
                return RecordBatchResult(accepted, ignored, sum(refused.values()), error, dict(refused))
            creator = record.member_id
            member_count, member_size = usage.get(creator) or self.get_member_usage(creator)
            if not self.has_room(count, size):
                refused[POOL_FULL] += 1
                continue
            if member_count >= share_records or member_size >= share_bytes:
                refused[SHARE_FULL] += 1
                continue
            self.add(record)
            accepted.append(record)
            count, size = count + 1, size + len(record.encoded)
            usage[creator] = (member_count + 1, member_size + len(record.encoded))
        return RecordBatchResult(accepted, ignored, sum(refused.values()), None, dict(refused))

    def restore(self, records: Iterable[DiagnosisRecord]) -> None:
        """Put records back (a reorg dropped the blocks holding them); ones already queued are kept."""
        self.db.executemany("INSERT OR IGNORE INTO pending (record_id, raw, member_id) VALUES (?, ?, ?)",
                            [(r.record_id, r.encoded, r.member_id) for r in records])

    def remove_held_by(self, block_hashes: Iterable[bytes]) -> None:
        """Drop the records these (now best-chain) blocks hold."""
        self.db.executemany("DELETE FROM pending WHERE record_id IN (SELECT record_id FROM records WHERE block_hash=?)",
                            [(h,) for h in block_hashes])


class DetailsStore:
    """Off-chain details (JSON bytes) this node keeps for its own records."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def get(self, record_id: bytes) -> bytes | None:
        row = self.db.execute("SELECT data FROM details WHERE record_id=?", (record_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def add(self, record_id: bytes, data: bytes) -> None:
        self.db.execute("INSERT INTO details VALUES (?, ?)", (record_id, data))
