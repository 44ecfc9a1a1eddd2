"""This node's records waiting to be mined, and the off-chain details of its records.

Two small stores on the chain store's SQLite connection: the chain store
opens the transaction, so a record leaves the pool in the same commit as the
block that mines it, and returns in the same commit as the reorg that drops it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from consensus.encoding import unpack
from consensus.types import MAX_RECORD_BYTES, DiagnosisRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id BLOB UNIQUE NOT NULL, raw BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS details (record_id BLOB PRIMARY KEY, data BLOB NOT NULL);
"""


def _decode_record(raw: bytes) -> DiagnosisRecord:
    return DiagnosisRecord.from_fields(unpack(raw, MAX_RECORD_BYTES))


class PendingPool:
    """Records this node created, in arrival order, until a best-chain block holds them."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def get_records(self, limit: int) -> list[DiagnosisRecord]:
        rows = self.db.execute("SELECT raw FROM pending ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [_decode_record(bytes(r[0])) for r in rows]

    def get_record(self, record_id: bytes) -> DiagnosisRecord | None:
        row = self.db.execute("SELECT raw FROM pending WHERE record_id=?", (record_id,)).fetchone()
        return None if row is None else _decode_record(bytes(row[0]))

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM pending").fetchone()[0])

    def contains(self, record_id: bytes) -> bool:
        return self.db.execute("SELECT 1 FROM pending WHERE record_id=?", (record_id,)).fetchone() is not None

    def add(self, record: DiagnosisRecord) -> None:
        self.db.execute("INSERT INTO pending (record_id, raw) VALUES (?, ?)", (record.record_id, record.encoded))

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
