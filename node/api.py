"""HTTP API under /api/v1 (JSON), the web page at /, the error middleware and auth.

Chain queries are public; writes (POST /diagnoses) and off-chain details
(GET /diagnoses/{id}) need ``Authorization: Bearer <api token>``. Every error
is JSON ``{"error": code, "message": text}``. Every store call runs on the
chain's DB thread (``chain.run``); diagnoses run in the plug-in's executor.
Routes live in ``node/api_chain.py`` (public chain queries) and
``node/api_diagnoses.py`` (diagnoses); this module holds what they share.
The routes and shapes are documented in ``docs/API.md`` and served as
OpenAPI 3 at /api/v1/openapi.json.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from node.app import CHAIN, IDENTITY
from node.auth import get_principal, setup_auth
from node.chain import ChainService
from node.metrics import METRICS, NodeMetrics
from node.records import (
    derive_record_keys,
)
from node.store import ChainStore

log = logging.getLogger("lungledger.api")
VERSION = "0.1.0"
STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_HEIGHT_DIGITS = 12

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
json_dumps = functools.partial(json.dumps, default=lambda value: value.item() if hasattr(value, "item") else str(value))
CHAIN_VERIFY_TASK = web.AppKey("chain_verify_task", dict)


class ApiError(web.HTTPException):
    """An error with a stable code, rendered as {"error": code, "message": text}."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(text=message)
        self.code = code
        self.message = message
        self.extra_headers = headers or {}


def json_error(status: int, code: str, message: str, headers: Any = None) -> web.Response:
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


# --------------------------------------------------------------------- helpers
def get_metrics(app: web.Application) -> NodeMetrics | None:
    """The node's Prometheus metrics, where the app has them."""
    return app.get(METRICS)


def get_chain_store(request: web.Request) -> tuple[ChainService, ChainStore]:
    chain = request.app[CHAIN]
    return chain, chain.store


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


# ------------------------------------------------------------------ page, setup
async def get_index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                                   "base-uri 'none'; frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


async def get_openapi(request: web.Request) -> web.Response:
    from node.openapi import build_openapi

    return json_reply(build_openapi(VERSION))


def setup_api(app: web.Application) -> None:
    from node.api_chain import (
        get_block,
        get_blocks,
        get_chain_verification,
        get_peers,
        get_record,
        get_record_verification,
        get_status,
    )
    from node.api_diagnoses import (
        DIAGNOSIS_SLOTS,
        MAX_CONCURRENT_DIAGNOSES,
        RECORD_KEYS,
        get_diagnosis,
        post_diagnosis,
    )

    from node.api_dicom import setup_dicom
    from node.api_events import setup_events
    from node.api_worklist import setup_worklist

    setup_auth(app)
    setup_worklist(app)
    setup_events(app)
    setup_dicom(app)
    app[DIAGNOSIS_SLOTS] = asyncio.Semaphore(MAX_CONCURRENT_DIAGNOSES)
    app[CHAIN_VERIFY_TASK] = {}
    app[RECORD_KEYS] = derive_record_keys(app[IDENTITY].private_key)
    api = "/api/v1"
    app.router.add_get(f"{api}/status", get_status)
    app.router.add_get(f"{api}/openapi.json", get_openapi)
    app.router.add_get(f"{api}/blocks", get_blocks)
    app.router.add_get(f"{api}/blocks/{{ref}}", get_block)
    app.router.add_get(f"{api}/records/{{record_id}}", get_record)
    app.router.add_get(f"{api}/records/{{record_id}}/verify", get_record_verification)
    app.router.add_get(f"{api}/chain/verify", get_chain_verification)
    app.router.add_get(f"{api}/peers", get_peers)
    app.router.add_post(f"{api}/diagnoses", post_diagnosis)
    app.router.add_get(f"{api}/diagnoses/{{record_id}}", get_diagnosis)
    app.router.add_get("/", get_index)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
