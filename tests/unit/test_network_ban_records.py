"""Bans survive a restart as plain records: time left is kept, junk is skipped."""

from __future__ import annotations

from network.bans import BanList


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_records_round_trip_less_the_elapsed_time() -> None:
    clock = FakeClock()
    bans = BanList(clock=clock, duration_s=100)
    bans.ban("invalid-block:bad-pow", member_id=b"\x01" * 16, host="10.0.0.9")
    clock.now += 40
    records = bans.to_records()
    assert {r["key"] for r in records} == {"member:" + "01" * 16, "addr:10.0.0.9"}
    restored = BanList(clock=clock, duration_s=100)
    assert restored.load_records(records, elapsed_s=30) == 2
    assert restored.get_ban(member_id=b"\x01" * 16).reason == "invalid-block:bad-pow"
    clock.now += 29
    assert restored.is_banned(host="10.0.0.9")
    clock.now += 2  # 60 s were left at saving, 30 passed while stopped, 31 since
    assert not restored.is_banned(host="10.0.0.9")


def test_expired_exempt_and_malformed_records_are_skipped() -> None:
    clock = FakeClock()
    bans = BanList(exempt_hosts={"127.0.0.1"}, clock=clock, duration_s=100)
    junk = [
        {"key": "member:" + "02" * 16, "reason": "x", "remaining_s": 5},  # expired while stopped
        {"key": "addr:127.0.0.1", "reason": "x", "remaining_s": 50},  # our own host: never banned
        {"key": "other:thing", "reason": "x", "remaining_s": 50},
        {"key": "addr:10.0.0.1", "reason": 7, "remaining_s": 50},
        "not a dict",
        {"key": "addr:10.0.0.2", "reason": "ok", "remaining_s": 10**9},  # capped at the ban duration
    ]
    assert bans.load_records(junk, elapsed_s=10) == 1
    assert bans.get_ban(host="10.0.0.2").until == clock.now + 100
    assert bans.load_records({"not": "a list"}) == 0
