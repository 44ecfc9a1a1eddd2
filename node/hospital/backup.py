"""Backup and restore of a node's data directory, safe while the node runs and mines.

``backup``: each SQLite file (``chain.sqlite3``, and ``hospital.sqlite3`` and ``accounts.sqlite3`` when
present) is copied with SQLite's online backup API, which reads one consistent
snapshot while the node keeps writing (WAL mode: readers do not block the
writer); the copy is checked with ``PRAGMA integrity_check``. The node's key,
identity, API token and genesis file are copied with their permissions. A
``manifest.json`` lists every file's SHA-256 and the chain's best height and
tip hash at the snapshot.

``restore``: into a new or empty data directory only (never over a live
node's files); every file's SHA-256 is checked against the manifest first.

Received DICOM files in the inbox are not part of a backup: they are
transient (deleted after diagnosis) and a PACS re-sends what was not
acknowledged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

DATABASES = ("chain.sqlite3", "hospital.sqlite3", "accounts.sqlite3")  # accounts: people and the audit log
PLAIN_FILES = ("node.key", "node.json", "api_token", "genesis.json", "config.json")
REQUIRED = ("chain.sqlite3", "node.key", "node.json")
MANIFEST = "manifest.json"
BACKUP_FORMAT = 1


class BackupError(ValueError):
    """A backup or restore cannot be done (the message says why and what to do)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _copy_database(source: Path, target: Path) -> None:
    """SQLite online backup of one database into a new file, then an integrity check of the copy."""
    source_db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    target_db = sqlite3.connect(str(target))
    try:
        source_db.backup(target_db)  # one step: a single consistent snapshot
        verdict = target_db.execute("PRAGMA integrity_check").fetchone()[0]
        target_db.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal beside it
    finally:
        target_db.close()
        source_db.close()
    if verdict != "ok":
        raise BackupError(f"the copy of {source.name} fails SQLite's integrity check: {verdict}")


def _chain_summary(path: Path) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT height, hash FROM best_chain ORDER BY height DESC LIMIT 1").fetchone()
        records = db.execute("SELECT COUNT(*) FROM records r JOIN best_chain b ON r.block_hash = b.hash").fetchone()
        details = db.execute("SELECT COUNT(*) FROM details").fetchone()
    finally:
        db.close()
    return {"height": row[0] if row else 0, "tip": bytes(row[1]).hex() if row else None,
            "records_on_best_chain": records[0], "details": details[0]}


def _require_empty(folder: Path, what: str) -> None:
    if folder.exists() and any(folder.iterdir()):
        raise BackupError(f"{what} {folder} is not empty; give a new folder")
    folder.mkdir(parents=True, exist_ok=True)


def create_backup(data_dir: Path, out_dir: Path) -> dict[str, Any]:
    missing = [name for name in REQUIRED if not (data_dir / name).exists()]
    if missing:
        raise BackupError(f"{data_dir} is not a node data directory (missing {missing})")
    _require_empty(out_dir, "backup folder")
    os.chmod(out_dir, 0o700)
    for name in DATABASES:
        if (data_dir / name).exists():
            _copy_database(data_dir / name, out_dir / name)
    for name in PLAIN_FILES:
        if (data_dir / name).exists():
            shutil.copy2(data_dir / name, out_dir / name)
    manifest = {"format": BACKUP_FORMAT, "created_ms": int(time.time() * 1000), "source": str(data_dir),
                "chain": _chain_summary(out_dir / "chain.sqlite3"),
                "files": {p.name: _sha256(p) for p in sorted(out_dir.iterdir()) if p.name != MANIFEST}}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def restore_backup(backup_dir: Path, data_dir: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((backup_dir / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise BackupError(f"{backup_dir} has no readable {MANIFEST}: {error}") from error
    if manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r}")
    files: dict[str, str] = manifest["files"]
    for name, expected in files.items():
        if "/" in name or name.startswith("."):
            raise BackupError(f"unexpected file name {name!r} in the manifest")
        if not (backup_dir / name).exists() or _sha256(backup_dir / name) != expected:
            raise BackupError(f"{name} in {backup_dir} is missing or does not match the manifest; backup damaged")
    _require_empty(data_dir, "data directory")
    os.chmod(data_dir, 0o700)
    for name in files:
        shutil.copy2(backup_dir / name, data_dir / name)
    for name in DATABASES:
        if (data_dir / name).exists():
            db = sqlite3.connect(str(data_dir / name))
            try:
                verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                db.close()
            if verdict != "ok":
                raise BackupError(f"restored {name} fails SQLite's integrity check: {verdict}")
    return {"restored_into": str(data_dir), "chain": _chain_summary(data_dir / "chain.sqlite3")}
