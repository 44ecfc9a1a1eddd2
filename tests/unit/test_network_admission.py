"""Pre-handshake limits: per-address, stranger slots and members' reserved ones, idle strikes ban the address."""

from __future__ import annotations

from network.admission import HandshakeAdmission
from network.bans import BanList
from network.constants import (
    IDLE_HANDSHAKE_BAN_S, MAX_HANDSHAKES_PER_ADDRESS, MAX_HANDSHAKING, MAX_IDLE_HANDSHAKES, RESERVED_MEMBER_HANDSHAKES,
)


def make_admission(member_hosts: set[str] | None = None) -> tuple[HandshakeAdmission, BanList, list[float]]:
    now = [1000.0]
    bans = BanList(exempt_hosts=["127.0.0.1"], clock=lambda: now[0])
    return HandshakeAdmission(bans, lambda: set(member_hosts or ())), bans, now


def test_one_address_gets_only_its_share() -> None:
    admission, _, _ = make_admission()
    for _ in range(MAX_HANDSHAKES_PER_ADDRESS):
        assert admission.get_refusal("10.0.0.9") is None
        admission.on_started("10.0.0.9")
    assert admission.get_refusal("10.0.0.9") == "too many handshakes from this address"
    assert admission.get_refusal("10.0.0.10") is None
    admission.on_ended("10.0.0.9")
    assert admission.get_refusal("10.0.0.9") is None


def test_strangers_cannot_take_the_slots_reserved_for_members() -> None:
    admission, _, _ = make_admission(member_hosts={"10.1.1.1"})
    for number in range(MAX_HANDSHAKING):
        admission.on_started(f"10.0.0.{number}")
    assert admission.get_refusal("10.0.0.200") == "no free handshake slots"
    for number in range(RESERVED_MEMBER_HANDSHAKES):
        assert admission.get_refusal("10.1.1.1" if number % 2 else "127.0.0.1") is None
        admission.on_started("10.1.1.1" if number % 2 else "127.0.0.1")
    assert admission.get_refusal("127.0.0.1") == "no free handshake slots"
    admission.on_authenticated("10.2.2.2")  # a member came from here once: it is a member host from now on
    assert admission.is_member_host("10.2.2.2") and not admission.is_member_host("10.0.0.200")


def test_idle_handshakes_ban_the_address_for_a_while_and_never_an_exempt_one() -> None:
    admission, bans, now = make_admission()
    for strike in range(1, MAX_IDLE_HANDSHAKES + 1):
        assert admission.on_idle("10.0.0.9") is (strike == MAX_IDLE_HANDSHAKES)
    ban = bans.get_ban(host="10.0.0.9")
    assert ban is not None and ban.reason == "idle-handshakes" and ban.until == now[0] + IDLE_HANDSHAKE_BAN_S
    assert not bans.get_banned_members()
    for _ in range(MAX_IDLE_HANDSHAKES):
        assert admission.on_idle("127.0.0.1") is False
    assert not bans.is_banned(host="127.0.0.1")


def test_an_authenticated_session_clears_the_strikes() -> None:
    admission, bans, _ = make_admission()
    for _ in range(MAX_IDLE_HANDSHAKES - 1):
        admission.on_idle("10.0.0.9")
    admission.on_authenticated("10.0.0.9")
    admission.on_idle("10.0.0.9")
    assert not bans.is_banned(host="10.0.0.9")
