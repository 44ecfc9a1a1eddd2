"""People on this node: accounts, sign-in sessions, who ran which diagnosis, and the audit log.

One SQLite file per node (``<data_dir>/accounts.sqlite3``), separate from the
chain store: none of it is ever gossiped. Passwords are hashed with Argon2id
(argon2-cffi's defaults, RFC 9106 low-memory profile). Session tokens are
random 32-byte values of which only the SHA-256 is stored, so a copy of the
file does not let anyone sign in. The audit log is append-only: SQLite
triggers refuse UPDATE and DELETE, and each entry carries the SHA-256 of the
previous one, so a removed or edited row breaks the chain
(:meth:`AccountStore.verify_audit`).

Every method is blocking (Argon2 takes tens of milliseconds on purpose);
callers on the event loop run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ACCOUNTS_FILE = "accounts.sqlite3"
ROLES = ("user", "admin")
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 256
SESSION_IDLE_MS = 30 * 60 * 1000  # signed out after 30 minutes without a request
SESSION_MAX_MS = 12 * 60 * 60 * 1000  # and after 12 hours in any case
MAX_PAGE = 100
AUDIT_GENESIS = "0" * 64

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, username TEXT NOT NULL REFERENCES users(username), csrf_token TEXT NOT NULL,
    created_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS diagnoses (
    record_id TEXT PRIMARY KEY, username TEXT NOT NULL, created_ms INTEGER NOT NULL,
    patient_pseudonym TEXT, label TEXT NOT NULL, risk_level TEXT NOT NULL, modalities TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS diagnoses_by_user ON diagnoses(username, created_ms);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, username TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT, detail TEXT NOT NULL, prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class AccountError(ValueError):
    """A refused account operation, with a stable reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class User:
    username: str
    role: str
    disabled: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def to_dict(self) -> dict[str, Any]:
        return {"username": self.username, "role": self.role, "disabled": self.disabled}


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    created_ms: int
    expires_ms: int


