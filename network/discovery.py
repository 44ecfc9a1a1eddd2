"""Where peers are: bootstrap addresses, addresses learned by peer exchange, backoff.

Bootstrap addresses (config or command line) are kept connected for good;
addresses learned from members (`peers` messages) are dialed while we have
fewer outbound connections than the target. Every failed dial doubles that
address's wait, from RECONNECT_BACKOFF_MIN_S up to RECONNECT_BACKOFF_MAX_S
(RECONNECT_BOOTSTRAP_BACKOFF_MAX_S for bootstrap members, so that a member
comes back within seconds once an outage or an attack ends).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from network.constants import (
    MAX_KNOWN_ADDRESSES, MAX_PEERS_PER_MESSAGE, RECONNECT_BACKOFF_MAX_S, RECONNECT_BACKOFF_MIN_S,
    RECONNECT_BOOTSTRAP_BACKOFF_MAX_S,
)
from network.messages import PeerAddress, Peers
from network.peer import Peer

Address = tuple[str, int]


def parse_address(text: str) -> Address:
    host, separator, port = text.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"peer address {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


@dataclass
class Backoff:
    delay_s: float = RECONNECT_BACKOFF_MIN_S
    next_attempt: float = 0.0

    def on_failure(self, now: float, max_delay_s: float = RECONNECT_BACKOFF_MAX_S) -> None:
        self.delay_s = min(self.delay_s, max_delay_s)
        self.next_attempt = now + self.delay_s
        self.delay_s = min(self.delay_s * 2, max_delay_s)

    def on_success(self) -> None:
        self.delay_s = RECONNECT_BACKOFF_MIN_S
        self.next_attempt = 0.0


class AddressBook:
    def __init__(self, own_member_id: bytes, is_member: Callable[[bytes], bool],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.own_member_id = own_member_id
        self.is_member = is_member
        self.clock = clock
        self.bootstrap: list[Address] = []
        self.learned: OrderedDict[bytes, Address] = OrderedDict()
        self.backoff: dict[Address, Backoff] = {}

    def add_bootstrap(self, address: Address) -> None:
        if address not in self.bootstrap:
            self.bootstrap.append(address)

    def remove_bootstrap(self, address: Address) -> None:
        if address in self.bootstrap:
            self.bootstrap.remove(address)

    def learn(self, address: PeerAddress) -> None:
        if address.member_id == self.own_member_id or not self.is_member(address.member_id):
            return
        self.learned[address.member_id] = (address.host, address.port)
        self.learned.move_to_end(address.member_id)
        while len(self.learned) > MAX_KNOWN_ADDRESSES:
            self.learned.popitem(last=False)

    def is_due(self, address: Address) -> bool:
        backoff = self.backoff.get(address)
        return backoff is None or backoff.next_attempt <= self.clock()

    def on_dial_failed(self, address: Address) -> None:
        limit = RECONNECT_BOOTSTRAP_BACKOFF_MAX_S if address in self.bootstrap else RECONNECT_BACKOFF_MAX_S
        self.backoff.setdefault(address, Backoff()).on_failure(self.clock(), limit)

    def get_member_hosts(self) -> set[str]:
        """Hosts that members were configured or announced at."""
        return {host for host, _ in self.bootstrap} | {host for host, _ in self.learned.values()}

    def on_dial_succeeded(self, address: Address) -> None:
        self.backoff.setdefault(address, Backoff()).on_success()

    def get_candidates(self, connected_members: set[bytes], busy: set[Address]) -> list[Address]:
        """Learned addresses of members we are not connected to, due for a dial."""
        return [
            address for member_id, address in self.learned.items()
            if member_id not in connected_members and address not in busy and self.is_due(address)
        ]


def make_peers_message(peers: Sequence[Peer], asker: Peer) -> Peers:
    """Addresses of the authenticated members we are connected to (not the asker's own)."""
    addresses = [
        PeerAddress(peer.host, peer.listen_port, peer.member_id)
        for peer in peers
        if peer is not asker and peer.listen_port > 0
    ]
    return Peers(tuple(addresses[:MAX_PEERS_PER_MESSAGE]))
