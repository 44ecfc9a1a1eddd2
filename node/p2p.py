"""Wiring of the peer network into the node (filled in by the network work)."""

from __future__ import annotations

from aiohttp import web


def setup_p2p(app: web.Application) -> None:
    """Attach the peer network to the app (no peers yet)."""
