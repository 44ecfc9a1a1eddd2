"""Bans: member ids and addresses refused for a while, each with its reason.

Authenticated misbehaviour bans the member id (its key) and the address it
came from; unauthenticated misbehaviour (garbage before the handshake) bans
the address. Addresses listed as exempt (the node's own host, so that
co-located honest nodes are not shut out, as Bitcoin Core exempts local
peers) are never banned, only disconnected.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from network.constants import BAN_DURATION_S, MAX_BANS

log = logging.getLogger("lungledger.net")


@dataclass(frozen=True)
class Ban:
    key: str
    reason: str
    until: float


def member_key(member_id: bytes) -> str:
    return "member:" + member_id.hex()


def address_key(host: str) -> str:
    return "addr:" + host


class BanList:
    def __init__(self, exempt_hosts: Iterable[str] = (), clock: Callable[[], float] = time.monotonic,
                 duration_s: float = BAN_DURATION_S) -> None:
        self.exempt_hosts = set(exempt_hosts)
        self.clock = clock
        self.duration_s = duration_s
        self.bans: OrderedDict[str, Ban] = OrderedDict()

    def ban(self, reason: str, member_id: bytes | None = None, host: str | None = None,
            duration_s: float | None = None) -> list[str]:
        keys = []
        if member_id is not None:
            keys.append(member_key(member_id))
        if host is not None and host not in self.exempt_hosts:
            keys.append(address_key(host))
        until = self.clock() + (self.duration_s if duration_s is None else min(duration_s, self.duration_s))
        for key in keys:
            self.bans[key] = Ban(key, reason, until)
            self.bans.move_to_end(key)
        while len(self.bans) > MAX_BANS:
            self.bans.popitem(last=False)
        return keys

    def get_ban(self, member_id: bytes | None = None, host: str | None = None) -> Ban | None:
        for key in ([member_key(member_id)] if member_id else []) + ([address_key(host)] if host else []):
            ban = self.bans.get(key)
            if ban is None:
                continue
            if ban.until > self.clock():
                return ban
            del self.bans[key]
        return None

    def is_exempt(self, host: str) -> bool:
        return host in self.exempt_hosts

    def is_banned(self, member_id: bytes | None = None, host: str | None = None) -> bool:
        return self.get_ban(member_id, host) is not None

    def get_banned_members(self) -> set[bytes]:
        now = self.clock()
        return {bytes.fromhex(ban.key.removeprefix("member:")) for ban in self.bans.values()
                if ban.key.startswith("member:") and ban.until > now}

    def unban_all(self) -> None:
        """Lift every ban (tests/functional/test_p2p_rate_limits.py, between rounds of one flooding member)."""
        self.bans.clear()

    def to_records(self) -> list[dict[str, object]]:
        """Live bans as plain data (key, reason, seconds left), to be saved across a restart."""
        now = self.clock()
        return [{"key": ban.key, "reason": ban.reason, "remaining_s": round(ban.until - now, 3)}
                for ban in self.bans.values() if ban.until > now]

    def load_records(self, records: object, elapsed_s: float = 0.0) -> int:
        """Restore saved bans, less the time that passed since they were saved; returns how many.

        Malformed entries are skipped: a damaged file must not stop the node.
        """
        if not isinstance(records, list):
            return 0
        now, loaded = self.clock(), 0
        for record in records[-MAX_BANS:]:
            if not isinstance(record, dict):
                continue
            key, reason, remaining = record.get("key"), record.get("reason"), record.get("remaining_s")
            if not (isinstance(key, str) and key.startswith(("member:", "addr:")) and isinstance(reason, str)
                    and isinstance(remaining, (int, float))):
                continue
            left = min(float(remaining) - elapsed_s, self.duration_s)
            if left > 0 and not (key.startswith("addr:") and key.removeprefix("addr:") in self.exempt_hosts):
                self.bans[key] = Ban(key, reason, now + left)
                loaded += 1
        return loaded
