"""Pre-handshake limits: who may start an inbound handshake, and what an idle one costs.

Before the handshake nothing is authenticated, so every rule here is about the
source *address*, never a member id:

- at most MAX_HANDSHAKES_PER_ADDRESS handshakes at once from one address;
- at most MAX_HANDSHAKING at once in all, plus RESERVED_MEMBER_HANDSHAKES that
  only addresses members were seen at may use (bootstrap and learned addresses,
  hosts of past sessions), so strangers cannot fill every slot;
- a handshake that runs past HANDSHAKE_TIMEOUT_S is idle: MAX_IDLE_HANDSHAKES of
  them ban the address for IDLE_HANDSHAKE_BAN_S.

The node's own hosts (exempt from bans, see network.bans) are exempt here too.
Our own dials never take inbound slots.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable

from network.bans import BanList
from network.constants import (
    IDLE_HANDSHAKE_BAN_S, MAX_HANDSHAKES_PER_ADDRESS, MAX_HANDSHAKING, MAX_IDLE_HANDSHAKES, MAX_KNOWN_ADDRESSES,
    RESERVED_MEMBER_HANDSHAKES,
)

log = logging.getLogger("lungledger.net")


class HandshakeAdmission:
    def __init__(self, bans: BanList, get_member_hosts: Callable[[], set[str]]) -> None:
        self.bans = bans
        self.get_member_hosts = get_member_hosts
        self.pending: Counter[str] = Counter()
        self.idle_strikes: OrderedDict[str, int] = OrderedDict()
        self.session_hosts: OrderedDict[str, None] = OrderedDict()  # hosts authenticated members came from
        self.refused = 0

    @property
    def handshaking(self) -> int:
        return sum(self.pending.values())

    def is_member_host(self, host: str) -> bool:
        return self.bans.is_exempt(host) or host in self.session_hosts or host in self.get_member_hosts()

    def get_refusal(self, host: str) -> str | None:
        """Why an inbound handshake from ``host`` may not start now (None: it may)."""
        if not self.bans.is_exempt(host) and self.pending[host] >= MAX_HANDSHAKES_PER_ADDRESS:
            reason = "too many handshakes from this address"
        elif self.handshaking >= MAX_HANDSHAKING + (RESERVED_MEMBER_HANDSHAKES if self.is_member_host(host) else 0):
            reason = "no free handshake slots"
        else:
            return None
        self.refused += 1
        return reason

    def on_started(self, host: str) -> None:
        self.pending[host] += 1

    def on_ended(self, host: str) -> None:
        self.pending[host] -= 1
        if self.pending[host] <= 0:
            del self.pending[host]

    def on_authenticated(self, host: str) -> None:
        self.session_hosts[host] = None
        self.session_hosts.move_to_end(host)
        while len(self.session_hosts) > MAX_KNOWN_ADDRESSES:
            self.session_hosts.popitem(last=False)
        self.idle_strikes.pop(host, None)

    def on_idle(self, host: str) -> bool:
        """Count an idle handshake; True when it got the address banned."""
        strikes = self.idle_strikes.pop(host, 0) + 1
        self.idle_strikes[host] = strikes
        while len(self.idle_strikes) > MAX_KNOWN_ADDRESSES:
            self.idle_strikes.popitem(last=False)
        if strikes < MAX_IDLE_HANDSHAKES:
            return False
        del self.idle_strikes[host]
        banned = bool(self.bans.ban("idle-handshakes", host=host, duration_s=IDLE_HANDSHAKE_BAN_S))
        log.warning("%s address %s: %d idle handshakes", "banned" if banned else "not banning own", host, strikes)
        return banned