def hash_session_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def compute_audit_hash(prev_hash: str, time_ms: int, username: str, action: str, target: str | None,
                       detail: str) -> str:
    payload = json.dumps([prev_hash, time_ms, username, action, target, detail], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def validate_username(username: str) -> str:
    if not USERNAME_PATTERN.match(username or ""):
        raise AccountError("bad-username", "a user name is 2-32 characters: lower-case letters, digits, '.', '_' "
                                           "or '-', starting with a letter or digit")
    return username


def validate_password(password: str) -> str:
    if not MIN_PASSWORD_CHARS <= len(password or "") <= MAX_PASSWORD_CHARS:
        raise AccountError("weak-password", f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return password


class AccountStore:
    """Accounts, sessions, the worklist index and the audit log in one SQLite file."""

    def __init__(self, path: Path, clock_ms: Any = None) -> None:
        self.path = path
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.hasher = PasswordHasher()
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():  # created private (0600); SQLite gives its -wal/-shm files the same mode
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        # A hash that no password matches, so an unknown name costs as much as a wrong password.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---------------------------------------------------------------- accounts
    def add_user(self, username: str, password: str, role: str = "user") -> User:
        validate_username(username)
        validate_password(password)
        if role not in ROLES:
            raise AccountError("bad-role", f"role must be one of {ROLES}")
        password_hash = self.hasher.hash(password)
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
                raise AccountError("user-exists", f"there is already a user {username!r}")
            db.execute("INSERT INTO users VALUES (?, ?, ?, 0, ?)", (username, password_hash, role, self.clock_ms()))
        self.append_audit("node-admin", "user-add", username, {"role": role})
        return User(username, role)

    def set_disabled(self, username: str, disabled: bool = True) -> User:
        with self._transaction() as db:
            row = db.execute("SELECT role FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                raise AccountError("no-such-user", f"there is no user {username!r}")
            db.execute("UPDATE users SET disabled = ? WHERE username = ?", (int(disabled), username))
            if disabled:
                db.execute("DELETE FROM sessions WHERE username = ?", (username,))
        self.append_audit("node-admin", "user-disable" if disabled else "user-enable", username, {})
        return User(username, row[0], disabled)

    def list_users(self) -> list[User]:
        with self._lock:
            rows = self._db.execute("SELECT username, role, disabled FROM users ORDER BY username").fetchall()
        return [User(name, role, bool(disabled)) for name, role, disabled in rows]

    def has_user(self, username: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone() is not None

    def check_password(self, username: str, password: str) -> User | None:
        """The user if the name and password match an enabled account; None otherwise (same cost either way)."""
        with self._lock:
            row = self._db.execute("SELECT password_hash, role, disabled FROM users WHERE username = ?",
                                   (username,)).fetchone()
        try:
            self.hasher.verify(row[0] if row else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row[2]:
            return None
        return User(username, row[1])

    # ---------------------------------------------------------------- sessions
    def open_session(self, user: User) -> tuple[str, Session]:
        """A new session; returns the secret token (for the cookie) and the session."""
        token, csrf_token, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock_ms()
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE seen_ms < ? OR created_ms < ?",
                       (now - SESSION_IDLE_MS, now - SESSION_MAX_MS))
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                       (hash_session_token(token), user.username, csrf_token, now, now))
        return token, Session(user, csrf_token, now, self._expiry(now, now))

    @staticmethod
    def _expiry(created_ms: int, seen_ms: int) -> int:
        return min(seen_ms + SESSION_IDLE_MS, created_ms + SESSION_MAX_MS)

    def get_session(self, token: str) -> Session | None:
        """The live session for a cookie token (and mark it used), or None if unknown, expired or disabled."""
        now, token_hash = self.clock_ms(), hash_session_token(token)
        with self._transaction() as db:
            row = db.execute("SELECT s.username, s.csrf_token, s.created_ms, s.seen_ms, u.role, u.disabled "
                             "FROM sessions s JOIN users u ON u.username = s.username WHERE s.token_hash = ?",
                             (token_hash,)).fetchone()
            if row is None:
                return None
            username, csrf_token, created_ms, seen_ms, role, disabled = row
            if disabled or now >= self._expiry(created_ms, seen_ms):
                db.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
                return None
            db.execute("UPDATE sessions SET seen_ms = ? WHERE token_hash = ?", (now, token_hash))
        return Session(User(username, role), csrf_token, created_ms, self._expiry(created_ms, now))

    def close_session(self, token: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (hash_session_token(token),))

    # ---------------------------------------------------------------- worklist
    def add_diagnosis(self, record_id: str, username: str, created_ms: int, patient_pseudonym: str | None,
                      label: str, risk_level: str, modalities: list[str]) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO diagnoses VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (record_id, username, created_ms, patient_pseudonym, label, risk_level, ",".join(modalities)))

    def get_diagnosis_owner(self, record_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT username FROM diagnoses WHERE record_id = ?", (record_id,)).fetchone()
        return row[0] if row else None

    def list_diagnoses(self, username: str | None, filters: Mapping[str, Any], offset: int,
                       limit: int) -> tuple[int, list[dict[str, Any]]]:
        """Newest first; ``username`` None lists every user's. Filters: pseudonym, since_ms, until_ms, risk_level."""
        clauses, values = [], []
        for column, key, operator in (("username", "username", "="), ("patient_pseudonym", "pseudonym", "="),
                                      ("created_ms", "since_ms", ">="), ("created_ms", "until_ms", "<"),
                                      ("risk_level", "risk_level", "=")):
            value = username if key == "username" else filters.get(key)
            if value is not None:
                clauses.append(f"{column} {operator} ?")
                values.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM diagnoses {where}", values).fetchone()[0]
            rows = self._db.execute(f"SELECT record_id, username, created_ms, label, risk_level, modalities, "
                                    f"patient_pseudonym IS NOT NULL FROM diagnoses {where} "
                                    f"ORDER BY created_ms DESC, record_id LIMIT ? OFFSET ?",
                                    [*values, min(limit, MAX_PAGE), offset]).fetchall()
        items = [{"record_id": row[0], "username": row[1], "created_ms": row[2], "label": row[3],
                  "risk_level": row[4], "modalities": row[5].split(","), "has_patient_ref": bool(row[6])}
                 for row in rows]
        return total, items

    # ------------------------------------------------------------------- audit
    def append_audit(self, username: str, action: str, target: str | None, detail: Mapping[str, Any]) -> int:
        """Append one entry, chained to the previous one by hash; returns its sequence number."""
        detail_text = json.dumps(dict(detail), sort_keys=True, separators=(",", ":"))
        with self._transaction() as db:
            row = db.execute("SELECT entry_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            prev_hash, now = (row[0] if row else AUDIT_GENESIS), self.clock_ms()
            entry_hash = compute_audit_hash(prev_hash, now, username, action, target, detail_text)
            cursor = db.execute("INSERT INTO audit (time_ms, username, action, target, detail, prev_hash, entry_hash) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (now, username, action, target, detail_text, prev_hash, entry_hash))
        return int(cursor.lastrowid or 0)

    def list_audit(self, offset: int, limit: int, username: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        """Newest first."""
        where, values = ("WHERE username = ?", [username]) if username else ("", [])
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM audit {where}", values).fetchone()[0]
            rows = self._db.execute(f"SELECT seq, time_ms, username, action, target, detail, entry_hash FROM audit "
                                    f"{where} ORDER BY seq DESC LIMIT ? OFFSET ?",
                                    [*values, min(limit, MAX_PAGE), offset]).fetchall()
        return total, [{"seq": row[0], "time_ms": row[1], "username": row[2], "action": row[3], "target": row[4],
                        "detail": json.loads(row[5]), "entry_hash": row[6]} for row in rows]

    def verify_audit(self) -> tuple[bool, int | None]:
        """Recompute the hash chain; (True, None) if intact, else (False, first bad sequence number)."""
        prev_hash = AUDIT_GENESIS
        with self._lock:
            rows = self._db.execute("SELECT seq, time_ms, username, action, target, detail, prev_hash, entry_hash "
                                    "FROM audit ORDER BY seq").fetchall()
        for seq, time_ms, username, action, target, detail, stored_prev, entry_hash in rows:
            if stored_prev != prev_hash or compute_audit_hash(prev_hash, time_ms, username, action, target,
                                                              detail) != entry_hash:
                return False, seq
            prev_hash = entry_hash
        return True, None


def open_account_store(data_dir: Path) -> AccountStore:
    return AccountStore(data_dir / ACCOUNTS_FILE)
