"""Per-peer, per-message-type rate limits: one token bucket per message type.

As Chia's rate limiter: each message type of a peer has its own bucket
(MESSAGE_RATE_LIMITS: rate and burst), so a flood of one type neither starves
the others nor costs us more than the limit. The session drops what does not
fit and counts it; network.service disconnects a peer past
MAX_THROTTLED_MESSAGES and refuses it for a back-off that doubles per repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

from network.constants import (
    BAN_DURATION_S, DEFAULT_MESSAGE_RATE, FLOOD_BAN_MIN_S, MAX_THROTTLED_MESSAGES, MESSAGE_RATE_LIMITS,
)


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def take_up_to(self, count: int, now: float) -> int:
        """Take up to ``count`` whole tokens; return how many were available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        taken = min(count, int(self.tokens))
        self.tokens -= taken
        return taken


class MessageRateLimiter:
    """The buckets of one session; ``allow`` says whether a message of a type fits now."""

    def __init__(self, now: float, limits: dict[str, tuple[float, float]] = MESSAGE_RATE_LIMITS) -> None:
        self.limits = limits
        self.started = now
        self.buckets: dict[str, TokenBucket] = {}
        self.throttled = 0

    def allow(self, message_type: str, now: float) -> bool:
        bucket = self.buckets.get(message_type)
        if bucket is None:
            rate, burst = self.limits.get(message_type, DEFAULT_MESSAGE_RATE)
            bucket = self.buckets[message_type] = TokenBucket(rate, burst, burst, now)
        if bucket.take(now):
            return True
        self.throttled += 1
        return False

    @property
    def is_flooding(self) -> bool:
        return self.throttled > MAX_THROTTLED_MESSAGES


def compute_flood_ban_s(offences: int) -> float:
    """The refusal after a peer's ``offences``-th flood: FLOOD_BAN_MIN_S, doubling, capped."""
    return float(min(FLOOD_BAN_MIN_S * 2 ** max(0, min(offences - 1, 32)), BAN_DURATION_S))
