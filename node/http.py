"""HTTP helpers every route module shares: the error type and middleware, JSON replies, parsing, auth.

Every error is JSON ``{"error": code, "message": text}``.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from node.auth import get_principal
from node.keys import IDENTITY

log = logging.getLogger("lungledger.api")
VERSION = "0.1.0"
API_PREFIX = "/api/v1"
MAX_HEIGHT_DIGITS = 12

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    return item() if callable(item) else str(value)


json_dumps = functools.partial(json.dumps, default=_json_default)


class ApiError(web.HTTPException):
    """An error with a stable code, rendered as {"error": code, "message": text}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(text=message)
        self.code = code
        self.message = message
        self.extra_headers = headers or {}


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def json_reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=json_dumps)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return json_error(error.status_code, error.code, error.message, error.extra_headers)
    except web.HTTPException as error:
        if error.status_code < 400 or not request.path.startswith("/api/"):
            raise
        code = error.reason.lower().replace(" ", "-")
        return json_error(error.status_code, code, error.text or error.reason)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        if not request.path.startswith("/api/"):
            raise
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal-error", "the node failed to handle this request; see its log")


def require_token(request: web.Request) -> None:
    """A signed-in user or the node's bearer token (node.auth's middleware has resolved the caller)."""
    if get_principal(request) is not None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="lungledger"'}
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing-token", "this needs the node's API token: send 'Authorization: Bearer <token>' "
                                             "(the token is in the node's data directory, file api_token)", challenge)
    expected = request.app[IDENTITY].api_token
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(401, "bad-token", "the API token is wrong for this node", challenge)


def parse_hex(text: str, length: int, what: str) -> bytes:
    if len(text) != 2 * length:
        raise ApiError(400, f"bad-{what}", f"{what.replace('-', ' ')} must be {2 * length} hex characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ApiError(400, f"bad-{what}", f"{what.replace('-', ' ')} must be hexadecimal") from None


def parse_int(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit() or len(text) > MAX_HEIGHT_DIGITS or not low <= int(text) <= high:
        raise ApiError(400, "bad-parameter", f"{name} must be a whole number from {low} to {high}")
    return int(text)
