"""Records waiting to be mined (this node's and relayed ones), and the off-chain details of its own records.

Two small stores on the chain store's SQLite connection: the chain store
opens the transaction, so a record leaves the pool in the same commit as the
block that mines it, and returns in the same commit as the reorg that drops it.

The pool holds any member's records: the node's own (always accepted: they
are acknowledged to a user) and peers' relayed records, which are admitted
only while the pool holds fewer than MAX_PENDING_RECORDS records and
MAX_PENDING_BYTES bytes, so a peer cannot grow it without bound.
"""

from __future__ import annotations

import sqlite3
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
    seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id BLOB UNIQUE NOT NULL, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS details (record_id BLOB PRIMARY KEY, data BLOB NOT NULL);
"""


def _decode_record(raw: bytes) -> DiagnosisRecord:
    return DiagnosisRecord.from_fields(unpack(raw, MAX_RECORD_BYTES))


class PendingPool:
    """Records of any member, in arrival order, until a best-chain block holds them."""

    def __init__(self, db: sqlite3.Connection, max_records: int = MAX_PENDING_RECORDS,
                 max_bytes: int = MAX_PENDING_BYTES) -> None:
        self.db = db
        self.max_records = max_records
        self.max_bytes = max_bytes

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

    def has_room(self, count: int, size_bytes: int) -> bool:
        """Room for a relayed record, given the pool's current ``count`` and ``size_bytes``."""
        return count < self.max_records and size_bytes < self.max_bytes

    def contains(self, record_id: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM pending WHERE record_id=?", (record_id,)).fetchone() is not None

    def add(self, record: DiagnosisRecord) -> None:
        self.db.execute("INSERT INTO pending (record_id, raw) VALUES (?, ?)", (record.record_id, record.encoded))

    def admit(self, records: Sequence[DiagnosisRecord], params: ChainParams,
              is_on_best_chain: Callable[[bytes], bool]) -> RecordBatchResult:
        """Peers' relayed records into the pool (inside the caller's transaction).

        One already pending or on the best chain is ignored (before any signature
        check); each other one must pass the consensus record rule; one that finds
        the pool full is refused. The first invalid record stops the batch (the
        ones admitted before it stay).
        """
        accepted: list[DiagnosisRecord] = []
        ignored = refused = 0
        count, size = self.count(), self.size_bytes()
        for record in records:
            if self.contains(record.record_id) or is_on_best_chain(record.record_id):
                ignored += 1
                continue
            try:
                validate_record(record, params)
            except ValidationError as error:
                return RecordBatchResult(accepted, ignored, refused, error)
            if not self.has_room(count, size):
                refused += 1
                continue
            self.add(record)
            accepted.append(record)
            count, size = count + 1, size + len(record.encoded)
        return RecordBatchResult(accepted, ignored, refused)

    def restore(self, records: Iterable[DiagnosisRecord]) -> None:
        """Put records back (a reorg dropped the blocks holding them); ones already queued are kept."""
        self.db.executemany("INSERT OR IGNORE INTO pending (record_id, raw) VALUES (?, ?)",
                            [(r.record_id, r.encoded) for r in records])

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
