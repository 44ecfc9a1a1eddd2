"""Validation errors with stable reason codes (as Bitcoin Core's validation.cpp)."""

from __future__ import annotations

REASON_CODES = frozenset(
    {
        "bad-encoding",
        "bad-pow",
        "bad-prev",
        "bad-height",
        "bad-merkle",
        "bad-signature",
        "unknown-member",
        "duplicate-record",
        "time-too-old",
        "time-too-new",
        "block-too-large",
        "reorg-too-deep",
        "bad-difficulty",
        "empty-block",
        "bad-genesis",
        "bad-round-result",
        "signer-limit",
        "below-final",
        "bad-entry",
        "orphan-entry",
        "duplicate-entry",
    }
)


class ValidationError(ValueError):
    """Data broke a consensus rule; ``code`` is one of :data:`REASON_CODES`."""

    def __init__(self, code: str, message: str = "") -> None:
        if code not in REASON_CODES:
            raise ValueError(f"unknown reason code {code!r}")
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
