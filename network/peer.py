"""One peer connection: the frame channel over a WebSocket and the session state.

The channel turns WebSocket messages into protocol messages (binary only,
size-limited, strictly decoded). The session keeps what we know about the
peer and a bounded send queue drained by one writer task, so a peer that
stops reading is disconnected instead of growing our memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType
from aiohttp.http_websocket import WebSocketError

from network.codec import decode_message, encode_message
from network.constants import (
    MAX_FRAME_BYTES, MAX_KNOWN_INVENTORY, MAX_KNOWN_RECORDS, MAX_SEND_QUEUE_BYTES, MAX_SEND_QUEUE_FRAMES, SEND_TIMEOUT_S,
)
from network.errors import MalformedFrame, OversizedFrame, PeerGone
from network.messages import Hello, Message
from network.ratelimit import MessageRateLimiter

Direction = Literal["inbound", "outbound"]
CLOSED_TYPES = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})


class FrameChannel:
    """Protocol messages over an aiohttp WebSocket (client or server side)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames_sent = 0
        self.frames_received = 0

    async def send_now(self, message: Message) -> None:
        await self.send_frame(encode_message(message))

    async def send_frame(self, frame: bytes) -> None:
        if self.ws.closed:
            raise PeerGone("connection closed")
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await self.ws.send_bytes(frame)
        except TimeoutError as error:
            raise PeerGone("send timed out") from error
        except (ConnectionError, RuntimeError) as error:
            raise PeerGone(f"send failed: {error}") from error
        self.frames_sent += 1

    async def receive_message(self) -> Message:
        message = await self.ws.receive()
        if message.type == WSMsgType.BINARY:
            self.frames_received += 1
            return decode_message(message.data)
        if message.type == WSMsgType.ERROR:
            error = message.data
            if isinstance(error, WebSocketError) and error.code == WSCloseCode.MESSAGE_TOO_BIG:
                raise OversizedFrame(None, MAX_FRAME_BYTES)
            raise MalformedFrame(f"websocket error: {error}")
        if message.type in CLOSED_TYPES:
            raise PeerGone("peer closed the connection")
        raise MalformedFrame(f"{message.type.name.lower()} frame where binary frames are required")

    async def close(self) -> None:
        if not self.ws.closed:
            await self.ws.close()


class Peer:
    """An authenticated session with one member's node."""

    def __init__(self, channel: FrameChannel, hello: Hello, direction: Direction, host: str, name: str,
                 dial_port: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.channel = channel
        self.member_id = hello.member_id
        self.name = name
        self.direction = direction
        self.host = host
        self.listen_port = dial_port if dial_port is not None else hello.listen_port
        self.best_height = hello.best_height
        self.version = hello.version
        self.user_agent = hello.user_agent
        self.mines = bool(hello.mines)  # False: a relay-only node, skipped in the miners' in-turn line
        self.connected_at = clock()
        self.known: OrderedDict[bytes, None] = OrderedDict()
        self.known_records: OrderedDict[bytes, None] = OrderedDict()  # record ids it sent us or we sent it
        self.in_flight: set[bytes] = set()
        self.headers_requested_at: float | None = None
        self.unconnecting_headers = 0
        self.ping_nonce: int | None = None
        self.ping_sent_at = clock()
        self.ping_ms: float | None = None
        self.closing: str | None = None
        self.channel_bound = False  # set when TLS proves the link is this member's end to end
        self.limiter = MessageRateLimiter(self.connected_at)
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=MAX_SEND_QUEUE_FRAMES)
        self.queued_bytes = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.listen_port}"

    @property
    def frames_sent(self) -> int:
        return self.channel.frames_sent

    def send(self, message: Message) -> None:
        """Queue a message; a peer whose queue is full is too slow and is closed."""
        if self.closing is not None:
            return
        frame = encode_message(message)
        if self.queued_bytes + len(frame) > MAX_SEND_QUEUE_BYTES:
            self.close("send queue full (peer not reading)")
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.close("send queue full (peer not reading)")
            return
        self.queued_bytes += len(frame)

    def close(self, reason: str) -> None:
        """Ask the writer to close the connection after what is queued."""
        if self.closing is None:
            self.closing = reason
            try:
                self.queue.put_nowait(None)
            except asyncio.QueueFull:
                asyncio.get_running_loop().create_task(self.channel.close())

    async def write_loop(self) -> None:
        """Send queued frames until close(); a send that times out ends the connection too."""
        try:
            while (frame := await self.queue.get()) is not None:
                self.queued_bytes -= len(frame)
                await self.channel.send_frame(frame)
        finally:
            await self.channel.close()  # also ends the reader, which is waiting on this socket

    def mark_known(self, block_hash: bytes) -> None:
        self.known[block_hash] = None
        self.known.move_to_end(block_hash)
        if len(self.known) > MAX_KNOWN_INVENTORY:
            self.known.popitem(last=False)

    def knows(self, block_hash: bytes) -> bool:
        return block_hash in self.known

    def mark_record_known(self, record_id: bytes) -> None:
        self.known_records[record_id] = None
        self.known_records.move_to_end(record_id)
        if len(self.known_records) > MAX_KNOWN_RECORDS:
            self.known_records.popitem(last=False)

    def knows_record(self, record_id: bytes) -> bool:
        return record_id in self.known_records
