"""Accounts, sessions and the audit log (node/users.py) on a real SQLite file.

Plan: passwords are Argon2 hashes and wrong / unknown / disabled accounts are
refused alike; sessions expire when idle and at their hard limit; the
worklist index pages and filters; the audit log refuses UPDATE and DELETE and
its hash chain shows an edit made behind the triggers' back.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from node.users import SESSION_IDLE_MS, SESSION_MAX_MS, AccountError, AccountStore

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(tmp_path: Path, clock: Clock) -> AccountStore:
    store = AccountStore(tmp_path / "accounts.sqlite3", clock)
    store.add_user("alice", PASSWORD)
    store.add_user("carol", PASSWORD, "admin")
    return store


def test_passwords_are_argon2_and_checked(accounts: AccountStore, tmp_path: Path) -> None:
    stored = sqlite3.connect(tmp_path / "accounts.sqlite3").execute(
        "SELECT password_hash FROM users WHERE username = 'alice'").fetchone()[0]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert accounts.check_password("alice", PASSWORD).username == "alice"  # type: ignore[union-attr]
    assert accounts.check_password("alice", PASSWORD + "x") is None
    assert accounts.check_password("nobody", PASSWORD) is None
    accounts.set_disabled("alice")
    assert accounts.check_password("alice", PASSWORD) is None


@pytest.mark.parametrize(("username", "password", "code"), [
    ("Alice", PASSWORD, "bad-username"), ("a", PASSWORD, "bad-username"), ("al ice", PASSWORD, "bad-username"),
    ("dave", "short", "weak-password"), ("alice", PASSWORD, "user-exists")])
def test_bad_accounts_are_refused(accounts: AccountStore, username: str, password: str, code: str) -> None:
    with pytest.raises(AccountError) as caught:
        accounts.add_user(username, password)
    assert caught.value.code == code


def test_sessions_expire_idle_and_at_the_hard_limit(accounts: AccountStore, clock: Clock) -> None:
    user = accounts.check_password("alice", PASSWORD)
    assert user is not None
    token, session = accounts.open_session(user)
    assert accounts.get_session(token).csrf_token == session.csrf_token  # type: ignore[union-attr]
    clock.now += SESSION_IDLE_MS - 1
    assert accounts.get_session(token) is not None  # used just in time: the idle timer restarts
    clock.now += SESSION_IDLE_MS
    assert accounts.get_session(token) is None
    token, _ = accounts.open_session(user)
    for _ in range(SESSION_MAX_MS // (SESSION_IDLE_MS // 2)):
        clock.now += SESSION_IDLE_MS // 2
        if accounts.get_session(token) is None:
            break
    assert accounts.get_session(token) is None and clock.now - 1_700_000_000_000 <= 2 * SESSION_MAX_MS
    token, _ = accounts.open_session(user)
    accounts.close_session(token)
    assert accounts.get_session(token) is None
    token, _ = accounts.open_session(user)
    accounts.set_disabled("alice")
    assert accounts.get_session(token) is None
    assert accounts.get_session("forged") is None


def test_worklist_pages_and_filters(accounts: AccountStore) -> None:
    for index in range(5):
        accounts.add_diagnosis(f"{index:032x}", "alice" if index < 4 else "carol", 1000 + index,
                               "p1" if index % 2 else None, "normal", "High" if index == 3 else "Low", ["ct"])
    total, items = accounts.list_diagnoses("alice", {}, 0, 2)
    assert total == 4 and [item["record_id"][-1] for item in items] == ["3", "2"]
    assert [item["record_id"][-1] for item in accounts.list_diagnoses("alice", {}, 2, 2)[1]] == ["1", "0"]
    assert accounts.list_diagnoses(None, {}, 0, 10)[0] == 5
    assert accounts.list_diagnoses("alice", {"pseudonym": "p1"}, 0, 10)[0] == 2
    assert accounts.list_diagnoses("alice", {"risk_level": "High"}, 0, 10)[0] == 1
    assert accounts.list_diagnoses("alice", {"since_ms": 1001, "until_ms": 1003}, 0, 10)[0] == 2
    assert accounts.get_diagnosis_owner(f"{4:032x}") == "carol"


def test_audit_log_is_append_only_and_chained(accounts: AccountStore, tmp_path: Path) -> None:
    accounts.append_audit("alice", "diagnose", "ab" * 16, {"risk_level": "Low"})
    total, entries = accounts.list_audit(0, 10)
    assert total == 3 and [entry["action"] for entry in entries] == ["diagnose", "user-add", "user-add"]
    assert accounts.verify_audit() == (True, None)
    raw = sqlite3.connect(tmp_path / "accounts.sqlite3")
    for statement in ("UPDATE audit SET username = 'mallory'", "DELETE FROM audit WHERE seq = 1"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute(statement)
    # someone with the file drops the triggers and edits a row: the hash chain shows it
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("UPDATE audit SET username = 'mallory' WHERE seq = 3")
    raw.commit()
    assert accounts.verify_audit() == (False, 3)
