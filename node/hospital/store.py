"""The hospital integration's own SQLite file: the durable outbound report queue and the series log.

One file, ``<data_dir>/hospital.sqlite3`` (WAL, ``synchronous=FULL``), used
from one thread at a time (the caller serialises access through an executor).
A report job is written in the same transaction that says what it is for, so
a result the node acknowledged is never lost between "diagnosed" and "sent":
after a crash or a PACS outage the job is still there and is retried.

Job states: ``awaiting-block`` (the record is not mined yet) -> ``ready``
(SR and SC built, stored as DICOM bytes) -> ``sent``. The patient and study
attributes a report needs stay here, never on chain, and are erased once the
job is sent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS report_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id BLOB NOT NULL UNIQUE,
    state TEXT NOT NULL,
    context TEXT,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_ms INTEGER
);
CREATE INDEX IF NOT EXISTS report_jobs_state ON report_jobs(state, next_attempt_ms);
CREATE TABLE IF NOT EXISTS report_payloads (
    job_id INTEGER NOT NULL REFERENCES report_jobs(id),
    position INTEGER NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, position)
);
CREATE TABLE IF NOT EXISTS series_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    modality TEXT NOT NULL,
    instances INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    record_id BLOB
);
"""

STATE_AWAITING_BLOCK = "awaiting-block"
STATE_READY = "ready"
STATE_SENT = "sent"
STATE_FAILED = "failed"  # cannot ever be built (its record is gone); kept for the operator, never deleted


@dataclass(frozen=True)
class ReportJob:
    job_id: int
    record_id: bytes
    state: str
    context: dict[str, Any] | None
    created_ms: int
    attempts: int
    next_attempt_ms: int
    last_error: str | None


class HospitalStore:
    def __init__(self, path: Path) -> None:
        self.lock = threading.Lock()
        if not Path(path).exists():  # created private (0600); SQLite gives its -wal/-shm files the same mode
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _write(self, sql: str, parameters: tuple[Any, ...]) -> int:
        with self.lock:
            cursor = self.db.execute(sql, parameters)
            return int(cursor.lastrowid or 0)

    def add_job(self, record_id: bytes, context: dict[str, Any], now_ms: int) -> int:
        return self._write("INSERT INTO report_jobs (record_id, state, context, created_ms) VALUES (?, ?, ?, ?)",
                           (record_id, STATE_AWAITING_BLOCK, json.dumps(context), now_ms))

    def log_series(self, source: str, series_uid: str, modality: str, instances: int, outcome: str,
                   reason: str | None, record_id: bytes | None, now_ms: int) -> None:
        self._write("INSERT INTO series_log (created_ms, source, series_uid, modality, instances, outcome, reason, "
                    "record_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (now_ms, source, series_uid, modality, instances, outcome, reason, record_id))

    _JOB_COLUMNS = "id, record_id, state, context, created_ms, attempts, next_attempt_ms, last_error"

    @staticmethod
    def _to_job(row: tuple[Any, ...]) -> ReportJob:
        return ReportJob(row[0], bytes(row[1]), row[2], json.loads(row[3]) if row[3] else None, row[4], row[5],
                         row[6], row[7])

    def get_jobs(self, state: str, due_before_ms: int | None = None, limit: int = 50) -> list[ReportJob]:
        sql = f"SELECT {self._JOB_COLUMNS} FROM report_jobs WHERE state = ?"
        parameters: tuple[Any, ...] = (state,)
        if due_before_ms is not None:
            sql += " AND next_attempt_ms <= ?"
            parameters += (due_before_ms,)
        with self.lock:
            rows = self.db.execute(sql + " ORDER BY id LIMIT ?", (*parameters, limit)).fetchall()
        return [self._to_job(row) for row in rows]

    def get_job(self, record_id: bytes) -> ReportJob | None:
        with self.lock:
            row = self.db.execute(f"SELECT {self._JOB_COLUMNS} FROM report_jobs WHERE record_id = ?",
                                  (record_id,)).fetchone()
        return None if row is None else self._to_job(row)

    def next_due_ms(self) -> int | None:
        """When the earliest ready job may be tried again."""
        with self.lock:
            row = self.db.execute("SELECT MIN(next_attempt_ms) FROM report_jobs WHERE state = ?",
                                  (STATE_READY,)).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def set_ready(self, job_id: int, payloads: list[tuple[str, bytes]]) -> None:
        """Store the built reports and make the job sendable, in one transaction."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for position, (uid, data) in enumerate(payloads):
                    self.db.execute("INSERT INTO report_payloads (job_id, position, sop_instance_uid, data) "
                                    "VALUES (?, ?, ?, ?)", (job_id, position, uid, data))
                self.db.execute("UPDATE report_jobs SET state = ?, next_attempt_ms = 0 WHERE id = ?",
                                (STATE_READY, job_id))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def get_payloads(self, job_id: int) -> list[tuple[str, bytes]]:
        with self.lock:
            rows = self.db.execute("SELECT sop_instance_uid, data FROM report_payloads WHERE job_id = ? "
                                   "ORDER BY position", (job_id,)).fetchall()
        return [(row[0], bytes(row[1])) for row in rows]

    def mark_attempt_failed(self, job_id: int, error: str, next_attempt_ms: int) -> None:
        self._write("UPDATE report_jobs SET attempts = attempts + 1, last_error = ?, next_attempt_ms = ? "
                    "WHERE id = ?", (error[:500], next_attempt_ms, job_id))

    def mark_failed(self, job_id: int, error: str) -> None:
        self._write("UPDATE report_jobs SET state = ?, last_error = ? WHERE id = ?", (STATE_FAILED, error[:500], job_id))

    def mark_sent(self, job_id: int, now_ms: int) -> None:
        """Sent: keep the job row (audit), drop the patient attributes and the report bytes."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE report_jobs SET state = ?, sent_ms = ?, attempts = attempts + 1, context = NULL, "
                            "last_error = NULL WHERE id = ?", (STATE_SENT, now_ms, job_id))
            self.db.execute("DELETE FROM report_payloads WHERE job_id = ?", (job_id,))
            self.db.execute("COMMIT")

    def count_jobs(self) -> dict[str, int]:
        with self.lock:
            rows = self.db.execute("SELECT state, COUNT(*) FROM report_jobs GROUP BY state").fetchall()
        return {row[0]: row[1] for row in rows}

    def get_series_log(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT created_ms, source, series_uid, modality, instances, outcome, reason, "
                                   "record_id FROM series_log ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [{"created_ms": r[0], "source": r[1], "series_uid": r[2], "modality": r[3], "instances": r[4],
                 "outcome": r[5], "reason": r[6], "record_id": bytes(r[7]).hex() if r[7] else None} for r in rows]
