"""One exception per outcome of handling a peer's message.

- :class:`ProtocolViolation`: the peer broke the protocol; disconnect and ban,
  logging ``reason`` (a short stable code such as ``oversized-frame``).
- :class:`MalformedFrame`: a frame that does not decode as a message (a
  protocol violation with its own type, because it is the commonest one).
- :class:`PeerGone`: the connection ended or must end without blame
  (timeout, duplicate connection, shutdown).
"""

from __future__ import annotations


class ProtocolViolation(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MalformedFrame(ProtocolViolation):
    def __init__(self, detail: str) -> None:
        super().__init__("malformed-frame", detail)


class OversizedFrame(ProtocolViolation):
    def __init__(self, size: int | None, limit: int) -> None:
        shown = "more than" if size is None else f"{size} >"
        super().__init__("oversized-frame", f"{shown} {limit} bytes")


class PeerGone(Exception):
    """Close the session without banning (timeout, duplicate, shutdown, refused)."""


class HandshakeTimeout(PeerGone):
    """The handshake ran past its deadline (an idle handshake, counted against the address)."""
