"""SQLite plumbing of the chain store: opening, transactions, a read-only reader for other threads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from consensus.types import Block


def open_database(path: Path | str, schema: str) -> sqlite3.Connection:
    """Autocommit connection (transactions are explicit), WAL, fsync on every commit."""
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db


class BlockReader:
    """Read-only access to stored blocks from a thread other than the chain thread."""

    def __init__(self, path: str, genesis: Block) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self.genesis = genesis

    def get_block(self, block_hash: bytes) -> Block | None:
        if block_hash == self.genesis.block_hash:
            return self.genesis
        row = self.db.execute("SELECT raw FROM blocks WHERE hash=?", (block_hash,)).fetchone()
        return None if row is None else Block.decode(bytes(row[0]))

    def close(self) -> None:
        self.db.close()


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
