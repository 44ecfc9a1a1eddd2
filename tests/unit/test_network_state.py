"""Bans expire and spare the own host; backoff doubles up to its cap; the header tree fetches lowest first."""

from __future__ import annotations

import pytest

from consensus.builders import compute_block_meta
from network.bans import BanList
from network.constants import RECONNECT_BACKOFF_MAX_S, RECONNECT_BACKOFF_MIN_S
from network.discovery import AddressBook, Backoff, parse_address
from network.headers import HeaderTree
from network.messages import PeerAddress
from tests.support.builders import build_branch, make_chain, make_member


def test_ban_expires_and_own_host_is_exempt() -> None:
    now = [1000.0]
    bans = BanList(exempt_hosts={"127.0.0.1"}, clock=lambda: now[0], duration_s=60)
    keys = bans.ban("malformed-frame", member_id=b"m" * 16, host="127.0.0.1")
    assert keys == ["member:" + (b"m" * 16).hex()]
    bans.ban("oversized-frame", host="10.0.0.9")
    assert bans.get_ban(host="10.0.0.9").reason == "oversized-frame"  # type: ignore[union-attr]
    assert bans.is_banned(member_id=b"m" * 16) and not bans.is_banned(host="127.0.0.1")
    assert bans.get_banned_members() == {b"m" * 16}
    now[0] += 61
    assert not bans.is_banned(member_id=b"m" * 16) and not bans.is_banned(host="10.0.0.9")


def test_backoff_doubles_to_cap_and_resets() -> None:
    backoff, delays = Backoff(), []
    for _ in range(12):
        delays.append(backoff.delay_s)
        backoff.on_failure(0.0)
    assert delays[:3] == [RECONNECT_BACKOFF_MIN_S, 2 * RECONNECT_BACKOFF_MIN_S, 4 * RECONNECT_BACKOFF_MIN_S]
    assert max(delays) == RECONNECT_BACKOFF_MAX_S
    backoff.on_success()
    assert backoff.delay_s == RECONNECT_BACKOFF_MIN_S and backoff.next_attempt == 0.0


def test_address_book_keeps_members_only() -> None:
    members = {b"a" * 16, b"b" * 16}
    book = AddressBook(b"a" * 16, lambda m: m in members)
    for member_id in (b"a" * 16, b"b" * 16, b"x" * 16):
        book.learn(PeerAddress("127.0.0.1", 9000, member_id))
    assert list(book.learned) == [b"b" * 16]
    assert book.get_candidates(set(), set()) == [("127.0.0.1", 9000)]
    assert book.get_candidates({b"b" * 16}, set()) == []


@pytest.mark.parametrize("text", ["nohost", ":80", "host:", "host:99999", "host:x"])
def test_bad_peer_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_header_tree_fetches_lowest_first_from_sources_and_drops_descendants() -> None:
    member = make_member("A", 7)
    params, genesis = make_chain([member])
    blocks = build_branch(genesis, 0, member, 5)
    tree = HeaderTree()
    for block in reversed(blocks):
        tree.add(block.header, b"peer-1")
    assert tree.take_wanted(2, 100, lambda h: b"peer-2" in tree.sources[h]) == []
    first_two = tree.take_wanted(2, 100, lambda h: True)
    assert first_two == [blocks[0].block_hash, blocks[1].block_hash]
    assert tree.take_wanted(10, 3, lambda h: True) == [blocks[2].block_hash]  # height limit 3
    dropped = tree.remove_descendants(blocks[1].block_hash)
    assert set(dropped) == {b.block_hash for b in blocks[2:]}
    assert len(tree) == 2
    assert compute_block_meta(blocks[0], 0).height == 1


async def test_peer_that_does_not_read_is_closed_at_the_byte_limit() -> None:
    from network.constants import MAX_SEND_QUEUE_BYTES
    from network.messages import Blocks, Hello
    from network.peer import FrameChannel, Peer

    class SilentSocket:
        closed = False

        async def close(self) -> None:
            self.closed = True

    hello = Hello(1, bytes(32), b"p" * 16, bytes(32), 1, 0, "x")
    peer = Peer(FrameChannel(SilentSocket()), hello, "inbound", "10.0.0.1", "P")
    reply = Blocks((bytes(3 * 1024 * 1024 - 64),))
    for _ in range(MAX_SEND_QUEUE_BYTES // (3 * 1024 * 1024) + 1):
        peer.send(reply)
    assert peer.closing == "send queue full (peer not reading)"
    assert peer.queued_bytes <= MAX_SEND_QUEUE_BYTES


def test_bootstrap_members_are_redialed_within_seconds() -> None:
    from network.constants import RECONNECT_BACKOFF_MAX_S, RECONNECT_BOOTSTRAP_BACKOFF_MAX_S

    now = [0.0]
    book = AddressBook(b"\x01" * 16, lambda member: True, clock=lambda: now[0])
    book.add_bootstrap(("10.0.0.1", 8545))
    for _ in range(20):
        book.on_dial_failed(("10.0.0.1", 8545))
        book.on_dial_failed(("10.0.0.2", 8545))
    assert book.backoff[("10.0.0.1", 8545)].next_attempt <= RECONNECT_BOOTSTRAP_BACKOFF_MAX_S
    assert book.backoff[("10.0.0.2", 8545)].delay_s == RECONNECT_BACKOFF_MAX_S


def test_one_injected_clock_drives_bans_backoff_and_sync() -> None:
    """PeerNetwork's clock reaches every part that keeps time (as Bitcoin Core's setmocktime)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from network.constants import BAN_DURATION_S
    from network.service import NetworkSettings, PeerNetwork
    from network.tls import build_node_tls
    from tests.support.builders import make_chain, make_member

    member = make_member("Clocked", 91)
    params, genesis = make_chain([member])

    class Backend:
        chain_id = genesis.block_hash

        def subscribe(self, listener: object) -> None:
            pass

        def subscribe_records(self, listener: object) -> None:
            pass

    Backend.params = params  # type: ignore[attr-defined]
    now = [1000.0]
    # With TLS on (the default), a punished member id is banned; without it only an address could be.
    tls = build_node_tls(member.key, member.member_id, params.members)
    network = PeerNetwork(Backend(), Ed25519PrivateKey.generate(), member.member_id,  # type: ignore[arg-type]
                          NetworkSettings("127.0.0.1", 0, tls=tls), clock=lambda: now[0])
    assert network.bans.clock() == network.book.clock() == network.sync.clock() == 1000.0
    network.punish(b"x" * 16, "test-reason")
    assert network.bans.is_banned(member_id=b"x" * 16)
    now[0] += BAN_DURATION_S + 1
    assert not network.bans.is_banned(member_id=b"x" * 16)
