"""HTTP API under /api/v1 (JSON) and the error middleware."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger("lungledger.api")
VERSION = "0.1.0"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(web.HTTPException):
    """An error with a stable code, rendered as {"error": code, "message": text}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status_code = status
        super().__init__(text=message)
        self.code = code
        self.message = message


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return json_error(error.status_code, error.code, error.message)
    except web.HTTPException as error:
        if error.status_code < 400 or not request.path.startswith("/api/"):
            raise
        code = error.reason.lower().replace(" ", "-")
        return json_error(error.status_code, code, error.text or error.reason)


async def get_status(request: web.Request) -> web.Response:
    from node.app import CHAIN, GENESIS, IDENTITY

    chain, identity = request.app[CHAIN], request.app[IDENTITY]
    store = chain.store
    tip = store.tip
    return web.json_response(
        {
            "node_id": identity.member_id.hex(),
            "name": identity.name,
            "chain_id": request.app[GENESIS].chain_id.hex(),
            "height": tip.height,
            "tip_hash": tip.block_hash.hex(),
            "difficulty": store.params.difficulty,
            "pending_records": await chain.run(store.pending_count),
            "version": VERSION,
        }
    )


def setup_api(app: web.Application) -> None:
    app.router.add_get("/api/v1/status", get_status)
