"""Token buckets per message type: burst, refill, separate types, flood threshold, doubling back-off."""

from __future__ import annotations

from network.constants import BAN_DURATION_S, FLOOD_BAN_MIN_S, MAX_THROTTLED_MESSAGES
from network.ratelimit import MessageRateLimiter, TokenBucket, compute_flood_ban_s

LIMITS = {"ping": (2.0, 5.0), "announce": (100.0, 100.0)}


def test_burst_then_refill_at_the_rate() -> None:
    limiter = MessageRateLimiter(0.0, LIMITS)
    assert [limiter.allow("ping", 0.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("ping", 0.5) and not limiter.allow("ping", 0.5)  # 0.5 s at 2/s: one more
    assert limiter.throttled == 3


def test_one_type_flooding_does_not_starve_another() -> None:
    limiter = MessageRateLimiter(0.0, LIMITS)
    for _ in range(50):
        limiter.allow("ping", 0.0)
    assert limiter.allow("announce", 0.0)


def test_flooding_past_the_threshold_and_the_back_off_doubles() -> None:
    limiter = MessageRateLimiter(0.0, LIMITS)
    for _ in range(5 + MAX_THROTTLED_MESSAGES):
        limiter.allow("ping", 0.0)
    assert not limiter.is_flooding
    limiter.allow("ping", 0.0)
    assert limiter.is_flooding
    assert [compute_flood_ban_s(n) for n in (1, 2, 3)] == [FLOOD_BAN_MIN_S, 2 * FLOOD_BAN_MIN_S, 4 * FLOOD_BAN_MIN_S]
    assert compute_flood_ban_s(10_000) == BAN_DURATION_S


def test_a_record_bucket_takes_what_fits_and_refills() -> None:
    bucket = TokenBucket(rate=10.0, burst=100.0, tokens=100.0, updated=0.0)
    assert bucket.take_up_to(60, 0.0) == 60
    assert bucket.take_up_to(60, 0.0) == 40  # the rest of the burst
    assert bucket.take_up_to(60, 0.0) == 0
    assert bucket.take_up_to(60, 2.0) == 20  # 2 s at 10 a second
