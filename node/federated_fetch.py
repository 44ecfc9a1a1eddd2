"""Fetch a federated head the best chain adopted from the peers that hold it (issue 15).

A node that did not compute a round's aggregate itself (it was down, or saw other
updates) learns the aggregate's digest from the chain's round result but not its
bytes. :class:`HeadFetcher` asks its connected peers for it, one at a time, by digest
(``get_head``); a peer answers ``head`` (the bytes) or ``head_not_found``.

- A reply is accepted only if it has the model's shape (``8 x (features + 1)`` bytes),
  finite values, and hashes to the digest asked for, with the same digest function the
  round result uses (``Head.digest``): :func:`check_head_reply`. Anything else is a
  protocol violation with its reason (``bad-head-shape``, ``non-finite-head``,
  ``bad-head-digest``), and the network bans the peer like any other invalid data.
- A peer that does not hold the head (``head_not_found``) or does not answer within
  ``HEAD_REQUEST_TIMEOUT_S`` is never blamed: the next peer is asked.
- After a pass in which no peer had it, the fetcher waits ``HEAD_RETRY_MIN_S``,
  doubling up to ``HEAD_RETRY_MAX_S`` (a tip change cuts the wait, never below
  ``HEAD_RETRY_MIN_S``), and asks again, until the head is held or the chain no
  longer names it. Only one request is in flight; nothing blocks the event loop
  (the check runs in a thread).
- Only peers whose hello says version 4 or more are asked (a version-3 node does not
  know the messages and would refuse the frame).
- A reply nobody asked for (another digest, another peer, after the timeout) is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from diagnostics.federated import FederatedError, Head
from network.constants import HEAD_FETCH_MIN_VERSION, HEAD_REQUEST_TIMEOUT_S, HEAD_RETRY_MAX_S, HEAD_RETRY_MIN_S
from network.errors import ProtocolViolation
from network.model_messages import GetHead, HeadNotFound, HeadReply
from network.peer import Peer
from network.service import PeerNetwork

log = logging.getLogger("lungledger.federated")


def check_head_reply(requested: bytes, reply: HeadReply, features: int) -> Head:
    """The head in ``reply`` if it is the one with digest ``requested`` for a model of ``features``; else a violation."""
    if reply.digest != requested:
        raise ProtocolViolation("bad-head-digest", f"reply names head {reply.digest.hex()[:16]}, "
                                                   f"not {requested.hex()[:16]}")
    try:
        head = Head.from_bytes(reply.head, features)
    except FederatedError as error:
        raise ProtocolViolation("bad-head-shape", error.message) from error
    if not (bool(np.all(np.isfinite(head.weights))) and math.isfinite(head.bias)):
        raise ProtocolViolation("non-finite-head", "the head holds NaN or infinite values")
    digest = head.digest()
    if digest != requested.hex():
        raise ProtocolViolation("bad-head-digest", f"the head's bytes hash to {digest[:16]}, "
                                                   f"not {requested.hex()[:16]}")
    return head


class HeadFetcher:
    """Serves held heads to peers and fetches the one wanted (``want``) from them."""

    def __init__(self, network: PeerNetwork, features: int, lookup: Callable[[str], Awaitable[Head | None]],
                 on_fetched: Callable[[Head], Awaitable[None]]) -> None:
        self.network = network
        self.features = features
        self.lookup = lookup  # digest hex -> the head this node holds with that digest, or None
        self.on_fetched = on_fetched  # stores a fetched head (the service then serves it if the chain names it)
        self.wanted: str | None = None
        self.waiting: dict[bytes, tuple[bytes, asyncio.Future[Head | None]]] = {}  # member id -> (digest, reply)
        self.fetched = 0
        self.refused = 0
        self.asked = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        network.add_handler(GetHead, self.on_get_head)
        network.add_handler(HeadReply, self.on_head)
        network.add_handler(HeadNotFound, self.on_head_not_found)

    def want(self, digest: str | None) -> None:
        """Fetch the head with this digest (None: nothing is missing any more)."""
        self.wanted = digest
        self._wake.set()  # a new digest, or a new tip (new blocks: peers may hold it now): ask again soon
        if digest is not None and (self._task is None or self._task.done()):
            self._task = asyncio.ensure_future(self._run())
            self._task.set_name("federated-head-fetch")

    def describe(self) -> dict[str, Any]:
        return {"wanted": self.wanted, "asked": self.asked, "fetched": self.fetched, "refused": self.refused}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        delay = HEAD_RETRY_MIN_S
        while (digest := self.wanted) is not None:
            self._wake.clear()
            fetched = False
            for peer in self.network.get_peers():
                if self.wanted != digest:
                    break
                if peer.closing is not None or peer.version < HEAD_FETCH_MIN_VERSION:
                    continue  # closing, or a version-3 node, which would take get_head for an unknown type
                head = await self._ask(peer, bytes.fromhex(digest))
                if head is not None and self.wanted == digest:
                    log.info("fetched head %s from peer %s", digest[:16], peer.member_id.hex()[:8])
                    self.fetched += 1
                    await self.on_fetched(head)  # the service reads the chain again and calls want(None) once served
                    fetched = True
                    break
            if self.wanted != digest:
                delay = HEAD_RETRY_MIN_S
                continue
            if not fetched:
                log.info("no peer holds head %s yet; asking again in %.0f s", digest[:16], delay)
            started = asyncio.get_running_loop().time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            gap = HEAD_RETRY_MIN_S - (asyncio.get_running_loop().time() - started)
            if gap > 0 and self.wanted is not None:
                await asyncio.sleep(gap)  # at most one pass a second, whatever wakes it
            delay = min(delay * 2, HEAD_RETRY_MAX_S)

    async def _ask(self, peer: Peer, digest: bytes) -> Head | None:
        reply: asyncio.Future[Head | None] = asyncio.get_running_loop().create_future()
        self.waiting[peer.member_id] = (digest, reply)
        self.asked += 1
        peer.send(GetHead(digest))
        try:
            return await asyncio.wait_for(asyncio.shield(reply), HEAD_REQUEST_TIMEOUT_S)
        except TimeoutError:
            log.info("peer %s did not answer for head %s", peer.member_id.hex()[:8], digest.hex()[:16])
            return None
        finally:
            if self.waiting.get(peer.member_id, (b"", None))[1] is reply:
                del self.waiting[peer.member_id]

    def _take(self, peer: Peer, digest: bytes) -> asyncio.Future[Head | None] | None:
        """The request to ``peer`` this reply answers (None: unrequested, ignored)."""
        entry = self.waiting.get(peer.member_id)
        if entry is None or entry[0] != digest or entry[1].done():
            log.debug("ignoring an unrequested head reply from %s", peer.member_id.hex()[:8])
            return None
        return entry[1]

    async def on_head(self, peer: Peer, message: HeadReply) -> None:
        reply = self._take(peer, message.digest)
        if reply is None:
            return
        try:
            head = await asyncio.to_thread(check_head_reply, message.digest, message, self.features)
        except ProtocolViolation as violation:
            self.refused += 1
            log.warning("head from %s refused: %s", peer.member_id.hex()[:8], violation)
            if not reply.done():
                reply.set_result(None)
            raise
        if not reply.done():
            reply.set_result(head)

    async def on_head_not_found(self, peer: Peer, message: HeadNotFound) -> None:
        reply = self._take(peer, message.digest)
        if reply is not None:
            reply.set_result(None)

    async def on_get_head(self, peer: Peer, message: GetHead) -> None:
        head = await self.lookup(message.digest.hex())
        peer.send(HeadNotFound(message.digest) if head is None else HeadReply(message.digest, head.to_bytes()))
