"""Live chain events for the page: ``GET /api/v1/events`` as server-sent events.

A client that accepts ``text/event-stream`` (``EventSource`` does) gets the
stream; any other gets the current tip once as JSON. Each time the best tip
moves the node sends ``event: tip`` with
``{"height", "tip_hash", "tip_time_ms"}``; a comment line every 15 s keeps
proxies from closing an idle stream. Subscribers are bounded
(``MAX_SUBSCRIBERS``) and each has a small queue: a slow reader loses old
tips, never the node's memory. Plain aiohttp streaming, no extra library:
the format is four lines of text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiohttp import web

from node.keys import CHAIN

MAX_SUBSCRIBERS = 64
QUEUE_SIZE = 8
HEARTBEAT_S = 15.0


class EventHub:
    """Fans tip changes out to the open event streams."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def publish(self, event: dict[str, Any] | None) -> None:
        for queue in self.queues:
            if queue.full():
                queue.get_nowait()  # drop the oldest tip: only the newest matters
            queue.put_nowait(event)

    def close(self) -> None:
        self.publish(None)


EVENTS = web.AppKey("event_hub", EventHub)


def tip_event(app: web.Application) -> dict[str, Any]:
    tip = app[CHAIN].view.tip
    return {"height": tip.height, "tip_hash": tip.block_hash.hex(), "tip_time_ms": tip.timestamp_ms}


async def get_events(request: web.Request) -> web.StreamResponse:
    if "text/event-stream" not in request.headers.get("Accept", ""):
        return web.json_response(tip_event(request.app))
    hub = request.app[EVENTS]
    if len(hub.queues) >= MAX_SUBSCRIBERS:
        return web.json_response({"error": "busy", "message": "too many open event streams; retry shortly"},
                                 status=429, headers={"Retry-After": "5"})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
    hub.queues.add(queue)
    try:
        event: dict[str, Any] | None = tip_event(request.app)
        while event is not None:
            await response.write(f"event: tip\ndata: {json.dumps(event)}\n\n".encode())
            event = await next_event(queue, response)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.queues.discard(queue)
    return response


async def next_event(queue: asyncio.Queue[dict[str, Any] | None],
                     response: web.StreamResponse) -> dict[str, Any] | None:
    while True:
        try:
            return await asyncio.wait_for(queue.get(), HEARTBEAT_S)
        except TimeoutError:
            await response.write(b": keep-alive\n\n")


async def events_context(app: web.Application) -> AsyncIterator[None]:
    hub = app[EVENTS]

    async def on_blocks(results: Sequence[Any], source: Any) -> None:
        if any(getattr(result, "tip_changed", False) for result in results):
            hub.publish(tip_event(app))

    app[CHAIN].listeners.append(on_blocks)
    yield
    hub.close()
    with contextlib.suppress(ValueError):
        app[CHAIN].listeners.remove(on_blocks)


async def close_streams(app: web.Application) -> None:
    """Before aiohttp waits for open handlers on shutdown: end every stream."""
    app[EVENTS].close()


def setup_events(app: web.Application) -> None:
    app[EVENTS] = EventHub()
    app.cleanup_ctx.append(events_context)
    app.on_shutdown.append(close_streams)
    app.router.add_get("/api/v1/events", get_events)
